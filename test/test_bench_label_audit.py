"""bench/bench_label_audit.py's planting and scoring on a generated split (no training)."""
import os

import numpy as np

from bench import bench_label_audit
from datasets import dataset_config
from datasets.write_dataset import sample_data
from datasets.write_dataset import voc_reader
from utils import boxes as boxes_lib


def _annotations(folder):
    sample_data.generate_voc_dataset(folder, num_images=30, seed=4)
    return {'%06d' % i: voc_reader.parse_annotation(
        os.path.join(folder, 'Annotations', '%06d.xml' % i)) for i in range(30)}


def test_planted_errors_have_the_asked_shares_and_are_disjoint(tmp_path):
    annotations = _annotations(str(tmp_path))
    total = sum(len(a.objects) for a in annotations.values())
    objects, planted = bench_label_audit.plant_errors(
        annotations, dataset_config.VEHICLE_CLASSES, np.random.RandomState(0))
    counts = {kind: sum(e['kind'] == kind for e in planted)
              for kind in ('swapped', 'missing', 'loose', 'spurious')}
    assert counts == {'swapped': round(.1 * total), 'missing': round(.1 * total),
                      'loose': round(.1 * total), 'spurious': round(.05 * total)}
    assert sum(len(o) for o in objects.values()) == total - counts['missing'] + counts['spurious']
    for error in planted:
        original = {tuple(int(v) for v in o.box): o.name
                    for o in annotations[error['image_id']].objects}
        now = dict((box, name) for name, box in objects[error['image_id']])
        box = tuple(error['box'])
        if error['kind'] == 'swapped':
            assert original[box] == error['true_class'] != now[box] == error['class']
        elif error['kind'] == 'missing':
            assert box in original and box not in now
        elif error['kind'] == 'loose':
            assert box not in original and now[box] == error['class']
            # Shifted by a third of its size along one axis: IoU with its original 0.5.
            best = max(boxes_lib.iou(bench_label_audit._xml_box(box)[None],
                                     bench_label_audit._xml_box(b)[None])[0, 0] for b in original)
            assert 0.4 < best < 0.6
        else:
            assert box not in original and now[box] == error['class']


def _row(image_id, kind, box):
    return {'image_id': image_id, 'kind': kind, 'xmin': box[0], 'ymin': box[1], 'xmax': box[2],
            'ymax': box[3]}


def test_scoring_counts_rows_pointing_at_planted_errors():
    planted = [{'image_id': 'a', 'kind': 'swapped', 'box': (1, 1, 10, 10)},
               {'image_id': 'a', 'kind': 'missing', 'box': (20, 20, 40, 40)},
               {'image_id': 'b', 'kind': 'loose', 'box': (5, 5, 50, 50)},
               {'image_id': 'b', 'kind': 'spurious', 'box': (60, 60, 90, 90)}]
    clean = [_row('c', 'loose', (1, 1, 5, 5 + i)) for i in range(17)]
    rows = [_row('a', 'swapped', (1, 1, 10, 10)), _row('a', 'missing', (21, 20, 41, 40)),
            _row('b', 'spurious', (5, 5, 50, 50))] + clean + [_row('b', 'spurious', (60, 60, 90, 90))]
    results = bench_label_audit.score_audit(rows, planted)
    kinds = results['kinds']
    assert kinds['swapped']['recall_top_k'] == kinds['missing']['recall_top_k'] == 1.
    # The loose box has a row (3rd), but of another kind: found in the top 4 of all rows only.
    assert kinds['loose']['recall_top_k'] == 0. and kinds['loose']['recall_top_all_planted'] == 1.
    assert kinds['loose']['with_row'] == 1
    # The spurious box is the kind's 2nd row, K = 1: not in its top K.
    assert kinds['spurious']['recall_top_k'] == 0.
    assert kinds['spurious']['recall_top_all_planted'] == 0.   # the 21st row of all
    assert kinds['swapped']['random_recall_top_k'] == 1. / len(rows)
    assert results['precision_top_20'] == 3 / 20.
    assert results['random_precision'] == 4. / len(rows)
