"""Pascal VOC detection metric: per-class AP (VOC2007 11-point and VOC2010+ area) and mAP.

NumPy only, so any source of detections can be scored: the evaluator's own graph, a JSON
detections file, or a serving client.

Conventions
- Boxes are ``[ymin, xmin, ymax, xmax]``, either all normalised to [0, 1] or all in pixels of
  the same image; IoU is ``utils.boxes.iou``, the plain continuous one (no VOC devkit ``+1``):
  the right formula for normalised floats and for the 0-based continuous pixel frame.
- Labels are ints 1..N (0 = background never scored).
- A detection is a true positive when its best-overlapping ground truth of the same class and
  image has IoU >= ``iou_threshold`` (0.5) and was not matched before by a higher-scored
  detection; a second detection of an already matched box is a false positive (duplicate).
  When the best-overlapping box is *difficult* the detection is ignored (neither TP nor FP), and
  difficult boxes do not count in the number of positives.
- Detections of a class are ranked by descending score over all images; ties keep the order in
  which they were added (stable sort), as the devkit's stable sort does.
- A class without (non-difficult) ground truth has no AP (``None``) and is left out of the mean.

Typical use::

    metric = VOCMetric(class_names=['Bus', 'Car'])
    for image in images:
        metric.add(image_id, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels)
    results = metric.evaluate()
    results['map_voc07'], results['classes']['Car']['ap_voc2010']

Detections file (JSON, written by ``detector.py --json`` and ``eval_ssd_network.py``, read by
``eval_ssd_network.py --detections_file``), boxes in pixels of the original image::

    {"class_names": ["Bus", "Car"],                 # optional: id i is class_names[i - 1]
     "images": [{"image": "000012.jpg",             # file name, matched with image/filename
                 "height": 375, "width": 500,       # original image size
                 "boxes": [[ymin, xmin, ymax, xmax], ...],
                 "scores": [0.93, ...],
                 "classes": [2, ...]}]}             # class ids, 1..N
"""
import json

import numpy as np

from utils import boxes as boxes_lib
from utils.errors import ToolkitError

DEFAULT_IOU_THRESHOLD = 0.5
DETECTIONS_FILE_KEYS = ('image', 'height', 'width', 'boxes', 'scores', 'classes')
# The name detector.py --json and eval_ssd_network.py give a detections file in --output_dir.
DETECTIONS_JSON = 'detections.json'


class MetricInputError(ToolkitError, ValueError):
    """Boxes, labels or a detections file that the metric cannot score."""


def best_same_class(overlaps, det_labels, gt_labels):
    """Each detection's best-overlapping ground truth of its own class.

    ``overlaps [D, G]`` IoU, ``det_labels [D]``, ``gt_labels [G]``. Returns ``(index [D], IoU
    [D])``; the IoU is -1 where the image has no ground truth of the detection's class.
    """
    same = np.where(det_labels[:, None] == gt_labels[None, :], overlaps, -1.)
    best = np.argmax(same, axis=1)
    return best, same[np.arange(len(best)), best]


def match_image(gt_boxes, gt_labels, gt_difficult, det_boxes, det_labels, det_scores,
                iou_threshold=DEFAULT_IOU_THRESHOLD):
    """Matches the detections of ONE image to its ground truth, all classes at once.

    Args: ``gt_boxes [G, 4]``, ``gt_labels [G]``, ``gt_difficult [G]`` bool, ``det_boxes [D, 4]``,
    ``det_labels [D]``, ``det_scores [D]``.
    Returns ``(labels, scores, is_tp)`` of the detections that count (those whose best ground
    truth is difficult are dropped), in descending score order (stable); ``is_tp`` is bool.

    As in the devkit, each detection is compared with its best-overlapping box of its class only
    (taken or not), so the TPs are, per box, the highest-scored detection hitting it: no loop.
    """
    order = np.argsort(-det_scores, kind='stable')
    labels, scores = det_labels[order], det_scores[order]
    is_tp = np.zeros(len(scores), dtype=bool)
    counted = np.ones(len(scores), dtype=bool)
    if len(gt_boxes) and len(scores):
        best, best_iou = best_same_class(boxes_lib.iou(det_boxes[order], gt_boxes), labels,
                                         gt_labels)
        hit = best_iou >= iou_threshold
        counted = ~(hit & gt_difficult[best])
        hits = np.nonzero(hit & counted)[0]
        # np.unique's return_index gives the first (highest-scored) detection of each box.
        _, first = np.unique(best[hits], return_index=True)
        is_tp[hits[first]] = True
    return labels[counted], scores[counted], is_tp[counted]


def precision_recall(scores, is_tp, num_positives):
    """Precision and recall after each detection, ranked by descending score (stable).

    ``scores [D]``, ``is_tp [D]`` bool, ``num_positives`` = non-difficult ground truths (> 0).
    Returns ``(precision [D], recall [D])`` float64.
    """
    order = np.argsort(-np.asarray(scores), kind='stable')
    tp = np.cumsum(np.asarray(is_tp, dtype=np.float64)[order])
    fp = np.cumsum(1. - np.asarray(is_tp, dtype=np.float64)[order])
    return tp / np.maximum(tp + fp, np.finfo(np.float64).eps), tp / float(num_positives)


# The 11 recall thresholds of py-faster-rcnn's voc_eval.py and mmdetection: np.arange's floats, of
# which 0.3, 0.6 and 0.7 lie just above k/10 (0.30000000000000004...), so a recall of exactly 3/10
# does not reach them. Python detection code (SSD and Faster R-CNN ports) reports these numbers.
VOC07_RECALL_THRESHOLDS = np.arange(0., 1.1, 0.1)
# The same thresholds as the floats nearest to k/10.
VOC07_EXACT_RECALL_THRESHOLDS = np.arange(11) / 10.


def ap_voc07(precision, recall, thresholds=VOC07_RECALL_THRESHOLDS):
    """VOC2007 11-point AP: mean over the recall ``thresholds`` t of the max precision at
    recall >= t, as py-faster-rcnn's ``voc_eval.py`` and mmdetection compute it (default)."""
    total = 0.
    for t in thresholds:
        reached = recall >= t
        total += np.max(precision[reached]) if np.any(reached) else 0.
    return total / float(len(thresholds))


def ap_voc07_exact(precision, recall):
    """``ap_voc07`` at the floats nearest to k/10: differs from the default only when a recall
    equals 0.3, 0.6 or 0.7 exactly."""
    return ap_voc07(precision, recall, VOC07_EXACT_RECALL_THRESHOLDS)


def ap_voc2010(precision, recall):
    """VOC2010+ AP: area under the precision envelope (max precision to the right) vs recall."""
    mrec = np.concatenate(([0.], recall, [1.]))
    mpre = np.concatenate(([0.], precision, [0.]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _as_boxes(value, field):
    boxes = np.asarray(value, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise MetricInputError('%s: expected shape [N, 4], got %s' % (field, list(boxes.shape)))
    return boxes


def _as_vector(value, length, field, dtype):
    vector = np.asarray(value, dtype=dtype).reshape(-1)
    if len(vector) != length:
        raise MetricInputError('%s: %d values for %d boxes' % (field, len(vector), length))
    return vector


class VOCMetric(object):
    """Accumulates ground truth and detections image by image; ``evaluate()`` scores them.

    ``class_names`` (id order, no background) fixes the classes 1..N and their names; without it
    the classes are those seen in the added labels, named by their id.
    """

    def __init__(self, class_names=None, iou_threshold=DEFAULT_IOU_THRESHOLD):
        self.class_names = list(class_names) if class_names is not None else None
        self.iou_threshold = iou_threshold
        self._image_ids = set()
        self._num_positives = {}   # label -> non-difficult ground truths
        self._labels = []          # per image: labels, scores and TP flags of counted detections
        self._scores = []
        self._is_tp = []

    @property
    def num_images(self):
        return len(self._image_ids)

    def _check_labels(self, labels, field):
        if len(labels) == 0:
            return
        low, high = labels.min(), labels.max()
        if low < 1 or (self.class_names is not None and high > len(self.class_names)):
            bad = low if low < 1 else high
            limit = len(self.class_names) if self.class_names is not None else 'N'
            raise MetricInputError('%s: label %d outside 1..%s' % (field, bad, limit))

    def add(self, image_id, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels):
        """Adds one image.

        ``gt_boxes [G, 4]``, ``gt_labels [G]``, ``gt_difficult [G]`` (bool/int, None = none
        difficult), ``det_boxes [D, 4]``, ``det_scores [D]``, ``det_labels [D]``; gt and detection
        boxes in the same frame (both normalised, or both pixels of this image). ``image_id`` is
        any hashable (file name or index); adding the same id twice is an error.
        """
        if image_id in self._image_ids:
            raise MetricInputError('image %r added twice' % (image_id,))
        gt_boxes = _as_boxes(gt_boxes, 'gt_boxes')
        gt_labels = _as_vector(gt_labels, len(gt_boxes), 'gt_labels', np.int64)
        if gt_difficult is None:
            gt_difficult = np.zeros(len(gt_boxes), dtype=bool)
        gt_difficult = _as_vector(gt_difficult, len(gt_boxes), 'gt_difficult', bool)
        det_boxes = _as_boxes(det_boxes, 'det_boxes')
        det_scores = _as_vector(det_scores, len(det_boxes), 'det_scores', np.float64)
        det_labels = _as_vector(det_labels, len(det_boxes), 'det_labels', np.int64)
        self._check_labels(gt_labels, 'gt_labels')
        self._check_labels(det_labels, 'det_labels')
        self._image_ids.add(image_id)

        for label in gt_labels:
            self._num_positives.setdefault(int(label), 0)
        for label in gt_labels[~gt_difficult]:
            self._num_positives[int(label)] += 1
        labels, scores, is_tp = match_image(gt_boxes, gt_labels, gt_difficult, det_boxes,
                                            det_labels, det_scores, self.iou_threshold)
        self._labels.append(labels)
        self._scores.append(scores)
        self._is_tp.append(is_tp)

    def _all_labels(self, det_labels):
        if self.class_names is not None:
            return list(range(1, len(self.class_names) + 1))
        return sorted(set(self._num_positives) | set(int(label) for label in det_labels))

    def class_name(self, label):
        return self.class_names[label - 1] if self.class_names is not None else str(label)

    def evaluate(self):
        """Scores everything added so far.

        Returns a dict: ``map_voc07``, ``map_voc2010`` (mean over classes with ground truth,
        None when no class has any), ``num_images``, ``iou_threshold`` and ``classes``: class name
        → ``{'label', 'num_positives', 'num_detections', 'num_tp', 'ap_voc07', 'ap_voc2010',
        'precision', 'recall', 'scores'}`` (APs None without ground truth; precision, recall and
        the detection scores they follow: float64 arrays ordered by descending score, empty
        without ground truth).
        """
        # Image by image in insertion order, so that the stable ranking breaks score ties by it.
        all_labels = np.concatenate([np.zeros(0, np.int64)] + self._labels)
        all_scores = np.concatenate([np.zeros(0)] + self._scores)
        all_is_tp = np.concatenate([np.zeros(0, bool)] + self._is_tp)
        classes = {}
        for label in self._all_labels(all_labels):
            num_positives = self._num_positives.get(label, 0)
            scores, is_tp = all_scores[all_labels == label], all_is_tp[all_labels == label]
            entry = {'label': label, 'num_positives': num_positives,
                     'num_detections': int(len(scores)), 'num_tp': int(is_tp.sum()),
                     'ap_voc07': None, 'ap_voc2010': None,
                     'precision': np.zeros(0), 'recall': np.zeros(0), 'scores': np.zeros(0)}
            if num_positives > 0:
                precision, recall = precision_recall(scores, is_tp, num_positives)
                entry.update(ap_voc07=ap_voc07(precision, recall),
                             ap_voc2010=ap_voc2010(precision, recall),
                             precision=precision, recall=recall,
                             scores=np.sort(scores)[::-1])
            classes[self.class_name(label)] = entry
        scored = [c for c in classes.values() if c['ap_voc07'] is not None]
        return {
            'map_voc07': float(np.mean([c['ap_voc07'] for c in scored])) if scored else None,
            'map_voc2010': float(np.mean([c['ap_voc2010'] for c in scored])) if scored else None,
            'num_images': self.num_images,
            'iou_threshold': self.iou_threshold,
            'classes': classes,
        }


_CURVE_KEYS = ('precision', 'recall', 'scores')


def results_to_json(results):
    """``evaluate()`` results as JSON-ready data (arrays become lists)."""
    classes = {}
    for name, entry in results['classes'].items():
        classes[name] = dict(entry, **{key: [float(v) for v in entry[key]]
                                       for key in _CURVE_KEYS})
    return dict(results, classes=classes)


def write_detections_file(path, images, class_names=None):
    """Writes a detections file (format in the module docstring).

    ``images``: iterable of dicts with the keys ``image, height, width, boxes (pixels), scores,
    classes`` (arrays or lists).
    """
    entries = []
    for image in images:
        entries.append({'image': str(image['image']), 'height': int(image['height']),
                        'width': int(image['width']),
                        'boxes': [[float(v) for v in box] for box in np.asarray(image['boxes'])],
                        'scores': [float(s) for s in image['scores']],
                        'classes': [int(c) for c in image['classes']]})
    data = {'images': entries}
    if class_names is not None:
        data['class_names'] = list(class_names)
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)
    return path


def read_detections_file(path):
    """Reads a detections file → ``(images, class_names or None)``.

    ``images`` maps the image name to a dict with ``height``, ``width`` (ints), ``boxes [D, 4]``
    (pixels), ``scores [D]``, ``classes [D]`` NumPy arrays. Errors name the file and the field.
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise MetricInputError('%s: cannot read detections file: %s' % (path, e))
    if not isinstance(data, dict) or not isinstance(data.get('images'), list):
        raise MetricInputError('%s: expected an object with an "images" list' % path)
    images = {}
    for index, entry in enumerate(data['images']):
        where = '%s: images[%d]' % (path, index)
        if not isinstance(entry, dict):
            raise MetricInputError('%s: expected an object' % where)
        missing = [key for key in DETECTIONS_FILE_KEYS if key not in entry]
        if missing:
            raise MetricInputError('%s: missing field %r' % (where, missing[0]))
        if entry['image'] in images:
            raise MetricInputError('%s: image %r listed twice' % (where, entry['image']))
        try:
            boxes = _as_boxes(entry['boxes'], where + '.boxes')
            images[entry['image']] = {
                'height': int(entry['height']), 'width': int(entry['width']), 'boxes': boxes,
                'scores': _as_vector(entry['scores'], len(boxes), where + '.scores', np.float64),
                'classes': _as_vector(entry['classes'], len(boxes), where + '.classes', np.int64)}
        except MetricInputError:
            raise
        except (TypeError, ValueError) as e:  # non-numeric values
            raise MetricInputError('%s: %s' % (where, e))
    class_names = data.get('class_names')
    if class_names is not None and not isinstance(class_names, list):
        raise MetricInputError('%s: "class_names" must be a list' % path)
    return images, class_names
