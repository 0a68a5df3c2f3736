"""Data-layer throughput: VOC -> TFRecords conversion and the tf.data input pipeline (images/s).

    python bench/bench_data.py [--voc_dir=../shared/data/voc2007_subset] [--repeats=3]

Prints ``[figure]`` lines (median of ``--repeats`` runs after one warm-up): conversion with 1
and 2 worker processes (TensorFlow already imported, so its import time is not counted), and the
input pipeline decoding every record of the split in a TF1 graph session.

TensorFlow is imported inside ``bench_pipeline`` only: the converter's worker processes are
spawned and re-import this script, and must not pay a TensorFlow import each (as with the CLI).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import shutil
import tempfile

from absl import app
from absl import flags

from bench import common
from datasets import dataset_factory
from datasets.write_dataset import dataset_to_tfrecords

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Data
flags.DEFINE_string('voc_dir', os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data',
                                            'voc2007_subset'), 'VOC folder to convert and read.')
flags.DEFINE_string('dataset_name', 'pascalvoc_2007', 'Dataset name of --voc_dir.')
flags.DEFINE_string('split', 'trainval', 'Split of --voc_dir to use.')
# Measurement
flags.DEFINE_integer('repeats', 3, 'Timed runs per figure (the median is reported).')
FLAGS = flags.FLAGS


def bench_conversion(output_dir, num_workers):
    """Median conversion throughput (images/s) with ``num_workers`` reading processes."""
    def run():
        return dataset_to_tfrecords.convert(FLAGS.voc_dir, output_dir, FLAGS.dataset_name,
                                            split=FLAGS.split, num_workers=num_workers,
                                            show_progress=False)
    images = run().records_written
    seconds = common.median_seconds(run, repeats=FLAGS.repeats, warmup=0)
    common.report('data.convert_images_per_s.workers_%d' % num_workers, images / seconds,
                  'images/s', '%s %s, %d images' % (os.path.basename(FLAGS.voc_dir),
                                                    FLAGS.split, images))


def bench_pipeline(output_dir):
    """Median throughput (images/s) of parse + decode of every record, graph mode, no shuffle."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel  (see docstring)
    from datasets import input_pipeline  # pylint: disable=import-outside-toplevel
    from datasets import record_check  # pylint: disable=import-outside-toplevel
    spec = dataset_factory.get_dataset(FLAGS.dataset_name, FLAGS.split, output_dir)
    with tf.Graph().as_default(), record_check.naming_corrupt_records(spec.data_sources):
        iterator = tf.data.make_initializable_iterator(
            input_pipeline.make_dataset(spec, shuffle=False, num_epochs=1))
        element = iterator.get_next()
        with tf.Session() as session:
            def run():
                session.run(iterator.initializer)
                while True:
                    try:
                        session.run(element)
                    except tf.errors.OutOfRangeError:
                        return
            seconds = common.median_seconds(run, repeats=FLAGS.repeats, warmup=1)
    common.report('data.pipeline_images_per_s', spec.num_samples / seconds, 'images/s',
                  'parse + JPEG decode, one session.run per image, %d images' % spec.num_samples)


def main(argv):
    del argv
    if not os.path.isdir(FLAGS.voc_dir):
        print('error: --voc_dir=%s: no such folder' % FLAGS.voc_dir, file=sys.stderr)
        return 1
    output_dir = tempfile.mkdtemp(prefix='bench_data_')
    try:
        for workers in (1, 2):
            bench_conversion(output_dir, workers)
        bench_pipeline(output_dir)
    finally:
        shutil.rmtree(output_dir)
    return 0


if __name__ == '__main__':
    app.run(main)
