"""Error breakdown: outcomes on hand-worked images, the size buckets, and ``found`` against the
VOC metric's true positives on random images."""
import numpy as np
import pytest

from utils import error_breakdown
from utils.error_breakdown import ErrorBreakdown
from utils.voc_metric import VOCMetric

NAMES = ['Bus', 'Car', 'Truck']
BUS, CAR, TRUCK = 1, 2, 3
IMAGE = (400, 400)   # height, width in pixels


def _breakdown(images, score_threshold=.5):
    breakdown = ErrorBreakdown(NAMES, score_threshold)
    for gt_boxes, gt_labels, difficult, det_boxes, det_scores, det_labels in images:
        breakdown.add(IMAGE, gt_boxes, gt_labels, difficult, det_boxes, det_scores, det_labels)
    return breakdown.evaluate()['classes']


def test_each_outcome_on_a_hand_worked_image():
    """One object per outcome, [ymin, xmin, ymax, xmax] pixels of a 400 x 400 image:
    - a car, side 100/400 = .25 (medium), hit by a car detection (.9, IoU 1): found;
    - a truck, side 40/400 = .1 (medium: small is below .1), under a car detection (.8, IoU 1):
      wrong class, called Car;
    - a truck 100 x 100 (medium) with a truck detection covering 40 % of it (.7, IoU .4): poor box;
    - a bus, side 20/400 = .05 (small), whose bus detection scores .3 < .5: missed;
    - a difficult truck under a truck detection: not counted anywhere.
    """
    classes = _breakdown([(
        [[0, 0, 100, 100], [200, 200, 240, 240], [300, 0, 400, 100], [0, 300, 20, 320],
         [100, 300, 140, 340]],
        [CAR, TRUCK, TRUCK, BUS, TRUCK], [0, 0, 0, 0, 1],
        [[0, 0, 100, 100], [200, 200, 240, 240], [300, 0, 400, 40], [0, 300, 20, 320],
         [100, 300, 140, 340]],
        [.9, .8, .7, .3, .9], [CAR, CAR, TRUCK, BUS, TRUCK])])
    car, truck, bus = classes['Car'], classes['Truck'], classes['Bus']
    assert (car['objects'], car['found'], car['wrong_class'], car['poor_box'], car['missed']) == \
        (1, 1, 0, 0, 0)
    assert (truck['objects'], truck['found'], truck['wrong_class'], truck['poor_box'],
            truck['missed']) == (2, 0, 1, 1, 0)
    assert truck['called'] == {'Car': 1} and car['called'] == {}
    assert (bus['objects'], bus['missed']) == (1, 1)
    assert bus['by_size'] == {'small': {'objects': 1, 'found': 0},
                              'medium': {'objects': 0, 'found': 0},
                              'large': {'objects': 0, 'found': 0}}
    assert truck['by_size']['medium'] == {'objects': 2, 'found': 0}
    assert car['by_size']['medium'] == {'objects': 1, 'found': 1}
    # The detections kept (score >= .5): two cars, one correct and one on the truck; one truck
    # with a poor box; the truck detection on the difficult truck is not counted.
    assert car['detections'] == {'kept': 2, 'correct': 1, 'duplicate': 0, 'other_object': 1,
                                 'poor_box': 0, 'background': 0}
    assert car['on_objects_of'] == {'Truck': 1}
    assert truck['detections'] == {'kept': 1, 'correct': 0, 'duplicate': 0, 'other_object': 0,
                                   'poor_box': 1, 'background': 0}
    assert bus['detections']['kept'] == 0


def test_a_detection_finds_only_its_best_box():
    """Two cars overlapping with IoU 90/110; one detection exactly on the first: the first is
    found, the second (IoU .82 with the detection, but not its best box) has a poor box. With
    the first car difficult, the detection is spent on it (as in the VOC metric) and the second
    still is not found."""
    gt = [[0, 0, 100, 100], [0, 10, 100, 110]]
    image = (gt, [CAR, CAR], [0, 0], [[0, 0, 100, 100]], [.9], [CAR])
    car = _breakdown([image])['Car']
    assert (car['objects'], car['found'], car['poor_box']) == (2, 1, 1)
    car = _breakdown([(gt, [CAR, CAR], [1, 0], [[0, 0, 100, 100]], [.9], [CAR])])['Car']
    assert (car['objects'], car['found'], car['poor_box']) == (1, 0, 1)


def test_detection_kinds_duplicate_and_background():
    """One car under three car detections: the .9 one is correct, the .8 one (IoU .9) a
    duplicate, the .7 one covering a quarter of it a poor box; a .95 car detection far from any
    object is background, and counts first in no way."""
    car = _breakdown([([[0, 0, 100, 100]], [CAR], None,
                       [[0, 0, 100, 90], [0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300]],
                       [.8, .9, .7, .95], [CAR, CAR, CAR, CAR])])['Car']
    assert car['detections'] == {'kept': 4, 'correct': 1, 'duplicate': 1, 'other_object': 0,
                                 'poor_box': 1, 'background': 1}
    assert car['found'] == 1 and car['on_objects_of'] == {}


def test_wrong_class_goes_before_poor_box_and_names_the_best_overlap():
    """A truck under a loose truck box (IoU .4), a bus box (IoU .6) and a car box (IoU .9):
    wrong class, called Car (the best-overlapping other class)."""
    truck = _breakdown([([[0, 0, 100, 100]], [TRUCK], [0],
                         [[0, 0, 100, 40], [0, 0, 100, 60], [0, 0, 100, 90]], [.9, .9, .9],
                         [TRUCK, BUS, CAR])])['Truck']
    assert (truck['wrong_class'], truck['poor_box'], truck['called']) == (1, 0, {'Car': 1})


def test_an_image_without_detections_misses_everything():
    classes = _breakdown([([[0, 0, 10, 10], [0, 0, 300, 300]], [BUS, CAR], None, [], [], [])])
    assert classes['Bus']['missed'] == classes['Car']['missed'] == 1
    assert classes['Car']['by_size']['large'] == {'objects': 1, 'found': 0}


def test_relative_side_and_size_buckets():
    boxes = [[0, 0, 10, 40], [0, 0, 40, 40], [0, 0, 120, 120], [0, 0, 200, 100]]
    sides = error_breakdown.relative_side(boxes, 400, 100)   # image area 40,000
    np.testing.assert_allclose(sides, [.1, .2, .6, 1. / np.sqrt(2)])
    np.testing.assert_array_equal(error_breakdown.size_bucket([.05, .0999, .1, .29, .3, .9]),
                                  [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize('seed', range(5))
def test_found_equals_the_voc_true_positives_above_the_threshold(seed):
    """On random crowded images, the objects found at score >= t are the VOC metric's true
    positives among the detections scoring >= t (an independent computation: the ranking)."""
    rng = np.random.RandomState(seed)
    breakdown, voc = ErrorBreakdown(NAMES, .4), VOCMetric(NAMES)
    for image in range(6):
        def random_boxes(count):
            corner = rng.uniform(0, 300, (count, 2))
            return np.hstack([corner, corner + rng.uniform(20, 100, (count, 2))])
        gt, det = random_boxes(8), random_boxes(15)
        gt_labels, det_labels = rng.randint(1, 4, 8), rng.randint(1, 4, 15)
        difficult, scores = rng.rand(8) < .2, rng.rand(15)
        breakdown.add(IMAGE, gt, gt_labels, difficult, det, scores, det_labels)
        kept = scores >= .4
        voc.add(image, gt, gt_labels, difficult, det[kept], scores[kept], det_labels[kept])
    classes, voc_classes = breakdown.evaluate()['classes'], voc.evaluate()['classes']
    for name in NAMES:
        entry = classes[name]
        assert entry['found'] == voc_classes[name]['num_tp'] == entry['detections']['correct']
        assert entry['objects'] == voc_classes[name]['num_positives']
        # The VOC metric counts the detections not spent on difficult objects, as kept here.
        assert entry['detections']['kept'] == voc_classes[name]['num_detections']
        assert sum(entry['detections'][kind] for kind in error_breakdown.DETECTION_KINDS) == \
            entry['detections']['kept']
        assert sum(entry[outcome] for outcome in error_breakdown.OUTCOMES) == entry['objects']
        assert sum(size['found'] for size in entry['by_size'].values()) == entry['found']


def test_format_table_names_the_confusion_and_skips_absent_classes():
    breakdown = ErrorBreakdown(NAMES)
    breakdown.add(IMAGE, [[0, 0, 40, 40], [0, 200, 100, 300]], [TRUCK, TRUCK], None,
                  [[0, 0, 40, 40]], [.9], [CAR])
    lines = error_breakdown.format_table(breakdown.evaluate())
    assert lines[0] == 'where the ground truth went at score >= 0.5 (IoU >= 0.5):'
    rows = [line for line in lines if line.startswith(('Bus', 'Car', 'Truck'))]
    # One row of objects (trucks; no car or bus object), one of detections (cars).
    assert len(rows) == 2 and rows[0].split()[:5] == ['Truck', '2', '0', '1', '(Car']
    assert rows[0].endswith('- (0) / 0.00 (2) / - (0)')
    assert lines[-2] == '-' * len(lines[-3]) and lines[-1].split()[:5] == ['Car', '1', '0', '0',
                                                                           '1']
    assert lines[-1].split()[5:] == ['(Truck', '1)', '0', '0']
