"""The training folder (``--train_model_dir``) as the trainer keeps it: its own, and clean after
a failed save (``utils/files.make_writable_dir`` checks first that it can be written).

A run folder refers only to its own files: the ``checkpoint`` state file names checkpoints
relative to the folder. A folder copied (``cp -a run1 run2``) or moved is therefore an
independent, working run; training the copy never touches the original's checkpoints (an
absolute path in the state file would make TensorFlow's ``--max_to_keep`` delete them).

- ``resume_checkpoint(train_dir)``: the newest complete checkpoint to resume from (None: a new
  run), each newer unusable one named in one line; a folder with none usable is refused.
- ``adopt_checkpoints(train_dir)``: rewrites the state file from the folder's own complete
  checkpoints, paths relative; the trainer calls it once the run is validated, before the
  session restores from it.
- ``remove_partial_checkpoint(train_dir)``: what a failed save leaves behind.
"""
import os
import re
import shutil

from model import checkpoints
from training.train_tools import TrainConfigError

_SAVED_FILE = re.compile(r'^model\.ckpt-(\d+)')  # a file or temporary folder of a save


def resume_checkpoint(train_dir, printer=print):
    """The newest complete checkpoint of ``train_dir`` (None when it has no checkpoint); each
    newer one passed over is named with the reason, one line each on ``printer``. A folder whose
    checkpoints are all unusable is refused rather than trained afresh over them."""
    if not os.path.isdir(train_dir):
        return None
    prefix, passed_over = checkpoints.newest_complete(train_dir)
    if prefix is None and passed_over:
        raise TrainConfigError(
            '--train_model_dir=%s: none of its checkpoints can be used (%s): move them away to '
            'start afresh' % (train_dir, '; '.join('%s: %s' % (os.path.basename(p), reason)
                                                   for p, reason in passed_over)))
    for passed, reason in passed_over:
        printer(checkpoints.passed_over_line(passed, reason, prefix))
    return prefix


def adopt_checkpoints(train_dir):
    """Rewrites ``train_dir``'s ``checkpoint`` state file to list the folder's own complete
    checkpoints, oldest first, relative to the folder; returns the newest (None: none, and no
    state file is left: a copied state file never outlives the checkpoints it named).

    TensorFlow resumes from the state file and takes its list as the checkpoints it may delete
    under ``--max_to_keep``: only this folder's files may be on it.
    """
    usable = [prefix for prefix in reversed(checkpoints.list_checkpoints(train_dir))
              if checkpoints.incomplete_reason(prefix) is None]
    state = os.path.join(train_dir, checkpoints.STATE_FILENAME)
    if usable:
        checkpoints.write_state(train_dir, usable)
        return usable[-1]
    if os.path.isfile(state):
        os.remove(state)
    return None


def remove_partial_checkpoint(train_dir):
    """Removes what a failed checkpoint save leaves in ``train_dir``: TensorFlow's temporary
    files (``*.tempstate*``, sharded ``*_temp`` folders) and the files of checkpoints newer than
    the newest complete one (their save did not finish)."""
    newest, _ = checkpoints.newest_complete(train_dir)
    newest_step = checkpoints.checkpoint_step(newest) if newest else -1
    for name in os.listdir(train_dir):
        saved = _SAVED_FILE.match(name)
        if not saved:
            continue
        path = os.path.join(train_dir, name)
        if '.tempstate' in name or '_temp' in name or int(saved.group(1)) > newest_step:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

