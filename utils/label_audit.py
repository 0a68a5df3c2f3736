"""Label audit: which annotated boxes (and which missing ones) a detector's out-of-sample
predictions contradict, ranked most suspect first. Pure functions over NumPy arrays; the scoring
is cleanlab's object-detection label-issue scoring (ObjectLab, ``cleanlab.object_detection``,
imported inside the functions that need it so that importing this module loads NumPy only).

Inputs per image (boxes ``[ymin, xmin, ymax, xmax]`` in pixels of the image, the frame of the
records and of ``detections.json``; class ids 1..N, 0 = background never appears):
``gt_boxes [G, 4]``, ``gt_labels [G]`` (G may be 0: a background-only image),
``det_boxes [D, 4]``, ``det_scores [D]`` in [0, 1], ``det_classes [D]``. cleanlab takes
``[x1, y1, x2, y2]`` boxes and 0-based classes; ``to_cleanlab`` converts.

The four kinds and how cleanlab's per-box subscores map to them (every score in [0, 1], lower
is more suspect):

- ``missing``: cleanlab's *overlooked* score of a prediction (``compute_overlooked_box_scores``):
  defined for predictions at least ``confident_score`` sure that overlap no annotated box at all;
  the prediction's similarity to the nearest annotated box of its class (near 0 when none is
  close). The row's box and class are the model's.
- ``swapped``: cleanlab's *swap* score of an annotated box (``compute_swap_box_scores``):
  1 - similarity to the most similar prediction of ANOTHER class at least ``confident_score``
  sure (1 when there is none). ``suggested_class`` is that prediction's class (the one
  overlapping the box most).
- ``loose``: cleanlab's *badly located* score (``compute_badloc_box_scores``): the best
  similarity (0.9 IoU + 0.1 centre closeness) of a same-class prediction at least
  ``present_score`` sure that overlaps the box (1 when there is none): a loose, cut or shifted box.
- ``spurious``: cleanlab has no subscore for a box the model finds nothing at (its swap and
  badloc scores are then 1, "clean"): this module's *found* score, the largest
  ``min(1, score / present_score) x covered share of the box`` over every prediction of any
  class. A box no prediction covers scores 0; one a present prediction covers whole, 1.

"Confident" is ``confident_score``: a number, or ``confident_threshold``'s choice from the
predictions themselves (the score from which 80 % of them find a labelled object, whatever its
class and however loose its box: the errors to find do not pull it down), since detectors differ
in calibration (a small SSD seldom passes cleanlab's 0.95).

Each annotated box gets the kind of its lowest subscore and that score; each overlooked
prediction gets a ``missing`` row. Rows are ranked by score, lowest first (ties: the order of
``KINDS``, then image, then box). Image scores are cleanlab's ``get_label_quality_scores`` and
``find_label_issues`` with cleanlab's own thresholds.
"""
import collections

import numpy as np

from utils import boxes as boxes_lib

KINDS = ('missing', 'swapped', 'loose', 'spurious')
# cleanlab's defaults for "confident" (overlooked, swap) and "present" (badly located) predictions.
CONFIDENT_SCORE = 0.95
PRESENT_SCORE = 0.5
AGREEMENT = 0.8     # share of the predictions above an automatic confident_score finding an object
FINDS_IOU = 0.3     # a prediction finds a labelled object at this IoU (a loose box included)

Issue = collections.namedtuple('Issue', 'image_index box_index kind label suggested box score')
Issue.__doc__ = """One ranked row: ``image_index`` into the audited images, ``box_index`` the
annotated box (-1 for ``missing``: ``box`` is the model's), ``label`` the annotated (for
``missing``: predicted) class id, ``suggested`` the class id the model calls it (0 = none),
``box`` ``[ymin, xmin, ymax, xmax]`` pixels, ``score`` in [0, 1] (lower: more suspect)."""

AuditImage = collections.namedtuple('AuditImage', 'gt_boxes gt_labels det_boxes det_scores '
                                                  'det_classes')
AuditImage.__doc__ = """One image's annotations and predictions (module docstring: shapes and
frames)."""


def to_cleanlab(image, num_classes):
    """One ``AuditImage`` → ``(label, prediction, order)`` in cleanlab's formats: ``label`` =
    ``{'bboxes': [G, 4] x1y1x2y2, 'labels': [G] 0-based}``; ``prediction`` = ``num_classes``
    arrays (one per 0-based class) of ``[M_k, 5]`` rows ``x1, y1, x2, y2, score``; ``order [D]``
    = the detection index of each of cleanlab's predictions (class by class) in our arrays."""
    def xyxy(boxes):
        return np.asarray(boxes, np.float64).reshape(-1, 4)[:, [1, 0, 3, 2]]
    label = {'bboxes': xyxy(image.gt_boxes),
             'labels': np.asarray(image.gt_labels, np.int64).reshape(-1) - 1}
    classes = np.asarray(image.det_classes, np.int64).reshape(-1)
    det = np.concatenate([xyxy(image.det_boxes),
                          np.asarray(image.det_scores, np.float64).reshape(-1, 1)], axis=1)
    per_class = [np.flatnonzero(classes == k + 1) for k in range(num_classes)]
    prediction = [det[indices] for indices in per_class]
    return label, prediction, np.concatenate(per_class).astype(np.int64)


def found_scores(gt_boxes, det_boxes, det_scores, present_score=PRESENT_SCORE):
    """The *found* score of each annotated box ``[G]``: max over predictions (any class) of
    ``min(1, score / present_score) x intersection / box area`` (0 without predictions)."""
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    if not len(gt_boxes) or not len(det_boxes):
        return np.zeros(len(gt_boxes))
    covered = boxes_lib.intersection(gt_boxes, det_boxes) / np.maximum(
        boxes_lib.area(gt_boxes)[:, None], boxes_lib.EPS)
    presence = np.minimum(np.asarray(det_scores, np.float64) / max(present_score, 1e-6), 1.)
    return (covered * presence[None, :]).max(axis=1)


def confident_threshold(images, agreement=AGREEMENT, floor=PRESENT_SCORE,
                        ceiling=CONFIDENT_SCORE):
    """The lowest prediction score from which a share >= ``agreement`` of the predictions of
    ``images`` find a labelled object (a box of any class at IoU >= ``FINDS_IOU`` not found by a
    higher-scored prediction), within ``[floor, ceiling]``."""
    scores, agrees = [], []
    for image in images:
        gt_boxes = np.asarray(image.gt_boxes, np.float64).reshape(-1, 4)
        det_boxes = np.asarray(image.det_boxes, np.float64).reshape(-1, 4)
        det_scores = np.asarray(image.det_scores, np.float64).reshape(-1)
        overlaps = boxes_lib.iou(det_boxes, gt_boxes) if len(gt_boxes) else \
            np.zeros((len(det_boxes), 0))
        taken = np.zeros(len(gt_boxes), bool)
        for det in np.argsort(-det_scores, kind='stable'):
            candidates = np.where(~taken & (overlaps[det] >= FINDS_IOU), overlaps[det], -1.)
            match = candidates.argmax() if len(gt_boxes) else 0
            hit = bool(len(gt_boxes)) and candidates[match] >= FINDS_IOU
            if hit:
                taken[match] = True
            scores.append(det_scores[det])
            agrees.append(hit)
    if not scores:
        return ceiling
    order = np.argsort(-np.asarray(scores), kind='stable')
    precision = np.cumsum(np.asarray(agrees)[order]) / np.arange(1., len(order) + 1)
    good = np.flatnonzero(precision >= agreement)
    threshold = np.asarray(scores)[order][good[-1]] if len(good) else ceiling
    return float(min(max(threshold, floor), ceiling))


def suggested_classes(gt_boxes, gt_labels, det_boxes, det_scores, det_classes, confident_score):
    """For each annotated box ``[G]``: the class of the prediction of another class, at least
    ``confident_score`` sure, that overlaps it most (0 when none overlaps)."""
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    det_classes = np.asarray(det_classes, np.int64).reshape(-1)
    if not len(gt_boxes) or not len(det_boxes):
        return np.zeros(len(gt_boxes), np.int64)
    overlaps = boxes_lib.iou(gt_boxes, det_boxes)
    eligible = (det_classes[None, :] != np.asarray(gt_labels)[:, None]) & \
        (np.asarray(det_scores)[None, :] >= confident_score) & (overlaps > 0)
    overlaps = np.where(eligible, overlaps, -1.)
    best = overlaps.argmax(axis=1)
    return np.where(overlaps.max(axis=1) > 0, det_classes[best], 0)


def box_subscores(images, num_classes, confident_score=CONFIDENT_SCORE,
                  present_score=PRESENT_SCORE):
    """cleanlab's per-box subscores and the *found* score over ``images`` (a list of
    ``AuditImage``) → list per image of dicts: ``swapped``, ``loose``, ``spurious`` ``[G]``
    (annotated boxes) and ``missing`` ``[D]`` (predictions; NaN where not a candidate), all in
    [0, 1], lower = more suspect."""
    from cleanlab.object_detection import rank  # pylint: disable=import-outside-toplevel
    converted = [to_cleanlab(image, num_classes) for image in images]
    labels = [label for label, _, _ in converted]
    predictions = [prediction for _, prediction, _ in converted]
    overlooked = rank.compute_overlooked_box_scores(
        labels=labels, predictions=predictions, high_probability_threshold=confident_score)
    swap = rank.compute_swap_box_scores(
        labels=labels, predictions=predictions, high_probability_threshold=confident_score)
    badloc = rank.compute_badloc_box_scores(
        labels=labels, predictions=predictions, low_probability_threshold=present_score)
    scores = []
    for image, (_, _, order), over, sw, bad in zip(images, converted, overlooked, swap, badloc):
        missing = np.full(len(order), np.nan)
        missing[order] = over
        scores.append({'missing': missing, 'swapped': np.asarray(sw, np.float64),
                       'loose': np.asarray(bad, np.float64),
                       'spurious': found_scores(image.gt_boxes, image.det_boxes,
                                                image.det_scores, present_score)})
    return scores


def rank_issues(images, num_classes, confident_score=CONFIDENT_SCORE,
                present_score=PRESENT_SCORE):
    """Every annotated box and every overlooked prediction of ``images`` as an ``Issue``, most
    suspect first (module docstring: kinds, scores, ties)."""
    rows = []
    box_kinds = KINDS[1:]
    for index, (image, scores) in enumerate(zip(images, box_subscores(
            images, num_classes, confident_score, present_score))):
        gt_boxes = np.asarray(image.gt_boxes, np.float64).reshape(-1, 4)
        suggested = suggested_classes(gt_boxes, image.gt_labels, image.det_boxes,
                                      image.det_scores, image.det_classes, confident_score)
        for box in range(len(gt_boxes)):
            subscores = [scores[kind][box] for kind in box_kinds]
            worst = int(np.argmin(subscores))
            kind = box_kinds[worst]
            rows.append(Issue(index, box, kind, int(image.gt_labels[box]),
                              int(suggested[box]) if kind == 'swapped' else 0,
                              gt_boxes[box], float(subscores[worst])))
        det_boxes = np.asarray(image.det_boxes, np.float64).reshape(-1, 4)
        for det in np.flatnonzero(~np.isnan(scores['missing'])):
            rows.append(Issue(index, -1, 'missing', int(image.det_classes[det]), 0,
                              det_boxes[det], float(scores['missing'][det])))
    return sorted(rows, key=lambda row: (row.score, KINDS.index(row.kind), row.image_index,
                                         row.box_index))


def image_quality(images, num_classes):
    """cleanlab's image-level results over ``images``: ``(quality [N] in [0, 1], lower = more
    likely mislabelled (get_label_quality_scores), flagged [N] bool (find_label_issues))``."""
    from cleanlab.object_detection import filter as cl_filter  # pylint: disable=import-outside-toplevel
    from cleanlab.object_detection import rank  # pylint: disable=import-outside-toplevel
    converted = [to_cleanlab(image, num_classes) for image in images]
    labels = [label for label, _, _ in converted]
    predictions = [prediction for _, prediction, _ in converted]
    quality = rank.get_label_quality_scores(labels, predictions, verbose=False)
    flagged = cl_filter.find_label_issues(labels, predictions)
    return np.asarray(quality, np.float64), np.asarray(flagged, bool)
