"""COCO metric (pycocotools) against a hand-worked case, and the VOC + COCO fan-out."""
import pytest

from model.evaluation import DetectionMetrics
from utils.coco_metric import COCOMetric

NAMES = ['Car', 'Bus']
CAR, BUS = 1, 2
GT = [0., 0., 100., 100.]          # [ymin, xmin, ymax, xmax] pixels: 100 x 100
DET_IOU_72 = [0., 0., 100., 72.]   # inside the box, 72 % of it: IoU 0.72
DET_IOU_88 = [0., 0., 88., 100.]   # IoU 0.88


def _hand_worked(metric, *image_size):
    """One car, two detections of it: A (score .9, IoU .72) and B (score .8, IoU .88).

    IoU thresholds .50 .55 .60 .65 .70: A matches first, B is a duplicate (FP); precision 1 at
      recall 1 covers all 101 recall points: AP 1 (5 thresholds).
    .75 .80 .85: A misses (FP), B matches: precision 1/2 at recall 1, interpolated 1/2 at every
      recall point: AP .5 (3 thresholds).
    .90 .95: both miss: AP 0 (2 thresholds).
    AP@[.5:.95] = (5 * 1 + 3 * .5) / 10 = .65; AP@.5 = 1; AP@.75 = .5.
    Image b: a difficult car (crowd for pycocotools) under a detection scored .95: ignored,
    else it would be the top-ranked false positive. Bus: no ground truth, no AP.
    ``image_size``: the (height, width) that ``DetectionMetrics.add`` takes as well.
    """
    metric.add('a', *image_size, [GT], [CAR], [0], [DET_IOU_72, DET_IOU_88], [.9, .8], [CAR, CAR])
    metric.add('b', *image_size, [[10., 10., 60., 60.]], [CAR], [1], [[10., 10., 60., 60.]], [.95],
               [CAR])
    return metric.evaluate()


def test_hand_worked_case():
    results = _hand_worked(COCOMetric(NAMES))
    assert results['map_coco'] == pytest.approx(.65)
    assert results['map_coco_50'] == pytest.approx(1.)
    assert results['map_coco_75'] == pytest.approx(.5)
    assert results['classes']['Car']['ap_coco'] == pytest.approx(.65)
    assert results['classes']['Bus']['ap_coco'] is None


def test_difficult_box_is_not_a_positive_and_its_detection_not_a_false_positive():
    metric = COCOMetric(NAMES)
    metric.add('b', [[10., 10., 60., 60.]], [CAR], [1], [[10., 10., 60., 60.]], [.95], [CAR])
    assert metric.evaluate()['map_coco'] is None   # no positive at all
    metric = COCOMetric(NAMES)
    metric.add('b', [[10., 10., 60., 60.]], [CAR], [0], [[10., 10., 60., 60.]], [.95], [CAR])
    assert metric.evaluate()['map_coco'] == pytest.approx(1.)


def test_no_detections_score_zero():
    metric = COCOMetric(NAMES)
    metric.add('a', [GT], [CAR], None, [], [], [])
    assert metric.evaluate()['map_coco'] == 0.


def test_detection_metrics_feed_both_metrics_the_same_images():
    results = _hand_worked(DetectionMetrics(NAMES), (200, 200))
    # VOC at IoU .5: A is a TP, B a duplicate: precision 1, 1/2 at recall 1 -> AP 1.
    assert results['map_voc07'] == pytest.approx(1.) and results['map_voc2010'] == pytest.approx(1.)
    assert results['map_coco'] == pytest.approx(.65)
    assert results['classes']['Car']['ap_coco'] == pytest.approx(.65)
    assert results['num_images'] == 2
    # At score >= .5 the car of image a is found (A, IoU .72); the difficult one is not counted.
    car = results['breakdown']['classes']['Car']
    assert (car['objects'], car['found'], car['by_size']['large']) == (1, 1, {'objects': 1,
                                                                             'found': 1})
