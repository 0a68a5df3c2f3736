"""Converts a Pascal-VOC-layout folder into sharded TFRecords plus ``dataset_description.json``.

    python datasets/write_dataset/dataset_to_tfrecords.py --dataset_dir=Images/sample_vehicles \\
        --output_dir=Images/tfrecords/sample_vehicles --dataset_name=vehicle --split=train

Input: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` (found by id, any of .jpg/.jpeg/.png/.bmp)
and optionally ``ImageSets/Main/<split>.txt``. Output: ``<dataset_name>_<split>_NNN.tfrecord``
(``split`` is ``all`` when no split list is given) with records in sorted id order, so the same
input gives the same bytes. Boxes are normalised as ``datasets/write_dataset/voc_reader.py`` says.
An image without any usable object is skipped, or with ``--keep_empty_images`` kept as a
record of zero boxes (a background-only photo: the trainer learns negatives from it and the
evaluator counts detections on it as false positives).

Shards are written under a ``.tmp`` name and renamed only when the whole split succeeded; an
interrupted (Ctrl-C or SIGTERM) or failed run removes its temporary files and leaves earlier
output untouched, and a new run first removes the temporary shards of its dataset and split that
a killed run left behind.

TensorFlow is imported inside the writing functions only: the worker processes (started with
``spawn``, which re-imports the main module) then load OpenCV and NumPy, not TensorFlow.
"""
import os
import sys

if __name__ == '__main__':  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

tf_logging.start_tool(__name__)  # as a script: no TensorFlow C++ log lines

import collections
import multiprocessing
import re
import signal
import time

import tqdm

from datasets import dataset_config
from datasets import records
from datasets.utils import dataset_utils
from datasets.write_dataset import voc_reader
from utils import cli
from utils import tf_errors
from utils.errors import ToolkitError

ALL_SPLIT = 'all'
# Starting a worker (spawn + imports) costs about what reading a few hundred JPEGs in-process
# does, so the automatic worker count adds one worker per this many images, up to the CPUs.
IMAGES_PER_AUTO_WORKER = 500
TEMP_SUFFIX = '.tmp'
_SAFE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


class ConversionError(ToolkitError):
    """The conversion cannot go on; the message names the file, flag or field at fault."""


class ConversionSummary(object):
    """What a conversion did: records, objects per class, shards, skipped images and why."""

    def __init__(self, dataset_name, split, output_dir):
        self.dataset_name = dataset_name
        self.split = split
        self.output_dir = output_dir
        self.records_written = 0
        self.num_objects = 0
        self.objects_per_class = collections.Counter()
        self.shards = []
        self.skipped = collections.OrderedDict()  # category -> list of one-line details
        self.events = collections.Counter()       # event name -> count (see voc_reader.EVENT_*)
        self.seconds = 0.0

    @property
    def images_skipped(self):
        return sum(len(details) for details in self.skipped.values())

    def skip(self, category, detail):
        self.skipped.setdefault(category, []).append(detail)

    def __str__(self):
        lines = ['%s/%s: %d records (%d objects) in %d shard(s) in %s, %.1f s' % (
            self.dataset_name, self.split, self.records_written, self.num_objects,
            len(self.shards), self.output_dir, self.seconds)]
        if self.objects_per_class:
            lines.append('  objects per class: ' + ', '.join(
                '%s %d' % item for item in sorted(self.objects_per_class.items())))
        lines.append('  images skipped: %d' % self.images_skipped)
        for category, details in self.skipped.items():
            lines.append('    %s: %d (e.g. %s)' % (category, len(details), details[0]))
        for event, count in sorted(self.events.items()):
            lines.append('  %s: %d' % (event, count))
        return '\n'.join(lines)


def list_image_ids(dataset_dir, split):
    """Sorted image ids of ``ImageSets/Main/<split>.txt`` (first token of each line), or of every
    ``Annotations/*.xml`` when ``split`` is None."""
    if split is None:
        names = os.listdir(os.path.join(dataset_dir, 'Annotations'))
        ids = sorted(os.path.splitext(name)[0] for name in names if name.lower().endswith('.xml'))
        if not ids:
            raise ConversionError('%s: no *.xml files' % os.path.join(dataset_dir, 'Annotations'))
        return ids
    split_dir = os.path.join(dataset_dir, 'ImageSets', 'Main')
    path = os.path.join(split_dir, split + '.txt')
    if not os.path.isfile(path):
        available = sorted(name[:-4] for name in os.listdir(split_dir)
                           if name.endswith('.txt')) if os.path.isdir(split_dir) else []
        raise ConversionError('--split=%s: no file %s (available splits: %s)'
                              % (split, path, ', '.join(available) or 'none'))
    with open(path, encoding='utf-8-sig') as handle:
        ids = sorted({line.split()[0] for line in handle if line.strip()})
    if not ids:
        raise ConversionError('--split=%s: %s lists no image ids' % (split, path))
    return ids


def _check_arguments(dataset_dir, output_dir, dataset_name, samples_per_file, num_workers):
    if not os.path.isdir(os.path.join(dataset_dir, 'Annotations')):
        raise ConversionError('--dataset_dir=%s: no Annotations folder (VOC layout expected)'
                              % dataset_dir)
    if not _SAFE_NAME.match(dataset_name or ''):
        raise ConversionError('--dataset_name=%r: use letters, digits, "_", "." or "-"'
                              % dataset_name)
    if samples_per_file < 1:
        raise ConversionError('--samples_per_file=%d: must be at least 1' % samples_per_file)
    if num_workers is not None and num_workers < 0:
        raise ConversionError('--num_workers=%d: must be 0 or more' % num_workers)
    if os.path.abspath(output_dir) == os.path.abspath(dataset_dir):
        raise ConversionError('--output_dir must differ from --dataset_dir')


def _parse_annotations(dataset_dir, ids, split, summary):
    """-> list of (Annotation, image path or None); images without usable XML are counted."""
    image_index = voc_reader.index_images(os.path.join(dataset_dir, 'JPEGImages'))
    annotation_dir = os.path.join(dataset_dir, 'Annotations')
    parsed = []
    for image_id in ids:
        xml_path = os.path.join(annotation_dir, image_id + '.xml')
        if not os.path.isfile(xml_path):
            summary.skip(voc_reader.SKIP_NO_ANNOTATION, '%s: no %s' % (
                image_index.get(image_id, image_id), xml_path))
            continue
        try:
            parsed.append((voc_reader.parse_annotation(xml_path), image_index.get(image_id)))
        except voc_reader.VocFormatError as error:
            summary.skip(voc_reader.SKIP_BAD_XML, str(error))
    if split is None:  # every image should have an annotation: report the ones that have none
        for image_id in sorted(set(image_index) - set(ids)):
            summary.skip(voc_reader.SKIP_NO_ANNOTATION, '%s: no %s' % (
                image_index[image_id], os.path.join(annotation_dir, image_id + '.xml')))
    return parsed


def _check_classes(parsed, names_to_labels, skip_unknown_classes, labels_source):
    unknown = collections.Counter(obj.name for annotation, _ in parsed
                                  for obj in annotation.objects if obj.name not in names_to_labels)
    if unknown and not skip_unknown_classes:
        raise ConversionError(
            'class names not in %s: %s (fix the XML, give --labels_file, or pass '
            '--skip_unknown_classes to drop those objects)' % (
                labels_source, ', '.join('%s (%d)' % item for item in sorted(unknown.items()))))


def _read_records(tasks, num_workers):
    """Yields voc_reader.ReadResult in task order, reading images in ``num_workers`` processes."""
    if num_workers <= 1 or len(tasks) < 2 * num_workers:
        for task in tasks:
            yield voc_reader.read_example(task)
        return
    # spawn, not fork: the parent may already run TensorFlow/OpenCV threads, and it is what
    # Windows does anyway.
    context = multiprocessing.get_context('spawn')
    chunksize = max(1, min(16, len(tasks) // (4 * num_workers)))
    # Workers ignore Ctrl-C: the parent alone handles it (one message, no worker tracebacks).
    with context.Pool(num_workers, initializer=signal.signal,
                      initargs=(signal.SIGINT, signal.SIG_IGN)) as pool:
        for result in pool.imap(voc_reader.read_example, tasks, chunksize=chunksize):
            yield result


def _available_cpus():
    """CPUs this process may run on (a container's share, not the host's count when known)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _write_shards(results, final_paths, output_dir, dataset_name, split, samples_per_file,
                  summary, progress):
    """Writes ``results`` into temporary shards, appending each shard's final path to
    ``final_paths`` as soon as its temporary file exists (so the caller can clean up)."""
    writer = None
    try:
        for result in results:
            progress.update(1)
            for event, count in result.events.items():
                summary.events[event] += count
            if result.record is None:
                summary.skip(result.skip_category, result.skip_detail)
                continue
            if summary.records_written % samples_per_file == 0:
                # Imported once the workers run (see module docstring), so both overlap.
                import tensorflow as tf  # pylint: disable=import-outside-toplevel
                if writer is not None:
                    writer.close()
                final_paths.append(os.path.join(output_dir, dataset_utils.shard_name(
                    dataset_name, split, len(final_paths))))
                writer = tf.io.TFRecordWriter(final_paths[-1] + TEMP_SUFFIX)
            writer.write(records.serialize_example(result.record))
            summary.records_written += 1
            summary.num_objects += len(result.record.labels)
            summary.objects_per_class.update(result.record.label_texts)
    finally:
        if writer is not None:
            writer.close()


def _remove_stale_shards(output_dir, dataset_name, split, keep=(), suffix=''):
    """Deletes the shards of this dataset and split whose name ends in ``suffix`` and is not in
    ``keep``: shards left by an earlier, larger conversion (``suffix=''``), or the temporary
    shards of a killed run (``suffix=TEMP_SUFFIX``)."""
    pattern = re.compile(r'^%s_%s_\d{3,}\.tfrecord%s$' % (
        re.escape(dataset_name), re.escape(split), re.escape(suffix)))
    for name in os.listdir(output_dir):
        if pattern.match(name) and name not in keep:
            os.remove(os.path.join(output_dir, name))


def convert(dataset_dir, output_dir, dataset_name, split=None, labels_file=None,
            samples_per_file=200, num_workers=None, skip_unknown_classes=False,
            show_progress=True, keep_empty_images=False):
    """Converts one split of a VOC folder; returns a ConversionSummary. Raises ConversionError
    (or dataset_config.DatasetConfigError / dataset_utils.DatasetError) on unusable input.

    ``split``: name of ``ImageSets/Main/<split>.txt``; None converts every annotation as split
    ``all``. ``labels_file``: one class name per line (line 1 = id 1), else the built-in list of
    ``dataset_name``. ``num_workers``: image-reading processes (None: one per 500 images, at
    most one per available CPU; 0 or 1: read in this process). Workers are spawned and re-import the caller's main module,
    so a caller whose main module imports TensorFlow pays that import once per worker.
    ``keep_empty_images``: an image without any usable object becomes a record with zero boxes
    (background only) instead of being skipped.
    """
    start = time.time()
    _check_arguments(dataset_dir, output_dir, dataset_name, samples_per_file, num_workers)
    class_names = dataset_config.class_names_for(dataset_name, labels_file)
    split_name = split or ALL_SPLIT
    summary = ConversionSummary(dataset_name, split_name, output_dir)
    parsed = _parse_annotations(dataset_dir, list_image_ids(dataset_dir, split), split, summary)
    names_to_labels = dataset_config.names_to_labels(class_names)
    _check_classes(parsed, names_to_labels, skip_unknown_classes,
                   labels_file or 'the %s class list' % dataset_name)
    dataset_utils.check_description(output_dir, dataset_name, class_names)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as error:
        raise ConversionError('--output_dir=%s: cannot create it (%s)' % (output_dir, error))
    _remove_stale_shards(output_dir, dataset_name, split_name, suffix=TEMP_SUFFIX)

    tasks = [(annotation, image_path, names_to_labels, keep_empty_images)
             for annotation, image_path in parsed]
    workers = num_workers
    if workers is None:
        workers = max(1, min(_available_cpus(), len(tasks) // IMAGES_PER_AUTO_WORKER))
    final_paths = []
    try:
        with tqdm.tqdm(total=len(tasks), desc='%s/%s' % (dataset_name, split_name), unit='img',
                       file=sys.stderr, disable=not show_progress) as progress:
            _write_shards(_read_records(tasks, workers), final_paths, output_dir, dataset_name,
                          split_name, samples_per_file, summary, progress)
        if not summary.records_written:
            raise ConversionError('split %s of %s: no image could be converted (%s)' % (
                split_name, dataset_dir, '; '.join('%s: %d' % (category, len(details))
                                                  for category, details in summary.skipped.items())))
        for path in final_paths:
            os.replace(path + TEMP_SUFFIX, path)
    finally:
        for path in final_paths:  # only temporaries of a failed or interrupted run remain
            if os.path.exists(path + TEMP_SUFFIX):
                os.remove(path + TEMP_SUFFIX)
    summary.shards = [os.path.basename(path) for path in final_paths]
    _remove_stale_shards(output_dir, dataset_name, split_name, set(summary.shards))
    dataset_utils.merge_description(output_dir, dataset_name, class_names, split_name, {
        'num_samples': summary.records_written, 'num_objects': summary.num_objects,
        'files': summary.shards})
    summary.seconds = time.time() - start
    return summary


def define_flags():
    """The converter's own flags (a ``utils.cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('Input')
    flag_set.string('dataset_dir', None, 'VOC-layout folder (Annotations/, JPEGImages/, '
                    'optional ImageSets/Main/<split>.txt). Required.')
    flag_set.string('split', None, 'Split list ImageSets/Main/<split>.txt to convert; '
                    'default: every annotation, written as split "all".')
    flag_set.group('Classes')
    flag_set.string('dataset_name', 'vehicle', 'pascalvoc_2007, vehicle, or a custom name '
                    '(then --labels_file is required). Also the shard name prefix.')
    flag_set.string('labels_file', None, 'Text file with one class name per line '
                    '(line 1 = id 1); overrides the built-in class list.')
    flag_set.boolean('skip_unknown_classes', False, 'Drop objects whose class is not in the '
                     'class list instead of stopping.')
    flag_set.boolean('keep_empty_images', False, 'Keep images without any object (background '
                     'only) as records with zero boxes instead of skipping them; the trainer '
                     'and the evaluator take them.')
    flag_set.group('Output')
    flag_set.string('output_dir', None, 'Folder for the shards and dataset_description.json. '
                    'Required.')
    flag_set.integer('samples_per_file', 200, 'Records per shard.')
    flag_set.group('Performance')
    flag_set.integer('num_workers', None, 'Image-reading processes (default: one per 500 '
                     'images, at most one per CPU; 1: no extra process).')
    return flag_set


def _write_errors():
    """What a refused write raises: OSError and, once the shard writer imported TensorFlow (the
    except clause asks when an error is raised), its OpError."""
    tf = sys.modules.get('tensorflow')
    return (OSError, tf.errors.OpError) if tf else (OSError,)


def _interrupt(signum, _):
    """SIGTERM handler: stops the conversion the way Ctrl-C does (temporary files removed)."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _convert(options):
    for name in ('dataset_dir', 'output_dir'):
        if not getattr(options, name):
            raise cli.UsageError('--%s is required' % name)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = convert(options.dataset_dir, options.output_dir, options.dataset_name,
                          split=options.split, labels_file=options.labels_file,
                          samples_per_file=options.samples_per_file,
                          num_workers=options.num_workers,
                          skip_unknown_classes=options.skip_unknown_classes,
                          keep_empty_images=options.keep_empty_images)
    except _write_errors() as error:
        cause = error.strerror if isinstance(error, OSError) else tf_errors.describe(error).cause
        if tf_errors.is_disk_full(error):
            raise ConversionError('--output_dir=%s: cannot write: %s; no new shard was published'
                                  % (options.output_dir, cause))
        raise ConversionError(str(error) if isinstance(error, OSError) else
                              tf_errors.one_line(error))
    except KeyboardInterrupt as interrupt:
        terminated = interrupt.args == (signal.SIGTERM.name,)
        cli.print_error('%s; no new shard was published' % (
            'terminated (SIGTERM)' if terminated else 'interrupted'))
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    print(summary)
    return 0


main = cli.make_main(__doc__, define_flags, _convert)


if __name__ == '__main__':
    sys.exit(main())
