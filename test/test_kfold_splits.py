"""scripts/kfold_splits.py: fold lists (every id held out once, folds balanced, seeded) and the
merge of the folds' detections files."""
import os
import subprocess
import sys

import pytest

from scripts import kfold_splits
from test.conftest import REPO_ROOT
from utils import voc_metric


def test_every_image_is_held_out_once_and_trains_the_other_folds():
    ids = ['%03d' % i for i in range(23)]
    folds = kfold_splits.fold_lists(ids, 5, seed=3)
    held_out = [h for _, h in folds]
    assert sorted(i for h in held_out for i in h) == ids
    assert sorted(len(h) for h in held_out) == [4, 4, 5, 5, 5]
    for train, held in folds:
        assert sorted(train + held) == ids and not set(train) & set(held)
    assert kfold_splits.fold_lists(ids, 5, seed=3) == folds
    assert kfold_splits.fold_lists(ids, 5, seed=4) != folds


def test_command_line_writes_the_lists_and_merges_detections(tmp_path):
    main = tmp_path / 'ImageSets' / 'Main'
    main.mkdir(parents=True)
    (main / 'train.txt').write_text(''.join('%06d\n' % i for i in range(10)))
    script = os.path.join(REPO_ROOT, 'scripts', 'kfold_splits.py')
    result = subprocess.run([sys.executable, script, '--dataset_dir=%s' % tmp_path,
                             '--folds=3'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(str(main))) == sorted(
        ['train.txt'] + ['fold%d_%s.txt' % (k, part) for k in range(3)
                         for part in ('train', 'heldout')])
    held = [(main / ('fold%d_heldout.txt' % k)).read_text().split() for k in range(3)]
    assert sorted(sum(held, [])) == ['%06d' % i for i in range(10)]

    paths = []
    for k, members in enumerate(held):
        paths.append(str(tmp_path / ('det%d.json' % k)))
        voc_metric.write_detections_file(paths[-1], [
            {'image': m + '.jpg', 'height': 10, 'width': 20, 'boxes': [[1, 2, 3, 4]],
             'scores': [.5], 'classes': [k + 1]} for m in members], ['A', 'B', 'C'])
    merged = str(tmp_path / 'merged.json')
    result = subprocess.run([sys.executable, script, '--merge_detections=%s' % ','.join(paths),
                             '--merged_file=%s' % merged], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    images, names = voc_metric.read_detections_file(merged)
    assert names == ['A', 'B', 'C'] and len(images) == 10
    assert images['%s.jpg' % held[2][0]]['classes'].tolist() == [3]

    result = subprocess.run([sys.executable, script, '--merge_detections=%s,%s' % (paths[0],
                                                                                    paths[0]),
                             '--merged_file=%s' % merged], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith('error: %s: image ' % paths[0])
    assert 'held-out folds must not overlap' in result.stderr


@pytest.mark.parametrize('args, message', [
    (['--folds=1', '--dataset_dir=x'], 'error: --folds must be >= 2, got 1'),
    (['--merge_detections=a.json'], 'error: --merged_file is required with --merge_detections'),
])
def test_bad_flags(args, message, capsys):
    assert kfold_splits.main(['kfold_splits.py'] + args) == 2
    assert capsys.readouterr().err.strip() == message
