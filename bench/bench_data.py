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

from bench import common
from datasets import dataset_factory
from datasets.write_dataset import dataset_to_tfrecords
from utils import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Data')
    flag_set.string('voc_dir', os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data',
                                            'voc2007_subset'), 'VOC folder to convert and read.')
    flag_set.string('dataset_name', 'pascalvoc_2007', 'Dataset name of --voc_dir.')
    flag_set.string('split', 'trainval', 'Split of --voc_dir to use.')
    flag_set.group('Measurement')
    flag_set.integer('repeats', 3, 'Timed runs per figure (the median is reported).')
    return flag_set


def bench_conversion(options, output_dir, num_workers):
    """Median conversion throughput (images/s) with ``num_workers`` reading processes."""
    def run():
        return dataset_to_tfrecords.convert(options.voc_dir, output_dir, options.dataset_name,
                                            split=options.split, num_workers=num_workers,
                                            show_progress=False)
    images = run().records_written
    seconds = common.median_seconds(run, repeats=options.repeats, warmup=0)
    common.report('data.convert_images_per_s.workers_%d' % num_workers, images / seconds,
                  'images/s', '%s %s, %d images' % (os.path.basename(options.voc_dir),
                                                    options.split, images))


def bench_pipeline(options, output_dir):
    """Median throughput (images/s) of parse + decode of every record, graph mode, no shuffle."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel  (see docstring)
    from datasets import input_pipeline  # pylint: disable=import-outside-toplevel
    from datasets import record_check  # pylint: disable=import-outside-toplevel
    spec = dataset_factory.get_dataset(options.dataset_name, options.split, output_dir)
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
            seconds = common.median_seconds(run, repeats=options.repeats, warmup=1)
    common.report('data.pipeline_images_per_s', spec.num_samples / seconds, 'images/s',
                  'parse + JPEG decode, one session.run per image, %d images' % spec.num_samples)


def _benchmark(options):
    if not os.path.isdir(options.voc_dir):
        raise cli.UsageError('--voc_dir=%s: no such folder' % options.voc_dir)
    output_dir = tempfile.mkdtemp(prefix='bench_data_')
    try:
        for workers in (1, 2):
            bench_conversion(options, output_dir, workers)
        bench_pipeline(options, output_dir)
    finally:
        shutil.rmtree(output_dir)
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
