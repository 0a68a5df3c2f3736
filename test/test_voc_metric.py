"""VOC metric against hand-worked numbers and a literal port of the devkit's global-ranking loop."""
import json

import numpy as np
import pytest

from utils import voc_metric
from utils.voc_metric import MetricInputError, VOCMetric

NAMES = ['Car', 'Bus', 'Truck', 'Ambulance']
CAR, BUS, TRUCK, AMBULANCE = 1, 2, 3, 4


def test_perfect_detector_scores_one():
    metric = VOCMetric(NAMES[:2])
    metric.add('a', [[.1, .1, .5, .5], [.6, .6, .9, .9]], [CAR, BUS], [0, 0],
               [[.1, .1, .5, .5], [.6, .6, .9, .9]], [.9, .8], [CAR, BUS])
    metric.add('b', [[.2, .3, .4, .5]], [CAR], None, [[.2, .3, .4, .5]], [.7], [CAR])
    results = metric.evaluate()
    assert results['map_voc07'] == pytest.approx(1.)
    assert results['map_voc2010'] == pytest.approx(1.)
    assert results['num_images'] == 2


def _hand_worked_metric():
    """Car: 3 positives (+1 difficult), detections TP, duplicate, difficult hit, TP, FP, one miss.

    Ranked kept detections of Car: .9 TP, .8 FP (duplicate), [.7 ignored: difficult], .6 TP,
    .5 FP -> precision 1, 1/2, 2/3, 1/2; recall 1/3, 1/3, 2/3, 2/3.
    VOC07: t in {0,.1,.2,.3} -> 1; t in {.4,.5,.6} -> 2/3; t >= .7 -> 0: AP = 6/11.
    Area: envelope 1 on [0, 1/3], 2/3 on [1/3, 2/3], 0 beyond: AP = 1/3 + 2/9 = 5/9.
    Truck: perfect (AP 1). Bus: detections but no ground truth (left out). Ambulance: never seen.
    """
    metric = VOCMetric(NAMES)
    metric.add('img_a',
               gt_boxes=[[0., 0., .5, 1.], [.6, .6, .9, .9], [.1, .6, .3, .9]],
               gt_labels=[CAR, CAR, TRUCK], gt_difficult=[0, 1, 0],
               det_boxes=[[0., 0., .5, .5],      # IoU exactly .5 with the first car: TP
                          [0., 0., .5, 1.],      # same car again: duplicate, FP
                          [.6, .6, .9, .9],      # difficult car: ignored
                          [.1, .6, .3, .9],      # truck: TP
                          [.0, .0, .1, .1]],     # bus without ground truth: FP
               det_scores=[.9, .8, .7, .95, .4],
               det_labels=[CAR, CAR, CAR, TRUCK, BUS])
    metric.add('img_b',
               gt_boxes=[[.1, .1, .4, .4], [.5, .5, .8, .8]], gt_labels=[CAR, CAR],
               gt_difficult=[0, 0],
               det_boxes=[[.1, .1, .4, .4], [.5, .0, .8, .3]],   # second hits nothing; 2nd car missed
               det_scores=[.6, .5], det_labels=[CAR, CAR])
    return metric


def test_hand_worked_duplicates_misses_difficult():
    results = _hand_worked_metric().evaluate()
    car = results['classes']['Car']
    assert car['num_positives'] == 3 and car['num_detections'] == 4 and car['num_tp'] == 2
    np.testing.assert_allclose(car['precision'], [1., .5, 2. / 3, .5])
    np.testing.assert_allclose(car['recall'], [1. / 3, 1. / 3, 2. / 3, 2. / 3])
    assert car['ap_voc07'] == pytest.approx(6. / 11)
    assert car['ap_voc2010'] == pytest.approx(5. / 9)
    assert results['classes']['Truck']['ap_voc07'] == pytest.approx(1.)
    # Classes without ground truth have no AP and stay out of the mean.
    assert results['classes']['Bus']['ap_voc07'] is None
    assert results['classes']['Bus']['num_detections'] == 1
    assert results['classes']['Ambulance']['ap_voc2010'] is None
    assert results['map_voc07'] == pytest.approx((6. / 11 + 1.) / 2)
    assert results['map_voc2010'] == pytest.approx((5. / 9 + 1.) / 2)


def test_iou_just_below_threshold_is_false_positive():
    metric = VOCMetric(['Car'])
    metric.add(0, [[0., 0., .5, 1.]], [CAR], None, [[0., 0., .5, .49]], [.9], [CAR])
    assert metric.evaluate()['map_voc07'] == 0.


def test_class_with_ground_truth_but_no_detection_counts_as_zero():
    metric = VOCMetric(['Car', 'Bus'])
    metric.add(0, [[0., 0., .5, .5], [.5, .5, 1., 1.]], [CAR, BUS], None,
               [[0., 0., .5, .5]], [.9], [CAR])
    results = metric.evaluate()
    assert results['classes']['Bus']['ap_voc07'] == 0.
    assert results['map_voc07'] == pytest.approx(.5)
    assert results['map_voc2010'] == pytest.approx(.5)


def _devkit_reference(images, label, iou_threshold=.5):
    """Literal port of VOCevaldet's loop: ONE global ranking over all images, then greedy matching."""
    detections = [(score, image_id, box) for image_id, image in images.items()
                  for box, score, l in zip(image['det_boxes'], image['det_scores'],
                                           image['det_labels']) if l == label]
    detections.sort(key=lambda d: -d[0])
    taken = {image_id: [False] * len(image['gt_boxes']) for image_id, image in images.items()}
    npos = sum(1 for image in images.values()
               for l, diff in zip(image['gt_labels'], image['gt_difficult']) if l == label and not diff)
    tp, fp = [], []
    for _, image_id, box in detections:
        image = images[image_id]
        best, best_iou = -1, -1.
        for g, (gbox, glabel) in enumerate(zip(image['gt_boxes'], image['gt_labels'])):
            if glabel != label:
                continue
            ih = min(box[2], gbox[2]) - max(box[0], gbox[0])
            iw = min(box[3], gbox[3]) - max(box[1], gbox[1])
            if ih > 0 and iw > 0:
                inter = ih * iw
                union = ((box[2] - box[0]) * (box[3] - box[1])
                         + (gbox[2] - gbox[0]) * (gbox[3] - gbox[1]) - inter)
                if inter / union > best_iou:
                    best, best_iou = g, inter / union
        if best_iou >= iou_threshold:
            if image['gt_difficult'][best]:
                continue
            tp.append(0 if taken[image_id][best] else 1)
            fp.append(1 if taken[image_id][best] else 0)
            taken[image_id][best] = True
        else:
            tp.append(0)
            fp.append(1)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall, precision = tp / npos, tp / (tp + fp)
    ap07 = sum(max([p for p, r in zip(precision, recall) if r >= t] or [0.])
               for t in np.arange(0., 1.1, 0.1)) / 11.
    return precision, recall, ap07


def test_random_scenes_match_devkit_ranking_loop():
    rng = np.random.RandomState(3)
    images = {}
    for image_id in range(30):
        num_gt, num_det = rng.randint(0, 5), rng.randint(0, 8)
        gt = rng.uniform(0, .6, size=(num_gt, 2))
        gt_boxes = np.concatenate([gt, gt + rng.uniform(.1, .4, size=(num_gt, 2))], axis=1)
        # Detections: jittered copies of ground truths (some twice) and random boxes.
        source = gt_boxes[rng.randint(0, num_gt, size=num_det)] if num_gt else np.zeros((num_det, 4))
        det_boxes = np.clip(source + rng.normal(0, .05, size=(num_det, 4)), 0, 1)
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + .01)
        images[image_id] = dict(gt_boxes=gt_boxes, gt_labels=rng.randint(1, 3, size=num_gt),
                                gt_difficult=rng.uniform(size=num_gt) < .2, det_boxes=det_boxes,
                                det_scores=rng.uniform(size=num_det),
                                det_labels=rng.randint(1, 3, size=num_det))
    metric = VOCMetric(['a', 'b'])
    for image_id, image in images.items():
        metric.add(image_id, **image)
    results = metric.evaluate()
    for label, name in ((1, 'a'), (2, 'b')):
        precision, recall, ap07 = _devkit_reference(images, label)
        assert results['classes'][name]['num_tp'] > 0
        np.testing.assert_allclose(results['classes'][name]['precision'], precision)
        np.testing.assert_allclose(results['classes'][name]['recall'], recall)
        assert results['classes'][name]['ap_voc07'] == pytest.approx(ap07)


def test_area_ap_at_least_eleven_point_ap_for_a_step_curve():
    # Precision 1 up to recall .25 then nothing: area = .25; 11-point = 3/11 (t = 0, .1, .2).
    precision, recall = np.array([1., 1.]), np.array([.125, .25])
    assert voc_metric.ap_voc2010(precision, recall) == pytest.approx(.25)
    assert voc_metric.ap_voc07(precision, recall) == pytest.approx(3. / 11)


def test_bad_input_errors_name_the_field():
    metric = VOCMetric(['Car'])
    with pytest.raises(MetricInputError, match=r'det_boxes: expected shape \[N, 4\], got \[2, 3\]'):
        metric.add(0, [], [], [], np.zeros((2, 3)), [1, 1], [1, 1])
    with pytest.raises(MetricInputError, match='det_scores: 1 values for 2 boxes'):
        metric.add(0, [], [], [], np.zeros((2, 4)), [1], [1, 1])
    with pytest.raises(MetricInputError, match=r'gt_labels: label 2 outside 1\.\.1'):
        metric.add(0, [[0, 0, 1, 1]], [2], None, [], [], [])
    with pytest.raises(MetricInputError, match=r'det_labels: label 0 outside 1\.\.1'):
        metric.add(0, [], [], None, [[0, 0, 1, 1]], [.5], [0])
    metric.add('x', [], [], None, [], [], [])
    with pytest.raises(MetricInputError, match="image 'x' added twice"):
        metric.add('x', [], [], None, [], [], [])


def test_detections_file_round_trip_and_errors(tmp_path):
    path = str(tmp_path / 'detections.json')
    voc_metric.write_detections_file(path, [
        {'image': 'a.jpg', 'height': 10, 'width': 20, 'boxes': np.array([[1., 2., 3., 4.]]),
         'scores': np.array([.5], np.float32), 'classes': np.array([2])}], class_names=['x', 'y'])
    images, names = voc_metric.read_detections_file(path)
    assert names == ['x', 'y'] and images['a.jpg']['height'] == 10
    np.testing.assert_allclose(images['a.jpg']['boxes'], [[1., 2., 3., 4.]])
    assert images['a.jpg']['classes'].tolist() == [2]

    with open(path, 'w') as f:
        json.dump({'images': [{'image': 'a.jpg', 'height': 1, 'width': 1, 'boxes': [[0, 0, 1, 1]],
                               'scores': [.5, .6], 'classes': [1]}]}, f)
    with pytest.raises(MetricInputError, match=r'images\[0\]\.scores: 2 values for 1 boxes'):
        voc_metric.read_detections_file(path)
    with open(path, 'w') as f:
        json.dump({'images': [{'image': 'a.jpg'}]}, f)
    with pytest.raises(MetricInputError, match=r"images\[0\]: missing field 'height'"):
        voc_metric.read_detections_file(path)
    with open(path, 'w') as f:
        f.write('{not json')
    with pytest.raises(MetricInputError, match='cannot read detections file'):
        voc_metric.read_detections_file(path)


def test_results_to_json_is_serialisable():
    results = voc_metric.results_to_json(_hand_worked_metric().evaluate())
    decoded = json.loads(json.dumps(results, allow_nan=False))
    assert decoded['classes']['Car']['recall'][-1] == pytest.approx(2. / 3)
    assert decoded['classes']['Bus']['ap_voc07'] is None


def test_voc07_thresholds_are_py_faster_rcnns_floats():
    # 10 positives, the 3 top-scored detections hit 3 of them, the 4th is a false positive:
    # precision 1, 1, 1, 3/4 at recall 1/10, 2/10, 3/10, 3/10. The recall 3/10 is the double
    # 0.29999999999999998890, below np.arange(0., 1.1, 0.1)'s 0.30000000000000004440: only
    # t = 0, .1, .2 are reached (max precision 1 each), so AP = 3/11 (py-faster-rcnn's
    # voc_eval.py, mmdetection). At the exact k/10 thresholds t = .3 is reached too: 4/11.
    gt_boxes = [[0., .1 * i, .1, .1 * i + .1] for i in range(10)]
    metric = VOCMetric(['Car'])
    metric.add('a', gt_boxes, [CAR] * 10, None, gt_boxes[:3] + [[.5, .5, .9, .9]],
               [.9, .8, .7, .6], [CAR] * 4)
    car = metric.evaluate()['classes']['Car']
    np.testing.assert_allclose(car['recall'], [.1, .2, .3, .3])
    assert car['recall'][-1] == 3. / 10
    assert car['ap_voc07'] == pytest.approx(3. / 11)
    assert voc_metric.ap_voc07_exact(car['precision'], car['recall']) == pytest.approx(4. / 11)
    # Away from 0.3, 0.6 and 0.7 the two agree (recall 5/10: t = 0 ... .5 reached).
    precision, recall = np.ones(5), np.arange(1, 6) / 10.
    assert voc_metric.ap_voc07(precision, recall) == pytest.approx(6. / 11)
    assert voc_metric.ap_voc07_exact(precision, recall) == pytest.approx(6. / 11)
