"""Where the ground truth and the detections went at one score threshold: objects found,
called another class, boxed poorly or missed, with the recall by object size; detections
correct, duplicate, on another class's object, poorly boxed or on background.

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

And each kept detection one kind, the first that holds (those hitting a difficult object are
not counted, as in the VOC metric):

- ``correct``: the first (highest-scored) detection to find its object;
- ``duplicate``: a later detection finding the same object;
- ``other_object``: it overlaps an object of another class with IoU >= ``iou_threshold`` (a
  truck detected as Car); the object's class is counted;
- ``poor_box``: it overlaps an object of its class with ``POOR_BOX_IOU`` <= IoU < the threshold
  (a box round a group of cars, or half a car);
- ``background``: nothing labelled there. Look at these: on real data many are objects the
  annotators left out.

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
DETECTION_KINDS = ('correct', 'duplicate', 'other_object', 'poor_box', 'background')
# (name, upper bound of the side) in increasing order; the last bucket is open.
SIZE_BUCKETS = (('small', 0.1), ('medium', 0.3), ('large', np.inf))


def relative_side(boxes, height=1., width=1.):
    """``sqrt(box area / image area)`` [N] of ``boxes`` [N, 4] in pixels of a ``height`` x
    ``width`` image (normalised boxes with the defaults)."""
    return np.sqrt(boxes_lib.area(np.asarray(boxes, np.float64)) / (float(height) * width))


def size_bucket(sides):
    """Index into ``SIZE_BUCKETS`` of each side [N] (int array)."""
    return np.searchsorted([bound for _, bound in SIZE_BUCKETS[:-1]], sides, side='right')


ImageOutcomes = collections.namedtuple('ImageOutcomes', 'outcome called kind on_class')
ImageOutcomes.__doc__ = """One image's outcomes: per ground-truth object ``outcome [G]`` (index
into ``OUTCOMES``) and ``called [G]`` (the other class of a ``wrong_class`` object, else 0); per
detection ``kind [D]`` (index into ``DETECTION_KINDS``, -1: on a difficult object, not counted)
and ``on_class [D]`` (the class of the object under an ``other_object`` detection, else 0)."""


def image_outcomes(gt_boxes, gt_labels, gt_difficult, det_boxes, det_labels, det_scores,
                   iou_threshold):
    """The outcomes of ONE image's ground truth and kept detections (an ``ImageOutcomes``).

    ``gt_boxes [G, 4]``, ``gt_labels [G]``, ``gt_difficult [G]`` bool (difficult objects take
    part in the matching, as in the VOC metric; their own outcomes are for the caller to drop),
    ``det_boxes [D, 4]``, ``det_labels [D]``, ``det_scores [D]`` (only the detections above
    the threshold).
    """
    outcome = np.full(len(gt_boxes), OUTCOMES.index('missed'))
    called = np.zeros(len(gt_boxes), np.int64)
    kind = np.full(len(det_boxes), DETECTION_KINDS.index('background'))
    on_class = np.zeros(len(det_boxes), np.int64)
    if not len(gt_boxes) or not len(det_boxes):
        return ImageOutcomes(outcome, called, kind, on_class)
    overlaps = boxes_lib.iou(det_boxes, gt_boxes)                      # [D, G]
    same_class = det_labels[:, None] == gt_labels[None, :]
    best, best_iou = voc_metric.best_same_class(overlaps, det_labels, gt_labels)
    hit = best_iou >= iou_threshold
    other = np.where(same_class, -1., overlaps)
    on_other = other.max(axis=1) >= iou_threshold
    # The detections' kinds, the strongest claim last: the first (highest-scored) hit of each
    # object is correct, later hits duplicates (as in the VOC metric).
    hits = np.nonzero(hit)[0]
    hits = hits[np.argsort(-det_scores[hits], kind='stable')]
    _, first = np.unique(best[hits], return_index=True)
    kind[best_iou >= POOR_BOX_IOU] = DETECTION_KINDS.index('poor_box')
    kind[on_other] = DETECTION_KINDS.index('other_object')
    kind[hit] = DETECTION_KINDS.index('duplicate')
    kind[hits[first]] = DETECTION_KINDS.index('correct')
    kind[hit & gt_difficult[best]] = -1
    on_class[on_other & ~hit] = gt_labels[other.argmax(axis=1)[on_other & ~hit]]

    found = np.zeros(len(gt_boxes), bool)
    found[best[hit]] = True
    wrong = ~found & (other.max(axis=0) >= iou_threshold)
    poor = ~found & ~wrong & (np.where(same_class, overlaps, -1.).max(axis=0) >= POOR_BOX_IOU)
    outcome[poor] = OUTCOMES.index('poor_box')
    outcome[wrong] = OUTCOMES.index('wrong_class')
    outcome[found] = OUTCOMES.index('found')
    called[wrong] = det_labels[other.argmax(axis=0)[wrong]]
    return ImageOutcomes(outcome, called, kind, on_class)


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
        self._kinds = np.zeros((num_classes, len(DETECTION_KINDS)), np.int64)
        self._on_class = np.zeros((num_classes, num_classes), np.int64)  # [detected, object]

    def add(self, image_size, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores,
            det_labels):
        """Adds one image: ``image_size`` (height, width), then ``VOCMetric.add``'s arrays in
        pixels of that image (already checked there; ``gt_difficult`` None: none difficult)."""
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gt_labels = np.asarray(gt_labels, np.int64)
        counted = np.ones(len(gt_boxes), bool) if gt_difficult is None else \
            ~np.asarray(gt_difficult, bool)
        scores = np.asarray(det_scores, np.float64)
        kept = scores >= self.score_threshold
        labels = np.asarray(det_labels, np.int64)[kept]
        outcomes = image_outcomes(gt_boxes, gt_labels, ~counted,
                                  np.asarray(det_boxes, np.float64).reshape(-1, 4)[kept], labels,
                                  scores[kept], self.iou_threshold)
        gt_boxes, gt_labels = gt_boxes[counted], gt_labels[counted]
        outcome, called = outcomes.outcome[counted], outcomes.called[counted]
        np.add.at(self._outcomes, (gt_labels, outcome), 1)
        wrong = outcome == OUTCOMES.index('wrong_class')
        np.add.at(self._called, (gt_labels[wrong], called[wrong]), 1)
        bucket = size_bucket(relative_side(gt_boxes, *image_size))
        np.add.at(self._sizes, (gt_labels, bucket, 0), 1)
        np.add.at(self._sizes, (gt_labels, bucket, 1), outcome == OUTCOMES.index('found'))
        scored = outcomes.kind >= 0
        np.add.at(self._kinds, (labels[scored], outcomes.kind[scored]), 1)
        np.add.at(self._on_class, (labels, outcomes.on_class), 1)

    def _named(self, counts):
        """{class name: n} of a row of counts indexed by label (nonzero, background left out)."""
        return {self.class_names[label - 1]: int(n) for label, n in enumerate(counts)
                if n and label}

    def evaluate(self):
        """``{'score_threshold', 'iou_threshold', 'classes': name → {'objects', 'found',
        'wrong_class', 'poor_box', 'missed', 'called': {other name: objects},
        'by_size': {bucket: {'objects', 'found'}}, 'detections': {'kept', 'correct',
        'duplicate', 'other_object', 'poor_box', 'background'}, 'on_objects_of': {other name:
        detections}}}`` (JSON-ready; the name maps hold nonzero counts only)."""
        classes = collections.OrderedDict()
        for label, name in enumerate(self.class_names, start=1):
            entry = {'objects': int(self._outcomes[label].sum())}
            entry.update(zip(OUTCOMES, (int(n) for n in self._outcomes[label])))
            entry['called'] = self._named(self._called[label])
            entry['by_size'] = {bucket: {'objects': int(objects), 'found': int(found)}
                                for (bucket, _), (objects, found)
                                in zip(SIZE_BUCKETS, self._sizes[label])}
            entry['detections'] = dict(zip(DETECTION_KINDS, (int(n) for n in self._kinds[label])),
                                       kept=int(self._kinds[label].sum()))
            entry['on_objects_of'] = self._named(self._on_class[label])
            classes[name] = entry
        return {'score_threshold': self.score_threshold, 'iou_threshold': self.iou_threshold,
                'classes': classes}


def counts_text(total, by_name):
    """A count with its split by class, e.g. ``13 (Car 12, Bus 1)``, or ``0``."""
    split = ', '.join('%s %d' % item for item in sorted(by_name.items(), key=lambda i: -i[1]))
    return '%d (%s)' % (total, split) if split else '%d' % total


def recall_text(entry):
    """A class entry's recall per size bucket, e.g. ``0.00 (8) / 0.20 (25) / - (0)``."""
    return ' / '.join('%.2f (%d)' % (size['found'] / float(size['objects']), size['objects'])
                      if size['objects'] else '- (0)' for size in entry['by_size'].values())


def format_table(breakdown):
    """Console lines: per class, the objects with their four outcomes (and the other classes
    of ``wrong_class``) and the recall per size bucket; then the kept detections with their
    five kinds."""
    classes = breakdown['classes']
    width = max([len('class')] + [len(name) for name in classes])
    buckets = ' / '.join(bucket for bucket, _ in SIZE_BUCKETS)
    header = '%-*s  %6s  %6s  %-22s  %8s  %6s  recall %s' % (
        width, 'class', 'gt', 'found', 'wrong class', 'poor box', 'missed', buckets)
    lines = ['where the ground truth went at score >= %g (IoU >= %g):'
             % (breakdown['score_threshold'], breakdown['iou_threshold']), header,
             '-' * len(header)]
    for name, entry in classes.items():
        if entry['objects']:
            lines.append('%-*s  %6d  %6d  %-22s  %8d  %6d  %s' % (
                width, name, entry['objects'], entry['found'],
                counts_text(entry['wrong_class'], entry['called']), entry['poor_box'],
                entry['missed'], recall_text(entry)))
    lines.append('sizes: side = sqrt(box area / image area); small < %g, medium < %g'
                 % (SIZE_BUCKETS[0][1], SIZE_BUCKETS[1][1]))
    header = '%-*s  %6s  %7s  %9s  %-22s  %8s  %10s' % (
        width, 'class', 'kept', 'correct', 'duplicate', "on another class's object",
        'poor box', 'background')
    lines += ['', 'where the detections went at score >= %g:' % breakdown['score_threshold'],
              header, '-' * len(header)]
    for name, entry in classes.items():
        kinds = entry['detections']
        if kinds['kept']:
            lines.append('%-*s  %6d  %7d  %9d  %-26s  %8d  %10d' % (
                width, name, kinds['kept'], kinds['correct'], kinds['duplicate'],
                counts_text(kinds['other_object'], entry['on_objects_of']), kinds['poor_box'],
                kinds['background']))
    return lines
