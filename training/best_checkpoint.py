"""The best checkpoint of a training folder by validation mAP: ``<train_dir>/best/``.

``best/`` holds a copy of the checkpoint (``model.ckpt-<step>.*``), its ``checkpoint`` index
(so ``--ckpt_path=<train_dir>/best`` works like a training folder), ``model_info.json`` and the
``results.json`` it was chosen by. The mAP compared is ``BEST_METRIC`` (mAP@0.5, VOC07), and only
between evaluations of the same dataset, split and number of images: an evaluation on other data
leaves ``best/`` alone.

A new best is assembled in a hidden folder beside ``best/`` and swapped in by two renames
(``best`` → ``.best-old``, the new folder → ``best``), so ``best/`` is always complete: the old
best, the new one, or for an instant absent. An interrupted swap is undone the next time.
"""
import glob
import os
import shutil
import tempfile

from model import checkpoints
from model import evaluation
from model import model_info
from utils import files

BEST_DIR = 'best'
BEST_METRIC = 'map_voc07'
_OLD_DIR = '.best-old'
_STAGING_PREFIX = '.best-new-'
_SAME_DATA_KEYS = ('dataset_name', 'split_name', 'num_images')


def best_dir(train_dir):
    return os.path.join(train_dir, BEST_DIR)


def _recover(train_dir):
    """Finishes or undoes an interrupted swap, and drops leftover staging folders."""
    old = os.path.join(train_dir, _OLD_DIR)
    if os.path.isdir(old):
        if os.path.isdir(best_dir(train_dir)):
            shutil.rmtree(old)
        else:
            os.rename(old, best_dir(train_dir))
    for staging in glob.glob(os.path.join(train_dir, _STAGING_PREFIX + '*')):
        shutil.rmtree(staging, ignore_errors=True)


def read_best(train_dir, warn=print):
    """The ``results.json`` data of ``best/``, or None when there is no best yet.

    A ``results.json`` that cannot be read or parsed is reported in one line on ``warn`` and
    counts as no best: the next evaluation rebuilds ``best/``.
    """
    _recover(train_dir)
    best = files.read_json_if_intact(os.path.join(best_dir(train_dir), evaluation.RESULTS_JSON),
                                     warn, 'the next evaluation replaces best/')
    return best if isinstance(best, dict) else None


def is_better(record, best):
    """True when ``record`` (results.json data: settings + results) beats ``best`` (the same, or
    None) on ``BEST_METRIC`` over the same data."""
    if record.get(BEST_METRIC) is None:
        return False
    if best is None:
        return True
    if any(record.get(key) != best.get(key) for key in _SAME_DATA_KEYS):
        return False
    return best.get(BEST_METRIC) is None or record[BEST_METRIC] > best[BEST_METRIC]


def _copy_checkpoint(prefix, directory):
    """Copies the variables of checkpoint ``prefix`` (``.index``, ``.data-*``; not the training
    graph's ``.meta``) into ``directory`` with their ``checkpoint`` index; returns the copy's
    name."""
    files = [prefix + '.index'] + glob.glob(glob.escape(prefix) + '.data-*')
    for path in files:
        shutil.copy2(path, directory)
    checkpoints.write_state(directory, [prefix])
    return os.path.basename(prefix)


def update(train_dir, prefix, results, settings, warn=print):
    """Makes checkpoint ``prefix`` the best of ``train_dir`` when its ``results`` (with the
    evaluation ``settings``, as written to results.json) beat the current best.

    Returns True when ``best/`` now holds it. The checkpoint's files must still exist (a
    trainer's ``--max_to_keep`` may have removed an old one: ``FileNotFoundError``). A damaged
    ``best/results.json`` is named on ``warn`` and replaced.
    """
    record = dict(settings, **_scalar_results(results))
    if not is_better(record, read_best(train_dir, warn)):
        return False
    staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=train_dir)
    try:
        # mkdtemp makes the folder private (0700); best/ is read like the rest of the run
        # (TensorBoard, a serving account), so it takes the mode the umask gives any folder.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        name = _copy_checkpoint(prefix, staging)
        model_info.write_model_info(staging, **model_info.read_model_info(prefix))
        evaluation.write_results_json(os.path.join(staging, evaluation.RESULTS_JSON), results,
                                      dict(settings, checkpoint=name,
                                           source_checkpoint=os.path.basename(prefix)))
        old = os.path.join(train_dir, _OLD_DIR)
        if os.path.isdir(best_dir(train_dir)):
            os.rename(best_dir(train_dir), old)
        os.rename(staging, best_dir(train_dir))
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return True


def _scalar_results(results):
    """The top-level numbers of ``DetectionMetrics.evaluate()`` results (what ``is_better``
    compares), without the per-class arrays."""
    return {key: value for key, value in results.items() if key != 'classes'}
