"""Training speed: full-width SSD300 training images/s at batch 8, and the input pipeline's
images/s with training augmentation (decode, SSD crops/flip/colour, resize, anchor encoding).

    python bench/bench_training.py                       # generated sample data, batch 8
    python bench/bench_training.py --dataset_dir=Images/tfrecords --batch_size=8 --repeats=5
    python bench/bench_training.py --precision=bfloat16   # one precision (default: both)

Any flag of train_ssd_network.py applies (--width_multiplier, --num_clones, --optimizer, ...).
Prints the median of ``--repeats`` timed runs of ``--steps_per_repeat`` steps each.
"""
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from utils import cpu_features  # noqa: E402  (imports no TensorFlow)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

if __name__ == '__main__':  # benchmark defaults: batch 8 on the CPU, one clone
    sys.argv[1:1] = ['--batch_size=8', '--clone_on_cpu']
# As a script: oneDNN decided before TensorFlow loads, TensorFlow's start-up notices held back.
tf_logging.start_tool(__name__, 'bfloat16')

import tensorflow.compat.v1 as tf  # noqa: E402

import train_ssd_network  # noqa: E402
from bench import common, workloads  # noqa: E402
from training import cluster, graph, session, trainer  # noqa: E402
from utils import cli  # noqa: E402


def define_flags():
    """The benchmark's own flags, then every flag of the trainer (one ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Benchmark')
    flag_set.integer('repeats', 5, 'Timed runs (the median is reported).')
    flag_set.integer('steps_per_repeat', 3, 'Training steps per timed run.')
    flag_set.integer('pipeline_batches', 10, 'Input batches per timed pipeline run.')
    for define_theme in train_ssd_network.FLAG_THEMES:
        define_theme(flag_set)
    return flag_set


def _time_pipeline(options, spec, net, config):
    """Median seconds per batch of the training input pipeline alone."""
    with tf.Graph().as_default():
        iterator, batch = graph.build_batches(
            options, spec, net, net.anchors(net.params.img_shape), config)
        flat = [t.op for t in tf.nest.flatten(batch)]
        with tf.Session() as sess:
            sess.run(iterator.initializer)
            seconds = common.median_seconds(
                lambda: [sess.run(flat) for _ in range(options.pipeline_batches)],
                repeats=options.repeats)
    return seconds / options.pipeline_batches


def _time_training(options, spec, net, config):
    """Median seconds per training step (forward, backward, update) with the real pipeline."""
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        handles = graph.build_training_graph(options, net, spec, config, global_step)
        with tf.Session(config=session.session_config(options)) as sess:
            sess.run([tf.global_variables_initializer(), handles['iterator'].initializer])
            seconds = common.median_seconds(
                lambda: [sess.run(handles['train_tensor'])
                         for _ in range(options.steps_per_repeat)], repeats=options.repeats)
    return seconds / options.steps_per_repeat


def _benchmark(options):
    if not options.dataset_dir:
        options.dataset_dir = workloads.sample_tfrecords()
    options.train_model_dir = (options.train_model_dir
                               or tempfile.mkdtemp(prefix='bench_training_run_'))
    trainer.check_flags(options)
    config = cluster.setup_cluster(options)[0]
    spec = trainer.load_dataset(options)
    from nets import nets_factory
    net = nets_factory.build_network(options.model_name, options.num_classes or spec.num_classes,
                                     options.width_multiplier)
    pipeline = _time_pipeline(options, spec, net, config)
    common.report('input_pipeline_images_per_s', options.batch_size / pipeline, 'images/s',
                  'training augmentation + anchor encoding, %d parallel calls'
                  % options.num_preprocessing_threads)
    # Both precisions unless --precision is given.
    precisions = [options.precision] if options['precision'].present \
        else list(cpu_features.PRECISIONS)
    for precision in precisions:
        options.precision = precision
        note = 'width %g, batch %d, %d clone(s), %s, %s' % (
            options.width_multiplier, options.batch_size, options.num_clones, options.optimizer,
            precision)
        step = _time_training(options, spec, net, config)
        common.report('training_%s_seconds_per_step' % precision, step, 's/step', note)
        common.report('training_%s_images_per_s' % precision, options.batch_size / step,
                      'images/s', note)
        common.report('pipeline_to_training_ratio_%s' % precision, step / pipeline, 'x',
                      'target >= 5')
    common.report('training_peak_memory', common.peak_memory_mb(), 'MiB',
                  'both precisions, one process')
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
