"""Evaluates an SSD checkpoint (or a detections file) on a TFRecords split: per-class AP and mAP.

    python eval_ssd_network.py --ckpt_path=ckpt/fine_tuning --dataset_dir=Images/tfrecords \
        --dataset_name=vehicle --train_or_test=test [--output_dir=output/eval]
    python eval_ssd_network.py --detections_file=output/detections/detections.json \
        --dataset_dir=Images/tfrecords --dataset_name=vehicle --train_or_test=test

Both the Pascal VOC 2007 11-point metric and the VOC 2010+ area metric are reported (IoU >= 0.5,
difficult objects ignored; see utils/voc_metric.py). ``--output_dir`` receives
``results.json`` (run settings, mAP, per-class AP, precision and recall), ``pr_<class>.png``
(precision-recall curve per class with ground truth) and, for a checkpoint, ``detections.json``
(the detections in pixels, re-scorable with ``--detections_file``).

Exit status: 0 on success, 1 when the model, the data or the detections file cannot be used,
2 for bad flags.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402
from absl import flags  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets import dataset_factory  # noqa: E402
from datasets import input_pipeline  # noqa: E402
from utils import cli  # noqa: E402
from model import inference  # noqa: E402
from model import model_info  # noqa: E402
from utils import visualization  # noqa: E402
from utils import voc_metric  # noqa: E402

RESULTS_JSON = 'results.json'
DETECTIONS_JSON = 'detections.json'
_GROUND_TRUTH_KEYS = ('filename', 'shape', 'labels', 'bboxes', 'difficult')


class EvalError(Exception):
    """A flag, model or data problem that stops the evaluation (one-line message)."""


# The script's own flag set (see detector.py): no collision with other CLIs' flags.
FLAGS = flags.FlagValues()


def _define_flags():
    define = dict(flag_values=FLAGS)
    # What to evaluate.
    flags.DEFINE_string('ckpt_path', None, 'Checkpoint prefix (dir/model.ckpt-1000) or training '
                        'directory (its newest checkpoint); model_info.json must sit beside it.',
                        **define)
    flags.DEFINE_string('detections_file', None, 'Score this detections JSON (format in '
                        'utils/voc_metric.py, e.g. from detector.py --json) instead of a model.',
                        **define)
    # Data.
    flags.DEFINE_string('dataset_dir', None, 'Folder of the TFRecords and '
                        'dataset_description.json.', **define)
    flags.DEFINE_string('dataset_name', 'vehicle', 'pascalvoc_2007, vehicle or a custom name.',
                        **define)
    flags.DEFINE_string('train_or_test', 'test', 'Split to evaluate (as the trainer names it).',
                        **define)
    flags.DEFINE_string('split_name', None, 'Alias of --train_or_test.', **define)
    flags.DEFINE_integer('batch_size', 8, 'Images per batch.', **define)
    flags.DEFINE_integer('max_num_batches', None, 'Evaluate only the first N batches '
                         '(default: all).', **define)
    # Post-processing (checkpoint only).
    flags.DEFINE_float('select_threshold', 0.01, 'Minimum class score of a detection, in [0, 1].',
                       **define)
    flags.DEFINE_float('nms_threshold', 0.45, 'IoU above which non-maximum suppression drops '
                       'the lower-scored box, in (0, 1].', **define)
    flags.DEFINE_integer('top_k', 400, 'Boxes kept per class before non-maximum suppression.',
                         **define)
    flags.DEFINE_integer('keep_top_k', 200, 'Detections kept per image after suppression.',
                         **define)
    # Output.
    flags.DEFINE_string('output_dir', os.path.join('output', 'eval'),
                        'Folder for results.json, pr_<class>.png and detections.json.', **define)
    cli.define_precision_flag(FLAGS)
    flags.DEFINE_boolean('help', False, 'Show this help.', short_name='h', **define)


_define_flags()
FLAG_GROUPS = (('What to evaluate', ('ckpt_path', 'detections_file', 'precision')),
               ('Data', ('dataset_dir', 'dataset_name', 'train_or_test', 'split_name',
                         'batch_size', 'max_num_batches')),
               ('Post-processing (checkpoint only)', ('select_threshold', 'nms_threshold', 'top_k',
                                                      'keep_top_k')),
               ('Output', ('output_dir',)))


def _ground_truth_pixels(example):
    """Record dict (numpy) → (image name, height, width, gt boxes in pixels, labels, difficult)."""
    height, width = int(example['shape'][0]), int(example['shape'][1])
    boxes = np.asarray(example['bboxes'], np.float64) * [height, width, height, width]
    name = example['filename']
    name = os.path.basename(name.decode('utf-8') if isinstance(name, bytes) else name)
    return name, height, width, boxes, example['labels'], example['difficult'].astype(bool)


def _unbatch(batch):
    """Batched padded numpy dict → list of per-image dicts cut to their real object counts."""
    images = []
    for i in range(len(batch['filename'])):
        count = int(batch['num_objects'][i])
        images.append({key: batch[key][i][:count] if key in ('labels', 'bboxes', 'difficult')
                       else batch[key][i] for key in batch})
    return images


def _batched_ground_truth(spec, batch_size, with_images):
    """tf.data pipeline of padded batches: ground truth (+ preprocessed images and their sizes)."""
    def select(example):
        element = {key: example[key] for key in _GROUND_TRUTH_KEYS}
        element['num_objects'] = tf.shape(example['labels'])[0]
        if with_images:
            element['inputs'] = inference.preprocess_for_detection(example['image'])
        return element
    dataset = input_pipeline.make_dataset(spec, shuffle=False, num_epochs=1)
    return dataset.map(select).padded_batch(batch_size)


def _num_batches(spec, batch_size, max_num_batches):
    total = int(math.ceil(spec.num_samples / float(batch_size)))
    return min(total, max_num_batches) if max_num_batches else total


def _batches(session, next_batch, num_batches, description):
    """Runs ``next_batch`` until the data or ``num_batches`` runs out, with a progress bar."""
    for _ in tqdm(range(num_batches), desc=description, unit='batch', file=sys.stderr):
        try:
            yield session.run(next_batch)
        except tf.errors.OutOfRangeError:
            return


def evaluate_checkpoint(ckpt_path, spec, batch_size=8, max_num_batches=None,
                        select_threshold=0.01, nms_threshold=0.45, top_k=400, keep_top_k=200,
                        precision='float32'):
    """Runs the model of ``ckpt_path`` over the split ``spec`` (a DatasetSpec), computing in
    ``precision``.

    Returns ``(metric, detections, info, checkpoint_prefix)``: the filled ``VOCMetric``, the
    detections per image (detections-file entries, pixel boxes), model_info and the checkpoint.
    """
    with tf.Graph().as_default():
        net, info, prefix = inference.load_model(ckpt_path)
        if info['class_names'] != spec.class_names:
            raise EvalError('checkpoint %s detects %s (model_info.json) but dataset %s/%s has '
                            'classes %s' % (prefix, info['class_names'], spec.dataset_name,
                                            spec.split_name, spec.class_names))
        batch = tf.data.make_one_shot_iterator(
            _batched_ground_truth(spec, batch_size, with_images=True)).get_next()
        detections = inference.detect(net, batch['inputs'], batch['shape'][:, :2],
                                      select_threshold, nms_threshold, top_k, keep_top_k,
                                      precision=precision)
        fetches = {key: batch[key] for key in _GROUND_TRUTH_KEYS + ('num_objects',)}
        fetches.update({key: detections[key] for key in inference.DETECTION_KEYS})
        metric = voc_metric.VOCMetric(spec.class_names)
        entries = []
        with tf.Session() as session:
            inference.restore(session, prefix)
            for out in _batches(session, fetches, _num_batches(spec, batch_size, max_num_batches),
                                'evaluating %s' % os.path.basename(prefix)):
                for image in _unbatch(out):
                    name, height, width, gt_boxes, gt_labels, difficult = _ground_truth_pixels(image)
                    count = int(image['num_detections'])
                    entry = {'image': name, 'height': height, 'width': width,
                             'boxes': image['detection_boxes'][:count],
                             'scores': image['detection_scores'][:count],
                             'classes': image['detection_classes'][:count]}
                    metric.add(name, gt_boxes, gt_labels, difficult, entry['boxes'],
                               entry['scores'], entry['classes'])
                    entries.append(entry)
    return metric, entries, info, prefix


def evaluate_detections_file(path, spec, batch_size=8, max_num_batches=None):
    """Scores the detections file ``path`` against the split ``spec``; returns the ``VOCMetric``.

    Every evaluated record must have an entry (an image without detections has an empty one)
    with the record's image size; entries of other images are ignored.
    """
    detections, class_names = voc_metric.read_detections_file(path)
    if class_names is not None and list(class_names) != spec.class_names:
        raise EvalError('%s: class_names %s differ from dataset %s classes %s'
                        % (path, class_names, spec.dataset_name, spec.class_names))
    metric = voc_metric.VOCMetric(spec.class_names)
    missing = []
    with tf.Graph().as_default():
        batch = tf.data.make_one_shot_iterator(
            _batched_ground_truth(spec, batch_size, with_images=False)).get_next()
        with tf.Session() as session:
            for out in _batches(session, batch, _num_batches(spec, batch_size, max_num_batches),
                                'scoring %s' % os.path.basename(path)):
                for image in _unbatch(out):
                    name, height, width, gt_boxes, gt_labels, difficult = _ground_truth_pixels(image)
                    if name not in detections:
                        missing.append(name)
                        continue
                    entry = detections[name]
                    if (entry['height'], entry['width']) != (height, width):
                        raise EvalError('%s: image %s is %dx%d (height x width) there but %dx%d '
                                        'in the dataset' % (path, name, entry['height'],
                                                            entry['width'], height, width))
                    metric.add(name, gt_boxes, gt_labels, difficult, entry['boxes'],
                               entry['scores'], entry['classes'])
    if missing:
        raise EvalError('%s has no entry for %d of the evaluated images (first: %s); an image '
                        'without detections needs an entry with empty lists'
                        % (path, len(missing), missing[0]))
    return metric


def format_table(results):
    """Console table: one row per class (positives, detections, AP07, AP10+), then the mAPs."""
    def ap(value):
        return '%7.4f' % value if value is not None else '      -'
    width = max([len('class')] + [len(name) for name in results['classes']])
    lines = ['%-*s  %6s  %6s  %7s  %7s' % (width, 'class', 'gt', 'dets', 'AP07', 'AP10+')]
    lines.append('-' * len(lines[0]))
    for name, entry in results['classes'].items():
        lines.append('%-*s  %6d  %6d  %s  %s' % (width, name, entry['num_positives'],
                                                 entry['num_detections'], ap(entry['ap_voc07']),
                                                 ap(entry['ap_voc2010'])))
    lines.append('-' * len(lines[0]))
    lines.append('%-*s  %6s  %6s  %s  %s' % (width, 'mAP', '', '', ap(results['map_voc07']),
                                             ap(results['map_voc2010'])))
    lines.append('%d images; classes without ground truth (-) are left out of the mean'
                 % results['num_images'])
    return '\n'.join(lines)


def write_results(output_dir, results, settings):
    """Writes results.json (``settings`` + results) and the PR curves; returns the JSON path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, RESULTS_JSON)
    with open(path, 'w') as f:
        json.dump(dict(settings, **voc_metric.results_to_json(results)), f, indent=1,
                  allow_nan=False)
    visualization.save_precision_recall_curves(output_dir, results)
    return path


def _split_name():
    if FLAGS.split_name and FLAGS['train_or_test'].present and FLAGS.split_name != FLAGS.train_or_test:
        raise EvalError('--split_name=%s and --train_or_test=%s disagree: give one of them'
                        % (FLAGS.split_name, FLAGS.train_or_test))
    return FLAGS.split_name or FLAGS.train_or_test


def _check_flags():
    if bool(FLAGS.ckpt_path) == bool(FLAGS.detections_file):
        raise EvalError('give exactly one of --ckpt_path (evaluate a model) and --detections_file '
                        '(score a file)')
    if not FLAGS.dataset_dir:
        raise EvalError('--dataset_dir is required (folder of the TFRecords)')
    if FLAGS.batch_size < 1:
        raise EvalError('--batch_size must be positive, got %d' % FLAGS.batch_size)
    if FLAGS.max_num_batches is not None and FLAGS.max_num_batches < 1:
        raise EvalError('--max_num_batches must be positive, got %d' % FLAGS.max_num_batches)
    if not 0. <= FLAGS.select_threshold <= 1.:
        raise EvalError('--select_threshold must be in [0, 1], got %g' % FLAGS.select_threshold)
    if not 0. < FLAGS.nms_threshold <= 1.:
        raise EvalError('--nms_threshold must be in (0, 1], got %g' % FLAGS.nms_threshold)
    if FLAGS.top_k < 1 or FLAGS.keep_top_k < 1:
        raise EvalError('--top_k and --keep_top_k must be positive')
    return _split_name()


def _run(split_name):
    spec = dataset_factory.get_dataset(FLAGS.dataset_name, split_name, FLAGS.dataset_dir)
    os.makedirs(FLAGS.output_dir, exist_ok=True)  # fails before a long evaluation, not after
    settings = {'dataset_name': spec.dataset_name, 'split_name': spec.split_name,
                'dataset_dir': FLAGS.dataset_dir, 'num_samples': spec.num_samples,
                'max_num_batches': FLAGS.max_num_batches, 'batch_size': FLAGS.batch_size}
    if FLAGS.detections_file:
        metric = evaluate_detections_file(FLAGS.detections_file, spec, FLAGS.batch_size,
                                          FLAGS.max_num_batches)
        settings['detections_file'] = FLAGS.detections_file
    else:
        metric, entries, _, prefix = evaluate_checkpoint(
            FLAGS.ckpt_path, spec, FLAGS.batch_size, FLAGS.max_num_batches,
            FLAGS.select_threshold, FLAGS.nms_threshold, FLAGS.top_k, FLAGS.keep_top_k,
            FLAGS.precision)
        settings.update(checkpoint=prefix, precision=FLAGS.precision,
                        select_threshold=FLAGS.select_threshold,
                        nms_threshold=FLAGS.nms_threshold, top_k=FLAGS.top_k,
                        keep_top_k=FLAGS.keep_top_k)
        voc_metric.write_detections_file(os.path.join(FLAGS.output_dir, DETECTIONS_JSON), entries,
                                         spec.class_names)
    results = metric.evaluate()
    print(format_table(results))
    print('results written to %s' % write_results(FLAGS.output_dir, results, settings))


def main():
    try:
        split_name = _check_flags()
    except EvalError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    try:
        _run(split_name)
    except (EvalError, model_info.ModelInfoError, voc_metric.MetricInputError,
            dataset_factory.DatasetError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    except tf.errors.OpError as e:
        print('error: evaluation failed: %s' % inference.op_error_reason(e), file=sys.stderr)
        return 1
    except OSError as e:  # e.g. an --output_dir that cannot be written
        print('error: %s: %s' % (e.filename, e.strerror), file=sys.stderr)
        return 1
    return 0


def run(argv):
    """The command line: ``run(['eval_ssd_network.py', '--ckpt_path=...', ...])`` → exit status."""
    return cli.run_cli(argv, FLAGS, FLAG_GROUPS, __doc__, main)


if __name__ == '__main__':
    sys.exit(run(sys.argv))
