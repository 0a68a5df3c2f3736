"""Network benchmarks: SSD-VGG300 forward pass (full width, batch 1 and 8), target encoding and
post-processing (TF graph and NumPy) per image. Prints `[figure]` lines (medians of several runs).

    python bench/bench_network.py [--repeats=5] [--num_classes=21] [--precision=both]
Targets on the 2-core CPU machine: forward >= 3 images/s at batch 8, encoding < 5 ms/image,
post-processing < 10 ms/image. On a CPU with bfloat16 instructions the benchmark turns oneDNN on
unless TF_ENABLE_ONEDNN_OPTS is set (`TF_ENABLE_ONEDNN_OPTS=0` measures without it).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from utils import cpu_features  # noqa: E402  (imports no TensorFlow)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

# As a script (both precisions by default): oneDNN decided before TensorFlow loads,
# TensorFlow's start-up notices held back.
tf_logging.start_tool(__name__, 'bfloat16')

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

from bench import common, workloads  # noqa: E402
from nets import nets_factory, np_postprocess  # noqa: E402
from model import inference  # noqa: E402
from utils import cli  # noqa: E402
from utils import slim_compat  # noqa: E402
from utils import ssd_defaults  # noqa: E402

slim = slim_compat.import_slim()


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Benchmark')
    flag_set.integer('repeats', 5, 'Timed runs per figure (the median is reported).')
    flag_set.integer('num_classes', 21, 'Classes including background (21 = Pascal VOC).')
    flag_set.enum('precision', 'both', ('both',) + cpu_features.PRECISIONS,
                  'Forward-pass precision: float32, bfloat16 or both.')
    flag_set.boolean('compare_variables', False, 'Also time the forward pass with the weights '
                     'as variables, in turn with the frozen one.')
    flag_set.integer('boxes_per_image', 8, 'Ground-truth boxes per image for the encoding '
                     'benchmark.')
    return flag_set


def bench_forward(options, net, precision, batch_sizes=(1, 8)):
    """Full-width forward pass in ``precision`` (network outputs as float32, no post-processing):
    seconds per batch and images/s, through the detector's own ``inference.network_outputs``
    with the weights frozen into constants, as the inference tools and exports run it. With
    ``--compare_variables`` the same graph with the weights as variables is timed after it
    (``forward_<precision>_batch<N>_variables``), each in a block of runs of its own: the two
    graphs run in turn slowed the frozen float32 batch-1 pass by half in some processes on an
    AMX Xeon (0.21 against 0.14 s), which no tool does."""
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 300, 300, 3])
        outputs = inference.network_outputs(net, images, precision)
        with tf.Session() as variables_session:
            workloads.initialize_like_trained(variables_session)
            graph, (frozen_images, frozen_outputs) = inference.frozen_graph(
                variables_session, (images, outputs))
            with tf.Session(graph=graph) as frozen_session:
                for batch in batch_sizes:
                    value = np.random.RandomState(0).randn(batch, 300, 300, 3).astype(np.float32)
                    runs = {'': lambda: frozen_session.run(frozen_outputs, {frozen_images: value})}
                    if options.compare_variables:
                        runs['_variables'] = lambda: variables_session.run(outputs,
                                                                           {images: value})
                    seconds = {suffix: common.median_seconds(run, repeats=options.repeats)
                               for suffix, run in runs.items()}
                    for suffix, median in seconds.items():
                        note = ('SSD-VGG300, width 1.0, %d classes, %s, %s, '
                                'TF_ENABLE_ONEDNN_OPTS=%s' % (
                                    options.num_classes, precision,
                                    'weights as variables' if suffix else 'frozen weights',
                                    os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')))
                        name = 'forward_%s_batch%d%s' % (precision, batch, suffix)
                        common.report(name, median, 's/batch', note)
                        common.report(name + '_images_per_s', batch / median, 'images/s', note)


def bench_encode(options, net, anchors):
    """bboxes_encode (matching + encoding of one image's boxes against the 8732 anchors)."""
    rng = np.random.RandomState(1)
    with tf.Graph().as_default():
        labels = tf.placeholder(tf.int64, [None])
        bboxes = tf.placeholder(tf.float32, [None, 4])
        targets = net.bboxes_encode(labels, bboxes, anchors)
        with tf.Session() as sess:
            corner = rng.uniform(0, .6, size=(options.boxes_per_image, 2))
            boxes = np.concatenate([corner, corner + rng.uniform(.05, .4, size=corner.shape)], 1)
            feed = {labels: rng.randint(1, options.num_classes, options.boxes_per_image),
                    bboxes: boxes}
            seconds = common.median_seconds(lambda: sess.run(targets, feed),
                                            repeats=options.repeats * 4, warmup=3)
    common.report('bboxes_encode', seconds * 1e3, 'ms/image',
                  '%d boxes, 8732 anchors' % options.boxes_per_image)


def network_like_outputs(net, batch, rng):
    """Random softmax outputs and offsets shaped like the network's (an untrained net's worst case:
    many scores above the 0.01 default threshold)."""
    predictions, localisations = [], []
    for (h, w), (_, _, sizes, _) in zip(net.params.feat_shapes, net.anchors()):
        logits = rng.randn(batch, h, w, len(sizes), net.params.num_classes) * 2
        e = np.exp(logits)
        predictions.append((e / e.sum(-1, keepdims=True)).astype(np.float32))
        localisations.append((rng.randn(batch, h, w, len(sizes), 4) * .5).astype(np.float32))
    return predictions, localisations


def bench_postprocess(options, net, anchors, select_threshold, batch=8):
    """detected_bboxes in the graph (batch 8, per image) and np_postprocess.detect (one image)."""
    predictions, localisations = network_like_outputs(net, batch, np.random.RandomState(2))
    with tf.Graph().as_default():
        p_in = [tf.placeholder(tf.float32, (None,) + p.shape[1:]) for p in predictions]
        l_in = [tf.placeholder(tf.float32, (None,) + l.shape[1:]) for l in localisations]
        detections = net.detected_bboxes(p_in, l_in, select_threshold=select_threshold)
        with tf.Session() as sess:
            feed = dict(zip(p_in + l_in, predictions + localisations))
            seconds = common.median_seconds(lambda: sess.run(detections, feed),
                                            repeats=options.repeats)
    note = 'select %g, top_k %d, NMS %g, keep %d, %d classes' % (
        select_threshold, ssd_defaults.TOP_K, ssd_defaults.NMS_THRESHOLD, ssd_defaults.KEEP_TOP_K,
        options.num_classes)
    suffix = '_select%g' % select_threshold
    common.report('postprocess_tf' + suffix, seconds * 1e3 / batch, 'ms/image', note + ', batch %d' % batch)
    one = ([p[0] for p in predictions], [l[0] for l in localisations])
    seconds = common.median_seconds(
        lambda: np_postprocess.detect(one[0], one[1], anchors, net.params.prior_scaling, select_threshold),
        repeats=options.repeats)
    common.report('postprocess_numpy' + suffix, seconds * 1e3, 'ms/image', note)


def _benchmark(options):
    tf.disable_eager_execution()
    net = nets_factory.build_network('ssd_vgg_300', options.num_classes)
    anchors = net.anchors()
    bench_encode(options, net, anchors)
    bench_postprocess(options, net, anchors, select_threshold=0.01)   # training/eval, worst case
    bench_postprocess(options, net, anchors, select_threshold=0.5)    # the detector's default
    precisions = cpu_features.PRECISIONS if options.precision == 'both' else [options.precision]
    for precision in precisions:
        bench_forward(options, net, precision)
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
