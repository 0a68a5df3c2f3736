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

import tensorflow.compat.v1 as tf  # noqa: E402
from absl import flags  # noqa: E402

import train_ssd_network  # noqa: E402
from bench import common  # noqa: E402
from training import graph, session, trainer  # noqa: E402
from utils import cli  # noqa: E402

# The trainer's flags and the benchmark's own, in one flag set of this script.
FLAGS = train_ssd_network.define_flags(flags.FlagValues())
flags.DEFINE_integer('repeats', 5, 'Timed runs (the median is reported).', flag_values=FLAGS)
flags.DEFINE_integer('steps_per_repeat', 3, 'Training steps per timed run.', flag_values=FLAGS)
flags.DEFINE_integer('pipeline_batches', 10, 'Input batches per timed pipeline run.',
                     flag_values=FLAGS)
FLAG_GROUPS = (('Benchmark', ('repeats', 'steps_per_repeat', 'pipeline_batches')),
               ) + train_ssd_network.FLAG_GROUPS


def sample_tfrecords():
    """TFRecords of 64 generated vehicle-like images (a temporary folder); returns it."""
    from datasets.write_dataset import dataset_to_tfrecords, sample_data
    work = tempfile.mkdtemp(prefix='bench_training_')
    sample_data.generate_voc_dataset(os.path.join(work, 'voc'), num_images=64, seed=1)
    dataset_to_tfrecords.convert(os.path.join(work, 'voc'), os.path.join(work, 'tfrecords'),
                                 'vehicle', split='train')
    return os.path.join(work, 'tfrecords')


def _time_pipeline(f, spec, net, config):
    """Median seconds per batch of the training input pipeline alone."""
    with tf.Graph().as_default():
        iterator, batch = graph.build_batches(
            f, spec, net, net.anchors(net.params.img_shape), config)
        flat = [t.op for t in tf.nest.flatten(batch)]
        with tf.Session() as sess:
            sess.run(iterator.initializer)
            seconds = common.median_seconds(
                lambda: [sess.run(flat) for _ in range(FLAGS.pipeline_batches)],
                repeats=FLAGS.repeats)
    return seconds / FLAGS.pipeline_batches


def _time_training(f, spec, net, config):
    """Median seconds per training step (forward, backward, update) with the real pipeline."""
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        handles = graph.build_training_graph(f, net, spec, config, global_step)
        with tf.Session(config=session.session_config(f)) as sess:
            sess.run([tf.global_variables_initializer(), handles['iterator'].initializer])
            seconds = common.median_seconds(
                lambda: [sess.run(handles['train_tensor']) for _ in range(FLAGS.steps_per_repeat)],
                repeats=FLAGS.repeats)
    return seconds / FLAGS.steps_per_repeat


def main():
    f = FLAGS
    if not f.dataset_dir:
        f.dataset_dir = sample_tfrecords()
    f.train_model_dir = f.train_model_dir or tempfile.mkdtemp(prefix='bench_training_run_')
    trainer.check_flags(f)
    config = session.setup_cluster(f)[0]
    spec = trainer.load_dataset(f)
    from nets import nets_factory
    net = nets_factory.build_network(f.model_name, f.num_classes or spec.num_classes,
                                     f.width_multiplier)
    pipeline = _time_pipeline(f, spec, net, config)
    common.report('input_pipeline_images_per_s', f.batch_size / pipeline, 'images/s',
                  'training augmentation + anchor encoding, %d parallel calls'
                  % f.num_preprocessing_threads)
    # Both precisions unless --precision is given.
    precisions = [f.precision] if f['precision'].present else list(trainer.PRECISIONS)
    for precision in precisions:
        f.precision = precision
        note = 'width %g, batch %d, %d clone(s), %s, %s' % (
            f.width_multiplier, f.batch_size, f.num_clones, f.optimizer, precision)
        step = _time_training(f, spec, net, config)
        common.report('training_%s_seconds_per_step' % precision, step, 's/step', note)
        common.report('training_%s_images_per_s' % precision, f.batch_size / step, 'images/s',
                      note)
        common.report('pipeline_to_training_ratio_%s' % precision, step / pipeline, 'x',
                      'target >= 5')
    common.report('training_peak_memory', common.peak_memory_mb(), 'MiB',
                  'both precisions, one process')
    return 0


if __name__ == '__main__':
    # Benchmark defaults: batch 8 on the CPU, one clone.
    sys.exit(cli.run_cli([sys.argv[0], '--batch_size=8', '--clone_on_cpu'] + sys.argv[1:], FLAGS,
                         FLAG_GROUPS, __doc__, main))
