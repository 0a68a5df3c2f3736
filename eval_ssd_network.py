"""Evaluates an SSD checkpoint (or a detections file) on a TFRecords split: per-class AP and mAP.

    python eval_ssd_network.py --ckpt_path=ckpt/fine_tuning --dataset_dir=Images/tfrecords \
        --dataset_name=vehicle --split=test [--output_dir=output/eval]
    python eval_ssd_network.py --detections_file=output/detections/detections.json \
        --dataset_dir=Images/tfrecords --dataset_name=vehicle --split=test

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
from utils import cpu_features  # noqa: E402  (imports no TensorFlow)

PRECISION = cpu_features.AUTO  # the default of --precision
if __name__ == '__main__':  # run as a tool: no TensorFlow C++ start-up lines in its output
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    # TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, on import: decide before it loads.
    cpu_features.enable_onednn_for_bfloat16(sys.argv, PRECISION)

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from datasets import dataset_factory  # noqa: E402
from datasets import input_pipeline  # noqa: E402
from utils import cli  # noqa: E402
from model import inference  # noqa: E402
from model import model_info  # noqa: E402
from utils import visualization  # noqa: E402
from utils import voc_metric  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402

RESULTS_JSON = 'results.json'
DETECTIONS_JSON = 'detections.json'
_GROUND_TRUTH_KEYS = ('filename', 'shape', 'labels', 'bboxes', 'difficult')


class EvalError(ToolkitError):
    """A model or data problem that stops the evaluation (one-line message, exit status 1)."""


def define_flags():
    """The evaluator's own flags (a ``cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('What to evaluate')
    flag_set.checkpoint_path()
    flag_set.string('detections_file', None, 'Score this detections JSON (format in '
                    'utils/voc_metric.py, e.g. from detector.py --json) instead of a model.')
    flag_set.precision(PRECISION)
    flag_set.group('Data')
    flag_set.string('dataset_dir', None, 'Folder of the TFRecords and dataset_description.json.')
    flag_set.string('dataset_name', 'vehicle', 'pascalvoc_2007, vehicle or a custom name.')
    flag_set.string('split', 'test', 'Split to evaluate (as the converter named it).')
    flag_set.deprecated_alias('train_or_test', 'split')
    flag_set.deprecated_alias('split_name', 'split')
    flag_set.integer('batch_size', 8, 'Images per batch.')
    flag_set.integer('max_num_batches', None, 'Evaluate only the first N batches (default: all).')
    flag_set.group('Post-processing (checkpoint only)')
    flag_set.postprocessing(select_threshold=0.01)
    flag_set.group('Output')
    flag_set.string('output_dir', os.path.join('output', 'eval'),
                    'Folder for results.json, pr_<class>.png and detections.json.')
    return flag_set


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


def _batched_ground_truth(spec, batch_size, net=None):
    """tf.data pipeline of padded batches: ground truth (+ with ``net``, the images preprocessed
    for it and the windows ``bbox_img`` they fill)."""
    def select(example):
        element = {key: example[key] for key in _GROUND_TRUTH_KEYS}
        element['num_objects'] = tf.shape(example['labels'])[0]
        if net is not None:
            element['inputs'], element['bbox_img'] = inference.preprocess_for_detection(
                example['image'], net)
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
            _batched_ground_truth(spec, batch_size, net)).get_next()
        detections = inference.detect(net, batch['inputs'], batch['shape'][:, :2],
                                      select_threshold, nms_threshold, top_k, keep_top_k,
                                      precision=precision, bbox_img=batch['bbox_img'])
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
            _batched_ground_truth(spec, batch_size)).get_next()
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


def _check_flags(options):
    if bool(options.ckpt_path) == bool(options.detections_file):
        raise cli.UsageError('give exactly one of --ckpt_path (evaluate a model) and '
                             '--detections_file (score a file)')
    if not options.dataset_dir:
        raise cli.UsageError('--dataset_dir is required (folder of the TFRecords)')
    if options.batch_size < 1:
        raise cli.UsageError('--batch_size must be positive, got %d' % options.batch_size)
    if options.max_num_batches is not None and options.max_num_batches < 1:
        raise cli.UsageError('--max_num_batches must be positive, got %d' % options.max_num_batches)
    cli.check_postprocessing(options)


def _run(options):
    _check_flags(options)
    spec = dataset_factory.get_dataset(options.dataset_name, options.split, options.dataset_dir)
    os.makedirs(options.output_dir, exist_ok=True)  # fails before a long evaluation, not after
    settings = {'dataset_name': spec.dataset_name, 'split_name': spec.split_name,
                'dataset_dir': options.dataset_dir, 'num_samples': spec.num_samples,
                'max_num_batches': options.max_num_batches, 'batch_size': options.batch_size}
    if options.detections_file:
        metric = evaluate_detections_file(options.detections_file, spec, options.batch_size,
                                          options.max_num_batches)
        settings['detections_file'] = options.detections_file
    else:
        metric, entries, _, prefix = evaluate_checkpoint(
            options.ckpt_path, spec, options.batch_size, options.max_num_batches,
            options.select_threshold, options.nms_threshold, options.top_k, options.keep_top_k,
            options.precision)
        settings.update(checkpoint=prefix, precision=options.precision,
                        select_threshold=options.select_threshold,
                        nms_threshold=options.nms_threshold, top_k=options.top_k,
                        keep_top_k=options.keep_top_k)
        voc_metric.write_detections_file(os.path.join(options.output_dir, DETECTIONS_JSON),
                                         entries, spec.class_names)
    results = metric.evaluate()
    print(format_table(results))
    print('results written to %s' % write_results(options.output_dir, results, settings))


def _evaluate(options):
    try:
        _run(options)
    except tf.errors.OpError as e:
        raise EvalError('evaluation failed: %s' % inference.op_error_reason(e))
    except OSError as e:  # e.g. an --output_dir that cannot be written
        raise EvalError('%s: %s' % (e.filename, e.strerror))
    return 0


def main(argv=None):
    """The command line: ``main(['eval_ssd_network.py', '--ckpt_path=...', ...])`` → exit status."""
    return cli.run(argv, define_flags(), __doc__, _evaluate)


if __name__ == '__main__':
    sys.exit(main())
