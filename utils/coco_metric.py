"""COCO detection metric (AP averaged over IoU 0.50:0.05:0.95, and at 0.50 and 0.75) computed by
``pycocotools``, the implementation OD API, torchvision and mmdetection numbers come from.

It takes what ``utils.voc_metric.VOCMetric.add`` takes, image by image, so one evaluation feeds
both metrics the same ground truth and detections.

Conventions (pycocotools')
- Boxes arrive as ``[ymin, xmin, ymax, xmax]`` in pixels of their image (continuous, 0-based)
  and are handed over as ``[x, y, width, height]``; a ground truth's ``area`` is
  ``width * height`` in pixels (COCO's small/medium/large ranges are in pixels).
- A *difficult* ground truth becomes ``iscrowd=1``, as mmdetection's VOC-to-COCO converter does:
  pycocotools ignores crowd boxes (a detection on one is neither TP nor FP, and a crowd box does
  not count as a positive). pycocotools overlaps a crowd box by intersection over the
  detection's area, so it absorbs detections inside it where the VOC metric asks for IoU >= 0.5.
- At most 100 detections per image count (COCO's ``maxDets``), the highest-scored.
- A class without (non-crowd) ground truth has no AP (``None``) and stays out of the mean,
  as in the VOC metric.
"""
import contextlib
import io

import numpy as np

COCO_MAX_DETECTIONS = 100


def _xywh(boxes):
    """``[N, 4]`` ``[ymin, xmin, ymax, xmax]`` → ``[N, 4]`` ``[x, y, width, height]``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1],
                     boxes[:, 2] - boxes[:, 0]], axis=1)


def _quietly(function, *args):
    """Runs a pycocotools call without its progress prints on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def _coco_index(images, categories, annotations):
    from pycocotools.coco import COCO
    coco = COCO()
    coco.dataset = {'images': images, 'categories': categories, 'annotations': annotations}
    _quietly(coco.createIndex)
    return coco


def _mean_ap(precision):
    """Mean of a pycocotools ``eval['precision']`` slice over its valid (> -1) cells; None when
    none is valid (no ground truth)."""
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else None


class COCOMetric(object):
    """Accumulates ground truth and detections image by image; ``evaluate()`` scores them.

    ``class_names`` (id order, no background) names the classes 1..N.
    """

    def __init__(self, class_names):
        self.class_names = list(class_names)
        self._images = []
        self._ground_truth = []
        self._detections = []

    def add(self, image_id, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores, det_labels):
        """Adds one image; arguments as ``VOCMetric.add`` (boxes in pixels of this image)."""
        index = len(self._images) + 1   # pycocotools wants int ids; the caller's may be names
        self._images.append({'id': index, 'file_name': str(image_id)})
        gt_boxes = _xywh(gt_boxes)
        difficult = (np.zeros(len(gt_boxes), bool) if gt_difficult is None
                     else np.asarray(gt_difficult, bool).reshape(-1))
        for box, label, crowd in zip(gt_boxes, np.asarray(gt_labels).reshape(-1), difficult):
            self._ground_truth.append({
                'id': len(self._ground_truth) + 1, 'image_id': index, 'category_id': int(label),
                'bbox': box.tolist(), 'area': float(box[2] * box[3]), 'iscrowd': int(crowd)})
        for box, score, label in zip(_xywh(det_boxes), np.asarray(det_scores).reshape(-1),
                                     np.asarray(det_labels).reshape(-1)):
            self._detections.append({
                'id': len(self._detections) + 1, 'image_id': index, 'category_id': int(label),
                'bbox': box.tolist(), 'area': float(box[2] * box[3]), 'score': float(score),
                'iscrowd': 0})

    def evaluate(self):
        """Returns ``{'map_coco': AP@[.5:.95], 'map_coco_50': AP@.5, 'map_coco_75': AP@.75,
        'classes': {name: {'ap_coco': AP@[.5:.95]}}}`` (None where no ground truth)."""
        from pycocotools.cocoeval import COCOeval
        categories = [{'id': i + 1, 'name': name} for i, name in enumerate(self.class_names)]
        ground_truth = _coco_index(self._images, categories, self._ground_truth)
        detections = _coco_index(self._images, categories, self._detections)
        evaluation = COCOeval(ground_truth, detections, iouType='bbox')
        evaluation.params.maxDets = [1, 10, COCO_MAX_DETECTIONS]
        _quietly(evaluation.evaluate)
        _quietly(evaluation.accumulate)
        # precision [T iou thresholds, R recall points, K classes, A area ranges, M maxDets];
        # area range 0 is 'all', maxDets -1 is COCO_MAX_DETECTIONS.
        precision = evaluation.eval['precision'][:, :, :, 0, -1]
        thresholds = list(np.round(evaluation.params.iouThrs, 2))
        return {
            'map_coco': _mean_ap(precision),
            'map_coco_50': _mean_ap(precision[thresholds.index(0.5)]),
            'map_coco_75': _mean_ap(precision[thresholds.index(0.75)]),
            'classes': {name: {'ap_coco': _mean_ap(precision[:, :, k])}
                        for k, name in enumerate(self.class_names)},
        }
