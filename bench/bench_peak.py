"""The machine's measured limit and the network's size, for run_all.py's share-of-peak column.

    python bench/bench_peak.py [--size=4096] [--repeats=5] [--num_classes=21]

Prints the GFLOP/s of a ``size`` x ``size`` matrix product in float32 and in bfloat16 (one
TensorFlow session, 2 * size^3 operations per product, median of ``--repeats``), and the GFLOP
of one full-width SSD-VGG300 forward pass per image as TensorFlow's profiler counts them (a
multiply-add is 2 operations). A training step costs about three forward passes (forward,
gradients of the activations and of the weights).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

tf_logging.start_tool(__name__)  # as a script: no TensorFlow C++ log lines

import tensorflow.compat.v1 as tf  # noqa: E402

from bench import common  # noqa: E402
from model import inference  # noqa: E402
from utils import cli  # noqa: E402
from nets import nets_factory  # noqa: E402


def matmul_gflops(size, dtype, repeats):
    """GFLOP/s of one ``size`` x ``size`` product in ``dtype``, on variables (constants would be
    folded away by grappler before the first run)."""
    with tf.Graph().as_default():
        a, b = (tf.Variable(tf.cast(tf.random.uniform((size, size), -1., 1., seed=seed), dtype))
                for seed in (1, 2))
        # Fetching the product would time a copy too; its sum reads every element.
        total = tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            seconds = common.median_seconds(lambda: sess.run(total), repeats=repeats, warmup=2)
    return 2. * size ** 3 / seconds / 1e9


def network_gflop(num_classes, width_multiplier=1.0):
    """GFLOP of one forward pass on one image, from TensorFlow's profiler (float32 graph)."""
    net = nets_factory.build_network('ssd_vgg_300', num_classes, width_multiplier)
    with tf.Graph().as_default() as graph:
        inference.network_outputs(net, tf.zeros([1, 300, 300, 3]), 'float32')
        options = tf.profiler.ProfileOptionBuilder.float_operation()
        options['output'] = 'none'
        profile = tf.profiler.profile(graph, options=options)
    return profile.total_float_ops / 1e9


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Matrix product')
    flag_set.integer('size', 4096, 'Matrix side.')
    flag_set.integer('repeats', 5, 'Timed products (the median is reported).')
    flag_set.group('Network')
    flag_set.integer('num_classes', 21, 'Classes of the network counted (background included).')
    return flag_set


def _benchmark(options):
    if options.size < 1 or options.repeats < 1:
        raise cli.UsageError('--size and --repeats must be >= 1')
    tf.disable_eager_execution()
    tf.logging.set_verbosity(tf.logging.ERROR)
    note = '%dx%d matmul, TF_ENABLE_ONEDNN_OPTS=%s' % (
        options.size, options.size, os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'))
    for dtype in (tf.float32, tf.bfloat16):
        common.report('matmul_peak_%s' % dtype.name,
                      matmul_gflops(options.size, dtype, options.repeats), 'GFLOP/s', note)
    common.report('network_gflop_per_image', network_gflop(options.num_classes), 'GFLOP',
                  "SSD-VGG300, width 1.0, %d classes, TensorFlow's profiler"
                  % options.num_classes)
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
