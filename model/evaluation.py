"""Scoring a model on a TFRecords split: the core of eval_ssd_network.py and of the trainer's
evaluation during training.

- ``evaluate_checkpoint``: runs a checkpoint (its own graph and session) over the split and fills
  a ``DetectionMetrics`` with the ground truth and the detections, in pixels of each image.
- ``evaluate_detections_file``: the same ground truth against a detections file.
- ``evaluate_detector``: the same for a detector run outside TensorFlow (a ``.tflite`` model).
- ``DetectionMetrics``: one ``add`` feeds the Pascal VOC metric (VOC07 11-point and VOC2010+
  area AP at IoU 0.5, ``utils/voc_metric.py``), the COCO metric (AP over IoU 0.50:0.95,
  ``utils/coco_metric.py``) and the error breakdown at the detector's threshold (found, wrong
  class, poor box, missed; recall by size: ``utils/error_breakdown.py``); ``evaluate()`` merges
  their numbers into one results dict.
- ``format_table`` and ``write_results``: the console table and the evaluation's files
  (``results.json``, the PR curves and, given the detections, ``detections.json``).

Boxes are ``[ymin, xmin, ymax, xmax]``; ground truth and detections are compared in pixels of
the original image (the records store normalised boxes and the image size).
"""
import collections
import json
import math
import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf
from tqdm import tqdm

from datasets import input_pipeline
from model import inference
from utils import coco_metric
from utils import error_breakdown
from utils import files
from utils import visualization
from utils import voc_metric
from utils.errors import ToolkitError
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K

RESULTS_JSON = 'results.json'
_GROUND_TRUTH_KEYS = ('filename', 'shape', 'labels', 'bboxes', 'difficult')

# What evaluate_checkpoint returns: the filled DetectionMetrics, the detections per image
# (detections-file entries, pixel boxes), model_info, the checkpoint prefix, and the first
# images: detections-file entries (``image`` is the name) with ``pixels`` uint8 [H, W, 3],
# ``gt_boxes`` [G, 4] pixels and ``gt_labels`` [G].
Evaluation = collections.namedtuple('Evaluation', 'metrics entries info prefix images')


class EvalError(ToolkitError):
    """A model or data problem that stops the evaluation (one-line message, exit status 1)."""


class DetectionMetrics(object):
    """The VOC and COCO metrics and the error breakdown (at the score ``breakdown_threshold``)
    fed the same images; ``add`` takes ``VOCMetric.add``'s arguments (boxes in pixels of the
    image) and the image size."""

    def __init__(self, class_names, breakdown_threshold=error_breakdown.DEFAULT_SCORE_THRESHOLD):
        self.voc = voc_metric.VOCMetric(class_names)
        self.coco = coco_metric.COCOMetric(class_names)
        self.breakdown = error_breakdown.ErrorBreakdown(class_names, breakdown_threshold)

    @property
    def num_images(self):
        return self.voc.num_images

    def add(self, image_id, image_size, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores,
            det_labels):
        """One image: its id, ``image_size`` (height, width) and ``VOCMetric.add``'s arrays."""
        self.voc.add(image_id, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels)
        self.coco.add(image_id, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores,
                      det_labels)
        self.breakdown.add(image_size, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores,
                           det_labels)

    def evaluate(self):
        """``VOCMetric.evaluate()``'s dict plus ``map_coco`` (AP@[.5:.95]), ``map_coco_50``,
        ``map_coco_75``, per class ``ap_coco``, and ``breakdown`` (``ErrorBreakdown.evaluate()``)."""
        results = self.voc.evaluate()
        coco = self.coco.evaluate()
        for name, entry in results['classes'].items():
            entry['ap_coco'] = coco['classes'][name]['ap_coco']
        results.update((key, coco[key]) for key in ('map_coco', 'map_coco_50', 'map_coco_75'))
        results['breakdown'] = self.breakdown.evaluate()
        return results


def _ground_truth_pixels(example):
    """Record dict (numpy) → (image name, height, width, gt boxes in pixels, labels, difficult)."""
    height, width = int(example['shape'][0]), int(example['shape'][1])
    boxes = np.asarray(example['bboxes'], np.float64) * [height, width, height, width]
    name = example['filename']
    name = os.path.basename(name.decode('utf-8') if isinstance(name, bytes) else name)
    return name, height, width, boxes, example['labels'], example['difficult'].astype(bool)


def _unbatch(batch):
    """Batched padded numpy dict → list of per-image dicts cut to their real object counts (and,
    when the batch holds images, to their real size)."""
    images = []
    for i in range(len(batch['filename'])):
        count = int(batch['num_objects'][i])
        image = {key: batch[key][i][:count] if key in ('labels', 'bboxes', 'difficult')
                 else batch[key][i] for key in batch}
        if 'image' in image:
            image['image'] = image['image'][:image['shape'][0], :image['shape'][1]]
        images.append(image)
    return images


def _batched_ground_truth(spec, batch_size, max_images=None, net=None, with_images=False):
    """tf.data pipeline of padded batches of the first ``max_images`` records (None: all):
    ground truth (+ with ``net``, the images preprocessed for it and the windows ``bbox_img``
    they fill; + with ``with_images``, the decoded images)."""
    def select(example):
        element = {key: example[key] for key in _GROUND_TRUTH_KEYS}
        element['num_objects'] = tf.shape(example['labels'])[0]
        if net is not None:
            element['inputs'], element['bbox_img'] = inference.preprocess_for_detection(
                example['image'], net)
        if with_images:
            element['image'] = example['image']
        return element
    dataset = input_pipeline.make_dataset(spec, shuffle=False, num_epochs=1)
    if max_images:
        dataset = dataset.take(max_images)
    return dataset.map(select).padded_batch(batch_size)


def _num_images(spec, max_images):
    return min(spec.num_samples, max_images) if max_images else spec.num_samples


def _num_batches(spec, batch_size, max_images):
    return int(math.ceil(_num_images(spec, max_images) / float(batch_size)))


def _check_all_read(spec, max_images, num_read):
    """``EvalError`` when the split's shards held fewer records than its description lists: a
    score over part of the split must not pass for the split's."""
    expected = _num_images(spec, max_images)
    if num_read < expected:
        empty = [path for path in spec.data_sources if os.path.getsize(path) == 0]
        raise EvalError('split %s: read %d of the %d images dataset_description.json lists (%s): '
                        'convert the split again' % (
                            spec.split_name, num_read, expected,
                            'empty shard%s: %s' % ('s' * (len(empty) > 1), ', '.join(empty))
                            if empty else 'a shard of %s is cut short'
                            % os.path.dirname(spec.data_sources[0])))


def _batches(session, fetches, num_batches, description, first_fetches=None, first=0):
    """Runs ``fetches`` until the data or ``num_batches`` runs out; the first ``first`` batches
    run ``first_fetches`` instead. A progress bar on stderr unless ``description`` is None."""
    progress = tqdm(range(num_batches), desc=description, unit='batch', file=sys.stderr,
                    disable=description is None)
    for index in progress:
        try:
            yield session.run(first_fetches if index < first else fetches)
        except tf.errors.OutOfRangeError:
            return


def _scoring_graph():
    """A new graph to score in. Its input pipeline draws nothing at random, but in a process
    where a seeded training run turned op determinism on (``--seed`` with
    ``--eval_every_n_steps``) TensorFlow refuses to build an iterator in a graph without a seed:
    it gets a fixed one."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
    return graph


def evaluate_checkpoint(ckpt_path, spec, batch_size=8, max_images=None, select_threshold=0.01,
                        nms_threshold=NMS_THRESHOLD, top_k=TOP_K, keep_top_k=KEEP_TOP_K,
                        precision='float32', num_kept_images=0, progress=True,
                        breakdown_threshold=error_breakdown.DEFAULT_SCORE_THRESHOLD):
    """Runs the model of ``ckpt_path`` over the split ``spec`` (a DatasetSpec), computing in
    ``precision``, in a graph and session of its own.

    ``max_images``: score only the first records (None: all). ``num_kept_images``: return the
    first images with their ground truth and detections (for pictures). ``progress``: a
    progress bar on stderr. ``breakdown_threshold``: the score of the error breakdown.
    Returns an ``Evaluation``.
    """
    with _scoring_graph().as_default():
        net, info, prefix = inference.load_model(ckpt_path)
        if info['class_names'] != spec.class_names:
            raise EvalError('checkpoint %s detects %s (model_info.json) but dataset %s/%s has '
                            'classes %s' % (prefix, info['class_names'], spec.dataset_name,
                                            spec.split_name, spec.class_names))
        batch = tf.data.make_one_shot_iterator(_batched_ground_truth(
            spec, batch_size, max_images, net, with_images=num_kept_images > 0)).get_next()
        detections = inference.detect(net, batch['inputs'], batch['shape'][:, :2],
                                      select_threshold, nms_threshold, top_k, keep_top_k,
                                      precision=precision, bbox_img=batch['bbox_img'])
        fetches = {key: batch[key] for key in _GROUND_TRUTH_KEYS + ('num_objects',)}
        fetches.update({key: detections[key] for key in inference.DETECTION_KEYS})
        fetches_with_images = dict(fetches, image=batch['image']) if num_kept_images else fetches
        metrics = DetectionMetrics(spec.class_names, breakdown_threshold)
        entries, kept = [], []
        session, (fetches, fetches_with_images) = inference.restored_session(
            prefix, (fetches, fetches_with_images))
        with session:
            for out in _batches(session, fetches, _num_batches(spec, batch_size, max_images),
                                'evaluating %s' % os.path.basename(prefix) if progress else None,
                                fetches_with_images,
                                int(math.ceil(num_kept_images / float(batch_size)))):
                for image in _unbatch(out):
                    count = int(image['num_detections'])
                    entry, gt_boxes, gt_labels = _score_image(
                        metrics, image, image['detection_boxes'][:count],
                        image['detection_scores'][:count], image['detection_classes'][:count])
                    entries.append(entry)
                    if len(kept) < num_kept_images:
                        kept.append(dict(entry, pixels=image['image'], gt_boxes=gt_boxes,
                                         gt_labels=gt_labels))
        _check_all_read(spec, max_images, len(entries))
    return Evaluation(metrics, entries, info, prefix, kept)


def _score_image(metrics, image, boxes, scores, classes):
    """Adds one record's ground truth and detections (pixel boxes) to ``metrics``; returns
    ``(detections-file entry, gt boxes in pixels, gt labels)``."""
    name, height, width, gt_boxes, gt_labels, difficult = _ground_truth_pixels(image)
    metrics.add(name, (height, width), gt_boxes, gt_labels, difficult, boxes, scores, classes)
    entry = {'image': name, 'height': height, 'width': width, 'boxes': boxes, 'scores': scores,
             'classes': classes}
    return entry, gt_boxes, gt_labels


def evaluate_detector(detect, spec, batch_size=8, max_images=None, description=None,
                      breakdown_threshold=error_breakdown.DEFAULT_SCORE_THRESHOLD):
    """Scores a detector that runs outside this graph (e.g. a ``.tflite`` model in LiteRT) on
    the split ``spec``: ``detect(image uint8 [H, W, 3])`` → ``(boxes [D, 4] pixels, scores [D],
    classes [D])``, called on each decoded record. Returns ``(DetectionMetrics, entries)`` as
    ``evaluate_checkpoint`` fills them."""
    metrics = DetectionMetrics(spec.class_names, breakdown_threshold)
    entries = []
    with _scoring_graph().as_default():
        batch = tf.data.make_one_shot_iterator(
            _batched_ground_truth(spec, batch_size, max_images, with_images=True)).get_next()
        with tf.Session() as session:
            for out in _batches(session, batch, _num_batches(spec, batch_size, max_images),
                                description):
                for image in _unbatch(out):
                    entries.append(_score_image(metrics, image, *detect(image['image']))[0])
    _check_all_read(spec, max_images, len(entries))
    return metrics, entries


def evaluate_detections_file(path, spec, batch_size=8, max_images=None,
                             breakdown_threshold=error_breakdown.DEFAULT_SCORE_THRESHOLD):
    """Scores the detections file ``path`` against the split ``spec``; returns the
    ``DetectionMetrics``.

    Every evaluated record must have an entry (an image without detections has an empty one)
    with the record's image size; entries of other images are ignored.
    """
    detections, class_names = voc_metric.read_detections_file(path)
    if class_names is not None and list(class_names) != spec.class_names:
        raise EvalError('%s: class_names %s differ from dataset %s classes %s'
                        % (path, class_names, spec.dataset_name, spec.class_names))
    metrics = DetectionMetrics(spec.class_names, breakdown_threshold)
    missing = []
    with _scoring_graph().as_default():
        batch = tf.data.make_one_shot_iterator(
            _batched_ground_truth(spec, batch_size, max_images)).get_next()
        with tf.Session() as session:
            for out in _batches(session, batch, _num_batches(spec, batch_size, max_images),
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
                    metrics.add(name, (height, width), gt_boxes, gt_labels, difficult,
                                entry['boxes'], entry['scores'], entry['classes'])
    _check_all_read(spec, max_images, metrics.num_images + len(missing))
    if missing:
        raise EvalError('%s has no entry for %d of the evaluated images (first: %s); an image '
                        'without detections needs an entry with empty lists'
                        % (path, len(missing), missing[0]))
    return metrics


def format_table(results):
    """Console table: one row per class (positives, detections, AP07, AP10+, COCO AP), then the
    mAPs and COCO's AP@0.5 / AP@0.75; then the error breakdown when the results have one."""
    def ap(value):
        return '%7.4f' % value if value is not None else '      -'
    width = max([len('class')] + [len(name) for name in results['classes']])
    lines = ['%-*s  %6s  %6s  %7s  %7s  %9s' % (width, 'class', 'gt', 'dets', 'AP07', 'AP10+',
                                                'AP.5:.95')]
    lines.append('-' * len(lines[0]))
    for name, entry in results['classes'].items():
        lines.append('%-*s  %6d  %6d  %s  %s  %9s' % (
            width, name, entry['num_positives'], entry['num_detections'], ap(entry['ap_voc07']),
            ap(entry['ap_voc2010']), ap(entry['ap_coco'])))
    lines.append('-' * len(lines[0]))
    lines.append('%-*s  %6s  %6s  %s  %s  %9s' % (width, 'mAP', '', '', ap(results['map_voc07']),
                                                  ap(results['map_voc2010']),
                                                  ap(results['map_coco'])))
    lines.append('%d images; AP07/AP10+ at IoU 0.5 (VOC2007 11-point, VOC2010+ area), AP.5:.95 '
                 "COCO's (pycocotools; AP@0.5 %s, AP@0.75 %s); classes without ground truth (-) "
                 'are left out of the mean' % (results['num_images'],
                                               ap(results['map_coco_50']).strip(),
                                               ap(results['map_coco_75']).strip()))
    if 'breakdown' in results:
        lines += [''] + error_breakdown.format_table(results['breakdown'])
    return '\n'.join(lines)


def write_results_json(path, results, settings):
    """Writes ``settings`` + results (JSON-ready) at ``path`` through a temporary file, so the
    file is complete or absent; returns the path."""
    files.write_text_atomically(path, json.dumps(
        dict(settings, **voc_metric.results_to_json(results)), indent=1, allow_nan=False))
    return path


def write_results(output_dir, results, settings, detections=None, class_names=None):
    """Writes results.json (``settings`` + results) and the PR curves and, given the
    ``detections`` (entries of a detections file, boxes in pixels: see
    ``voc_metric.write_detections_file``) with the dataset's ``class_names``, detections.json;
    returns the results.json path."""
    os.makedirs(output_dir, exist_ok=True)
    if detections is not None:
        voc_metric.write_detections_file(os.path.join(output_dir, voc_metric.DETECTIONS_JSON),
                                         detections, class_names)
    path = write_results_json(os.path.join(output_dir, RESULTS_JSON), results, settings)
    visualization.save_precision_recall_curves(output_dir, results)
    return path
