"""Where the ground truth went at one score threshold: found, called another class, boxed
poorly or missed, and the recall by object size.

AP ranks every detection; a deployed detector keeps those above one threshold (detector.py's
``--select_threshold``, 0.5 by default) and its user asks which objects it finds and what
became of the others. Each non-difficult ground-truth object gets one outcome, the first that
holds among the image's detections scoring >= ``score_threshold``:

- ``found``: the VOC rule at IoU >= ``iou_threshold`` (0.5): a detection of its class has it as
  its best-overlapping box of that class (``voc_metric.best_same_class``);
- ``wrong_class``: a detection of another class overlaps it with IoU >= ``iou_threshold``; the
  best-overlapping such detection's class is counted (the confusion, e.g. trucks called Car);
- ``poor_box``: a detection of its class overlaps it with ``POOR_BOX_IOU`` <= IoU but it was not
  found (a box too loose or too tight, or taken by a neighbour);
- ``missed``: nothing of the above.

An object's size is its side, ``sqrt(box area / image area)`` (``relative_side``), in the
buckets of ``SIZE_BUCKETS``: small below a tenth of the image side, as bench/object_sizes.py
counts it. NumPy only; boxes ``[ymin, xmin, ymax, xmax]`` in pixels of the image.
"""
import collections

import numpy as np

from utils import boxes as boxes_lib
from utils import voc_metric

DEFAULT_SCORE_THRESHOLD = 0.5   # detector.py's default --select_threshold
POOR_BOX_IOU = 0.1
OUTCOMES = ('found', 'wrong_class', 'poor_box', 'missed')
# (name, upper bound of the side) in increasing order; the last bucket is open.
SIZE_BUCKETS = (('small', 0.1), ('medium', 0.3), ('large', np.inf))


def relative_side(boxes, height=1., width=1.):
    """``sqrt(box area / image area)`` [N] of ``boxes`` [N, 4] in pixels of a ``height`` x
    ``width`` image (normalised boxes with the defaults)."""
    return np.sqrt(boxes_lib.area(np.asarray(boxes, np.float64)) / (float(height) * width))


def size_bucket(sides):
    """Index into ``SIZE_BUCKETS`` of each side [N] (int array)."""
    return np.searchsorted([bound for _, bound in SIZE_BUCKETS[:-1]], sides, side='right')


def image_outcomes(gt_boxes, gt_labels, det_boxes, det_labels, iou_threshold):
    """The outcome of each ground-truth object of ONE image against the detections kept there.

    ``gt_boxes [G, 4]``, ``gt_labels [G]``, ``det_boxes [D, 4]``, ``det_labels [D]`` (only the
    detections above the threshold). Returns ``(outcome [G]`` index into ``OUTCOMES``,
    ``called [G]``: the other class of a ``wrong_class`` object, 0 elsewhere).
    """
    outcome = np.full(len(gt_boxes), OUTCOMES.index('missed'))
    called = np.zeros(len(gt_boxes), np.int64)
    if not len(gt_boxes) or not len(det_boxes):
        return outcome, called
    overlaps = boxes_lib.iou(det_boxes, gt_boxes)                      # [D, G]
    same_class = det_labels[:, None] == gt_labels[None, :]
    best, best_iou = voc_metric.best_same_class(overlaps, det_labels, gt_labels)
    found = np.zeros(len(gt_boxes), bool)
    found[best[best_iou >= iou_threshold]] = True
    other = np.where(same_class, -1., overlaps)
    wrong = ~found & (other.max(axis=0) >= iou_threshold)
    poor = ~found & ~wrong & (np.where(same_class, overlaps, -1.).max(axis=0) >= POOR_BOX_IOU)
    outcome[poor] = OUTCOMES.index('poor_box')
    outcome[wrong] = OUTCOMES.index('wrong_class')
    outcome[found] = OUTCOMES.index('found')
    called[wrong] = det_labels[other.argmax(axis=0)[wrong]]
    return outcome, called


class ErrorBreakdown(object):
    """Accumulates outcomes image by image; ``evaluate()`` counts them per class.

    ``class_names`` (id order, no background) names the labels 1..N.
    """

    def __init__(self, class_names, score_threshold=DEFAULT_SCORE_THRESHOLD,
                 iou_threshold=voc_metric.DEFAULT_IOU_THRESHOLD):
        self.class_names = list(class_names)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        num_classes = len(self.class_names) + 1
        self._outcomes = np.zeros((num_classes, len(OUTCOMES)), np.int64)
        self._called = np.zeros((num_classes, num_classes), np.int64)   # [true, called]
        self._sizes = np.zeros((num_classes, len(SIZE_BUCKETS), 2), np.int64)  # objects, found

    def add(self, image_size, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores,
            det_labels):
        """Adds one image: ``image_size`` (height, width), then ``VOCMetric.add``'s arrays in
        pixels of that image (already checked there)."""
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gt_labels = np.asarray(gt_labels, np.int64)
        kept = np.asarray(det_scores, np.float64) >= self.score_threshold
        outcome, called = image_outcomes(
            gt_boxes, gt_labels, np.asarray(det_boxes, np.float64).reshape(-1, 4)[kept],
            np.asarray(det_labels, np.int64)[kept], self.iou_threshold)
        # Difficult objects take part in the matching, as in the VOC metric, but are not counted.
        counted = ~np.asarray(gt_difficult, bool)
        gt_boxes, gt_labels = gt_boxes[counted], gt_labels[counted]
        outcome, called = outcome[counted], called[counted]
        np.add.at(self._outcomes, (gt_labels, outcome), 1)
        wrong = outcome == OUTCOMES.index('wrong_class')
        np.add.at(self._called, (gt_labels[wrong], called[wrong]), 1)
        bucket = size_bucket(relative_side(gt_boxes, *image_size))
        np.add.at(self._sizes, (gt_labels, bucket, 0), 1)
        np.add.at(self._sizes, (gt_labels, bucket, 1), outcome == OUTCOMES.index('found'))

    def evaluate(self):
        """``{'score_threshold', 'iou_threshold', 'classes': name → {'objects', 'found',
        'wrong_class', 'poor_box', 'missed', 'called': {other name: objects} (nonzero only),
        'by_size': {bucket: {'objects', 'found'}}}}`` (JSON-ready)."""
        classes = collections.OrderedDict()
        for label, name in enumerate(self.class_names, start=1):
            entry = {'objects': int(self._outcomes[label].sum())}
            entry.update(zip(OUTCOMES, (int(n) for n in self._outcomes[label])))
            entry['called'] = {self.class_names[other - 1]: int(n)
                               for other, n in enumerate(self._called[label]) if n}
            entry['by_size'] = {bucket: {'objects': int(objects), 'found': int(found)}
                                for (bucket, _), (objects, found)
                                in zip(SIZE_BUCKETS, self._sizes[label])}
            classes[name] = entry
        return {'score_threshold': self.score_threshold, 'iou_threshold': self.iou_threshold,
                'classes': classes}


def called_text(entry):
    """A class entry's ``wrong_class`` with the classes it was called, e.g. ``13 (Car 12, Bus 1)``."""
    called = ', '.join('%s %d' % item for item in sorted(entry['called'].items(),
                                                         key=lambda item: -item[1]))
    return '%d (%s)' % (entry['wrong_class'], called) if called else '0'


def recall_text(entry):
    """A class entry's recall per size bucket, e.g. ``0.00 (8) / 0.20 (25) / - (0)``."""
    return ' / '.join('%.2f (%d)' % (size['found'] / float(size['objects']), size['objects'])
                      if size['objects'] else '- (0)' for size in entry['by_size'].values())


def format_table(breakdown):
    """Console lines: per class with objects, the four outcomes (with the other classes of
    ``wrong_class``) and the recall per size bucket."""
    classes = breakdown['classes']
    width = max([len('class')] + [len(name) for name in classes])
    buckets = ' / '.join(bucket for bucket, _ in SIZE_BUCKETS)
    header = '%-*s  %6s  %6s  %-22s  %8s  %6s  recall %s' % (
        width, 'class', 'gt', 'found', 'wrong class', 'poor box', 'missed', buckets)
    lines = ['where the ground truth went at score >= %g (IoU >= %g):'
             % (breakdown['score_threshold'], breakdown['iou_threshold']), header,
             '-' * len(header)]
    for name, entry in classes.items():
        if not entry['objects']:
            continue
        lines.append('%-*s  %6d  %6d  %-22s  %8d  %6d  %s' % (
            width, name, entry['objects'], entry['found'], called_text(entry), entry['poor_box'],
            entry['missed'], recall_text(entry)))
    lines.append('sizes: side = sqrt(box area / image area); small < %g, medium < %g'
                 % (SIZE_BUCKETS[0][1], SIZE_BUCKETS[1][1]))
    return lines
