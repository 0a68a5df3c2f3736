"""Label audit: utils/label_audit.py on hand-built boxes, and audit_labels.py on generated records
with one planted error of each kind (each found, of its kind, ranked on top; a clean split ranks
below)."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

import audit_labels
from datasets.write_dataset import dataset_to_tfrecords
from datasets.write_dataset import sample_data
from datasets.write_dataset import voc_reader
from datasets.write_dataset import voc_writer
from utils import boxes as boxes_lib
from utils import label_audit
from utils import voc_metric

CLASS_NAMES = ['Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck']


def _image(gt_boxes, gt_labels, det_boxes, det_scores, det_classes):
    as_boxes = lambda b: np.asarray(b, np.float64).reshape(-1, 4)
    return label_audit.AuditImage(as_boxes(gt_boxes), np.asarray(gt_labels, np.int64),
                                  as_boxes(det_boxes), np.asarray(det_scores, np.float64),
                                  np.asarray(det_classes, np.int64))


def _clean(rng, count=3):
    """An image of ``count`` boxes [ymin, xmin, ymax, xmax] and a model finding each within 3 px."""
    boxes = np.array([[20 + 110 * i, x, 100 + 110 * i, x + 120]
                      for i, x in enumerate(rng.uniform(10, 300, count))])
    labels = rng.randint(1, 6, count)
    return _image(boxes, labels, boxes + rng.uniform(-3, 3, boxes.shape), [0.99] * count,
                  labels.copy())


def test_to_cleanlab_converts_boxes_classes_and_keeps_the_detection_order():
    image = _image([[10, 20, 30, 40]], [3], [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]],
                   [.9, .8, .7], [2, 1, 2])
    label, prediction, order = label_audit.to_cleanlab(image, 5)
    np.testing.assert_array_equal(label['bboxes'], [[20, 10, 40, 30]])   # x1, y1, x2, y2
    np.testing.assert_array_equal(label['labels'], [2])                   # 0-based
    assert [len(p) for p in prediction] == [1, 2, 0, 0, 0]
    np.testing.assert_array_equal(prediction[1], [[2, 1, 4, 3, .9], [10, 9, 12, 11, .7]])
    np.testing.assert_array_equal(order, [1, 0, 2])


def test_found_score_is_the_best_presence_times_covered_share():
    gt = [[0, 0, 10, 10], [100, 100, 110, 110]]
    det = [[0, 5, 10, 15], [0, 0, 10, 10]]
    # Half the box at 0.9 (present: 1 x 0.5), all of it at 0.4 (0.4 / 0.5 x 1).
    np.testing.assert_allclose(label_audit.found_scores(gt, det, [.9, .4], present_score=.5),
                               [.8, 0])
    np.testing.assert_array_equal(label_audit.found_scores(gt, np.zeros((0, 4)), []), [0, 0])


def test_confident_threshold_is_where_the_predictions_stop_finding_labelled_objects():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], np.float64)
    # Found at .9 (its class), .8 (another class: still found), .7 (a loose box, IoU 0.5);
    # a duplicate of the first at .85, background at .6 and .55.
    det = np.vstack([gt[0], gt[1], gt[2] + [0, 0, 0, 10], gt[0], [[60, 60, 70, 70]],
                     [[80, 80, 90, 90]]])
    image = _image(gt, [1, 2, 3], det, [.9, .8, .7, .85, .6, .55], [1, 4, 3, 1, 1, 1])
    # Share found from the top: 1, 1/2 (duplicate), 2/3, 3/4, 3/5, 3/6.
    assert label_audit.confident_threshold([image], agreement=.75, floor=.1) == .7
    assert label_audit.confident_threshold([image], agreement=.7, floor=.1) == .7
    assert label_audit.confident_threshold([image], agreement=.6, floor=.1) == .6
    assert label_audit.confident_threshold([image], agreement=.6, floor=.65) == .65
    assert label_audit.confident_threshold([image], agreement=1.1, ceiling=.95) == .95


def test_each_kind_found_and_ranked_above_every_clean_box():
    rng = np.random.RandomState(0)
    images = [_clean(rng) for _ in range(8)]
    swapped, missing, loose, spurious = images[:4]
    # Swapped: box 0 labelled class 1, the model says class 4 there, confidently.
    swapped.gt_labels[0], swapped.det_classes[0] = 1, 4
    # Missing: the model's box 1 has no annotation any more.
    images[1] = missing = _image(np.delete(missing.gt_boxes, 1, 0),
                                 np.delete(missing.gt_labels, 1), missing.det_boxes,
                                 missing.det_scores, missing.det_classes)
    # Loose: box 2 shifted right by a third of its width.
    loose.gt_boxes[2, [1, 3]] += 40
    # Spurious: a box on empty ground, far from every object.
    images[3] = spurious = _image(np.vstack([spurious.gt_boxes, [[400, 500, 460, 560]]]),
                                  np.append(spurious.gt_labels, 2), spurious.det_boxes,
                                  spurious.det_scores, spurious.det_classes)
    issues = label_audit.rank_issues(images, 5)
    top = {(issue.image_index, issue.kind): issue for issue in issues[:4]}
    assert sorted(top) == [(0, 'swapped'), (1, 'missing'), (2, 'loose'), (3, 'spurious')]
    assert top[0, 'swapped'].box_index == 0 and top[0, 'swapped'].suggested == 4
    assert top[0, 'swapped'].label == 1
    np.testing.assert_array_equal(top[1, 'missing'].box, missing.det_boxes[1])
    assert top[1, 'missing'].box_index == -1 and top[1, 'missing'].label == missing.det_classes[1]
    assert top[2, 'loose'].box_index == 2 and top[3, 'spurious'].box_index == 3
    # Every other row: a clean annotated box, scored well above the planted ones.
    assert len(issues) == sum(len(image.gt_labels) for image in images) + 1
    assert min(issue.score for issue in issues[4:]) > max(issue.score for issue in issues[:4])
    assert [issue.score for issue in issues] == sorted(issue.score for issue in issues)


def test_a_clean_split_ranks_below_a_planted_one():
    rng = np.random.RandomState(1)
    clean = [_clean(rng) for _ in range(6)]
    planted = [_image(image.gt_boxes, np.where(np.arange(3) == 0, image.gt_labels % 5 + 1,
                                               image.gt_labels),
                      image.det_boxes, image.det_scores, image.det_classes) for image in clean]
    clean_scores = [issue.score for issue in label_audit.rank_issues(clean, 5)]
    planted_scores = [issue.score for issue in label_audit.rank_issues(planted, 5)]
    assert max(planted_scores[:6]) < min(clean_scores)
    clean_quality, clean_flags = label_audit.image_quality(clean, 5)
    planted_quality, planted_flags = label_audit.image_quality(planted, 5)
    assert planted_quality.max() < clean_quality.min()
    assert planted_flags.any() and not clean_flags.any()


def test_background_only_image_with_a_confident_detection_is_a_missing_row():
    images = [_image(np.zeros((0, 4)), [], [[10, 10, 50, 60]], [.98], [5]),
              _image(np.zeros((0, 4)), [], np.zeros((0, 4)), [], [])]
    (issue,) = label_audit.rank_issues(images, 5)
    assert (issue.image_index, issue.kind, issue.label) == (0, 'missing', 5)
    quality, _ = label_audit.image_quality(images, 5)
    assert quality[0] < quality[1] == 1.0


# --- audit_labels.py on generated records with planted errors --------------------------------

def _objects(annotation):
    return [(obj.name, tuple(int(v) for v in obj.box)) for obj in annotation.objects]


def _free_box(objects, height, width, rng, side=50):
    """(xmin, ymin, xmax, ymax) XML box of ``side`` px overlapping no object."""
    for _ in range(1000):
        x, y = rng.randint(1, width - side), rng.randint(1, height - side)
        box = np.array([[y, x, y + side, x + side]], np.float64)
        others = np.array([[b[1], b[0], b[3], b[2]] for _, b in objects], np.float64)
        if not len(others) or boxes_lib.intersection(box, others).max() == 0:
            return (x, y, x + side, y + side)
    raise AssertionError('no free spot')


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
    """Generated VOC folder + records of a clean copy and a copy with one planted error of each
    kind, and a detections file of a perfect model (the clean boxes at 0.99)."""
    base = tmp_path_factory.mktemp('audit')
    clean_voc = str(base / 'clean_voc')
    sample_data.generate_voc_dataset(clean_voc, num_images=8, seed=21, test_fraction=0.0)
    planted_voc = str(base / 'planted_voc')
    shutil.copytree(clean_voc, planted_voc)
    annotations = {}
    for image_id in ['%06d' % i for i in range(8)]:
        annotations[image_id] = voc_reader.parse_annotation(
            os.path.join(clean_voc, 'Annotations', image_id + '.xml'))
    entries = []
    for image_id, annotation in annotations.items():
        objects = _objects(annotation)
        height, width = annotation.size
        entries.append({'image': image_id + '.jpg', 'height': height, 'width': width,
                        'boxes': [[b[1], b[0], b[3], b[2]] for _, b in objects],
                        'scores': [0.99] * len(objects),
                        'classes': [CLASS_NAMES.index(name) + 1 for name, _ in objects]})
    detections = str(base / 'detections.json')
    voc_metric.write_detections_file(detections, entries, CLASS_NAMES)

    multi = [i for i, a in annotations.items() if len(a.objects) >= 2]
    assert len(multi) >= 4
    rng = np.random.RandomState(0)
    expected = {}
    for kind, image_id in zip(('swapped', 'missing', 'loose', 'spurious'), multi):
        annotation = annotations[image_id]
        objects = _objects(annotation)
        height, width = annotation.size
        name, (xmin, ymin, xmax, ymax) = objects[0]
        if kind == 'swapped':
            other = CLASS_NAMES[(CLASS_NAMES.index(name) + 1) % 5]
            objects[0] = (other, (xmin, ymin, xmax, ymax))
            expected[kind] = (image_id, other, name, (xmin, ymin, xmax, ymax))
        elif kind == 'missing':
            del objects[0]
            expected[kind] = (image_id, name, '', (xmin, ymin, xmax, ymax))
        elif kind == 'loose':
            shift = (xmax - xmin) // 3 * (1 if xmax + (xmax - xmin) // 3 <= width else -1)
            box = (xmin + shift, ymin, xmax + shift, ymax)
            objects[0] = (name, box)
            expected[kind] = (image_id, name, '', box)
        else:
            box = _free_box(objects, height, width, rng)
            objects.append(('Car', box))
            expected[kind] = (image_id, 'Car', '', box)
        with open(os.path.join(planted_voc, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write(voc_writer.annotation_xml(image_id + '.jpg', height, width, objects))
    records = {}
    for name, voc in (('clean', clean_voc), ('planted', planted_voc)):
        records[name] = str(base / ('records_' + name))
        dataset_to_tfrecords.convert(voc, records[name], 'vehicle', split='trainval',
                                     show_progress=False, num_workers=0)
    return records, detections, expected, base


def _audit(capsys, records_dir, detections, output_dir, *extra):
    status = audit_labels.main(['audit_labels.py', '--dataset_dir=%s' % records_dir,
                                '--dataset_name=vehicle', '--split=trainval',
                                '--detections_file=%s' % detections,
                                '--output_dir=%s' % output_dir] + list(extra))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_audit_labels_ranks_each_planted_error_on_top(planted, capsys):
    records, detections, expected, base = planted
    out = base / 'audit_planted'
    status, stdout, stderr = _audit(capsys, records['planted'], detections, out, '--top=6')
    assert status == 0, stderr
    assert stdout.startswith('warning: split trainval looks like a training split')
    with open(str(out / 'audit.csv')) as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ['rank', 'image_id', 'kind', 'class', 'suggested_class',
                                     'xmin', 'ymin', 'xmax', 'ymax', 'score']
        rows = list(reader)
    top = {row['kind']: row for row in rows[:4]}
    assert sorted(top) == sorted(expected)
    for kind, (image_id, class_name, suggested, box) in expected.items():
        row = top[kind]
        assert (row['image_id'], row['class'], row['suggested_class']) == (image_id, class_name,
                                                                          suggested), kind
        assert tuple(int(row[k]) for k in ('xmin', 'ymin', 'xmax', 'ymax')) == box, kind
    assert [int(row['rank']) for row in rows] == list(range(1, len(rows) + 1))
    scores = [float(row['score']) for row in rows]
    assert scores == sorted(scores) and max(scores[:4]) < min(scores[4:])
    # The terminal table shows the top rows; audit.json holds the same rows and image scores.
    assert stdout.count('\n') >= 8 and top['swapped']['image_id'] in stdout
    with open(str(out / 'audit.json')) as f:
        saved = json.load(f)
    assert [row['kind'] for row in saved['issues']] == [row['kind'] for row in rows]
    assert saved['warning'].startswith('warning: split trainval')
    flagged = {image['image_id'] for image in saved['images'] if image['flagged']}
    # cleanlab's image flags (its own thresholds) catch the swapped class and the missing box.
    assert {expected['swapped'][0], expected['missing'][0]} <= flagged
    assert flagged <= {image_id for image_id, _, _, _ in expected.values()}
    assert sorted(name for name in os.listdir(str(out)) if name.endswith('.png')) == [
        'loose.png', 'missing.png', 'spurious.png', 'swapped.png']


def test_audit_labels_clean_split_ranks_below(planted, capsys):
    records, detections, _, base = planted
    status, stdout, stderr = _audit(capsys, records['clean'], detections, base / 'audit_clean',
                                    '--out_of_fold')
    assert status == 0, stderr
    assert 'warning' not in stdout   # k-fold predictions: a training split is fine
    with open(str(base / 'audit_clean' / 'audit.csv')) as f:
        clean = [float(row['score']) for row in csv.DictReader(f)]
    with open(str(base / 'audit_planted' / 'audit.csv')) as f:
        planted_scores = [float(row['score']) for row in csv.DictReader(f)]
    assert min(clean) > max(planted_scores[:4])


def test_audit_labels_bad_input_is_one_line(planted, capsys, tmp_path):
    records, detections, _, _ = planted
    status, _, err = _audit(capsys, records['clean'], detections, tmp_path, '--confident_score=2')
    assert status == 2 and err.strip() == ('error: --confident_score must be auto or a number in '
                                           '[0, 1], got 2')
    with open(detections) as f:
        data = json.load(f)
    data['images'] = data['images'][1:]
    partial = str(tmp_path / 'partial.json')
    with open(partial, 'w') as f:
        json.dump(data, f)
    status, _, err = _audit(capsys, records['clean'], partial, tmp_path / 'out')
    assert status == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith('error: %s: no entry for image 000000.jpg' % partial)
    assert not os.path.exists(str(tmp_path / 'out' / 'audit.csv'))
