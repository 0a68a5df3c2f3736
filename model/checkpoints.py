"""Checkpoints: finding one, reading it, and checking that it fits the model before loading it.

The one place for what every loader checks: the detector, evaluator and exporter restoring a
trained model (``model/inference.restore``), the trainer resuming a run and fine-tuning from
pretrained weights (``model/pretrained.py``).

- ``resolve(path)``: a checkpoint prefix, or a directory (its newest complete checkpoint, found
  from the folder's own files, so a copied or moved folder works) → the prefix.
- ``list_checkpoints`` / ``incomplete_reason`` / ``newest_complete``: a folder's checkpoints newest
  first, why one cannot be used (a missing or unreadable file, truncated data), and the newest
  usable one with those it passed over; ``write_state``: the folder's ``checkpoint`` state file
  with paths relative to the folder.
- ``open_reader(prefix)``: a checkpoint reader (``get_variable_to_shape_map``, ``get_tensor``).
- ``parse_scopes`` / ``in_scopes``: scope flags (``--checkpoint_exclude_scopes``,
  ``--trainable_scopes``) match at scope boundaries: ``a/b`` covers ``a/b`` and ``a/b/...`` but
  not ``a/b2/...``.
- ``match_variables``: which model variables a checkpoint loads, with one-line errors for a
  missing variable or a shape that differs (naming both class counts for a class head).
- ``check_fits(path, variables, num_classes)``: the same checks for variables stored under their
  own names (the trainer's resume); ``restore(sess, path, var_list, num_classes)``: those
  checks, then a ``tf.train.Saver`` restore.

Every error is a ``CheckpointError`` whose message names the checkpoint.
"""
import glob
import os
import re
import sys

import numpy as np
import tensorflow.compat.v1 as tf

from model import model_info
from utils import files
from utils import tf_errors

_CHECKPOINT_SUFFIXES = ('.index', '.meta')
STATE_FILENAME = 'checkpoint'  # TensorFlow's name for a folder's checkpoint state file
_STEP = re.compile(r'-(\d+)$')
_DATA_SHARDS = re.compile(r'\.data-\d+-of-(\d+)$')
# A class head (``<layer>_box/conv_cls/...``) has anchors_per_cell * num_classes outputs, its
# box regressor (``<layer>_box/conv_loc/...``) anchors_per_cell * 4.
CLASS_HEAD = '/conv_cls/'
BOX_HEAD = '/conv_loc/'


class CheckpointError(model_info.ModelInfoError):
    """A checkpoint that cannot be found, read, or loaded into the model (a missing variable, a
    shape or class count that differs). A ``ToolkitError`` and a ``ValueError``; also a
    ``ModelInfoError`` (a trained model's files), which the inference tools catch."""


def checkpoint_step(prefix):
    """The global step of a ``<name>-<step>`` prefix (``model.ckpt-1200`` → 1200), or None."""
    match = _STEP.search(prefix or '')
    return int(match.group(1)) if match else None


def list_checkpoints(directory):
    """The checkpoint prefixes of ``directory`` (those with an ``.index`` or ``.data`` file),
    newest first: by step, then by modification time.

    Only the folder's own files count, never the paths its ``checkpoint`` state file records
    (absolute ones point into the folder it was copied or moved from).
    """
    prefixes = set()
    for path in glob.glob(os.path.join(glob.escape(directory), '*')):
        name = os.path.basename(path)
        if name.endswith('.index'):
            prefixes.add(path[:-len('.index')])
        elif '.data-' in name and _DATA_SHARDS.search(name) and '.tempstate' not in name:
            prefixes.add(path[:path.rindex('.data-')])

    def age(prefix):
        times = [os.path.getmtime(p) for p in glob.glob(glob.escape(prefix) + '.*')]
        return max(times) if times else 0.
    return sorted(prefixes, key=lambda p: (checkpoint_step(p) is not None,
                                           checkpoint_step(p) or 0, age(p)), reverse=True)


def _data_bytes(reader):
    """The bytes a checkpoint's data files hold for its tensors (None when a string tensor's
    size cannot be known)."""
    total = 0
    shapes = reader.get_variable_to_shape_map()
    for name, dtype in reader.get_variable_to_dtype_map().items():
        if dtype == tf.string:
            return None
        total += int(np.prod(shapes[name], dtype=np.int64)) * dtype.size
    return total


def incomplete_reason(prefix):
    """Why checkpoint ``prefix`` cannot be used (a short phrase), or None when it is complete:
    its ``.index`` and every ``.data`` shard present, the index readable, the data as long as
    the index says."""
    data = sorted(glob.glob(glob.escape(prefix) + '.data-*-of-*'))
    data = [path for path in data if _DATA_SHARDS.search(path)]
    if not os.path.isfile(prefix + '.index'):
        return 'its .index file is missing'
    if not data:
        return 'its .data file is missing'
    expected_shards = int(_DATA_SHARDS.search(data[0]).group(1))
    if len(data) != expected_shards:
        return 'it has %d of its %d .data files' % (len(data), expected_shards)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        return 'its .index cannot be read (%s)' % tf_errors.describe(e).cause
    expected = _data_bytes(reader)
    stored = sum(os.path.getsize(path) for path in data)
    if expected is not None and stored < expected:
        return 'its data is truncated (%d of %d bytes)' % (stored, expected)
    return None


def newest_complete(directory):
    """``(prefix, passed_over)``: the newest complete checkpoint of ``directory`` (None when
    there is none) and the ``(prefix, reason)`` of each newer one that cannot be used."""
    passed_over = []
    for prefix in list_checkpoints(directory):
        reason = incomplete_reason(prefix)
        if reason is None:
            return prefix, passed_over
        passed_over.append((prefix, reason))
    return None, passed_over


def passed_over_line(prefix, reason, used):
    """The one warning line for a checkpoint passed over in favour of ``used``."""
    return 'warning: checkpoint %s passed over: %s; using %s' % (prefix, reason,
                                                               os.path.basename(used))


def resolve(path):
    """The checkpoint prefix for a directory (its newest complete checkpoint) or a prefix.

    A directory's newer checkpoints that cannot be used are passed over, each named with the
    reason in one line on stderr. A prefix given itself must be complete.
    A ``.index``/``.data-*``/``.meta`` file given instead of the prefix is a common mistake: the
    error names the prefix to use. A single-file (V1) checkpoint such as slim's ``vgg_16.ckpt``
    is its own prefix.
    """
    if tf.gfile.IsDirectory(path):
        prefix, passed_over = newest_complete(path)
        if prefix is None:
            raise CheckpointError('no checkpoint in directory %s%s' % (path, ''.join(
                '; %s cannot be used: %s' % (os.path.basename(p), reason)
                for p, reason in passed_over)))
        for passed, reason in passed_over:
            print(passed_over_line(passed, reason, prefix), file=sys.stderr, flush=True)
        return prefix
    for suffix in _CHECKPOINT_SUFFIXES:
        if path.endswith(suffix):
            raise CheckpointError('%s is a checkpoint file, not a checkpoint prefix: use %s'
                                  % (path, path[:-len(suffix)]))
    if '.data-' in os.path.basename(path):
        raise CheckpointError('%s is a checkpoint file, not a checkpoint prefix: use %s'
                              % (path, path[:path.rindex('.data-')]))
    if not tf.gfile.Exists(path + '.index') and not tf.gfile.Exists(path):
        raise CheckpointError('no checkpoint at %s (expected %s.index)' % (path, path))
    if tf.gfile.Exists(path + '.index'):
        reason = incomplete_reason(path)
        if reason:
            raise CheckpointError('checkpoint %s cannot be used: %s' % (path, reason))
    return path


def write_state(directory, prefixes):
    """Writes ``directory``'s ``checkpoint`` state file naming ``prefixes`` (oldest first; the
    last is the newest) relative to the folder, so the folder can be copied or moved. The file
    appears whole or not at all."""
    names = [os.path.basename(prefix) for prefix in prefixes]
    lines = ['model_checkpoint_path: "%s"' % names[-1]]
    lines += ['all_model_checkpoint_paths: "%s"' % name for name in names]
    files.write_text_atomically(os.path.join(directory, STATE_FILENAME), '\n'.join(lines) + '\n')


def open_reader(prefix):
    """A ``tf.train`` checkpoint reader of ``prefix``; CheckpointError when it cannot be read."""
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError('cannot read checkpoint %s: %s' % (prefix, tf_errors.one_line(e)))


def parse_scopes(scopes):
    """A comma-separated string (a flag) or an iterable of scopes → list of non-empty scopes."""
    if isinstance(scopes, str):
        scopes = scopes.split(',')
    return [s.strip().rstrip('/') for s in scopes or () if s and s.strip().rstrip('/')]


def in_scopes(name, scopes):
    """True when variable ``name`` is one of ``scopes`` or lies below one (scope boundaries:
    ``ssd_300_vgg/block4_box`` covers ``ssd_300_vgg/block4_box/conv_cls/weights`` but not
    ``ssd_300_vgg/block4_box2/...``)."""
    return any(name == s or name.startswith(s + '/') for s in parse_scopes(scopes))


def model_num_classes(variables):
    """The class count (background included) of the model behind ``variables``, read from a class
    head and its box regressor; None when they hold no such pair."""
    shapes = {v.op.name: v.shape.as_list() for v in variables}
    for name, shape in sorted(shapes.items()):
        loc = shapes.get(name.replace(CLASS_HEAD, BOX_HEAD))
        if CLASS_HEAD in name and loc and loc[-1] >= 4:
            return shape[-1] // (loc[-1] // 4)
    return None


def trained_num_classes(checkpoint_shape, model_shape, num_classes):
    """The class count a class head of ``checkpoint_shape`` was trained with, given the same head
    in a model of ``num_classes`` (``model_shape``); None when it is not a whole number."""
    anchors = model_shape[-1] // num_classes if num_classes else 0
    if not anchors or checkpoint_shape[-1] % anchors:
        return None
    return checkpoint_shape[-1] // anchors


def _loaded_shape(checkpoint_shape, slices):
    if slices is None:
        return list(checkpoint_shape)
    return [len(range(*s.indices(n))) for s, n in zip(slices, checkpoint_shape)]


def _mismatch(prefix, variable, name, checkpoint_shape, slices, num_classes, remedy,
              class_remedy):
    """The CheckpointError of a variable whose checkpoint shape differs from the model's."""
    model_shape = variable.shape.as_list()
    found = (trained_num_classes(checkpoint_shape, model_shape, num_classes)
             if CLASS_HEAD in variable.op.name and slices is None else None)
    if found is not None and found != num_classes:
        return CheckpointError(
            'checkpoint %s was trained with num_classes=%d, the model has num_classes=%d '
            '(background included; %s is %s there, %s here)%s'
            % (prefix, found, num_classes, name, list(checkpoint_shape), model_shape,
               class_remedy % {'found': found}))
    converted = '' if slices is None else ' (%s after subsampling)' % (
        _loaded_shape(checkpoint_shape, slices),)
    model_name = '' if name == variable.op.name else "'s %s" % variable.op.name
    return CheckpointError('checkpoint %s: %s has shape %s%s, the model%s needs %s%s'
                           % (prefix, name, list(checkpoint_shape), converted, model_name,
                              model_shape, remedy))


def match_variables(prefix, checkpoint_shapes, pairs, num_classes=None, ignore_missing=False,
                    remedy='', class_remedy=None):
    """The ``(variable, checkpoint name, slices)`` of ``pairs`` that the checkpoint loads.

    Args:
      prefix: the checkpoint (named in the errors).
      checkpoint_shapes: its ``{name: shape}``.
      pairs: ``(model variable, checkpoint name, slices)``; ``slices`` (one slice per
        dimension, or None) subsample the checkpoint value (VGG-16's fc6/fc7 → conv6/conv7). A
        pair with slices whose name is missing is left out silently (conv-only VGG-16).
      num_classes: the model's class count (default: read from the class heads of ``pairs``);
        class heads are compared first, so another class count is reported as such.
      ignore_missing: leave out (with a warning) variables missing from the checkpoint.
      remedy, class_remedy: appended to the messages (``class_remedy``, default ``remedy``, to
        that of a class count, with ``%(found)d`` the checkpoint's count).
    Raises:
      CheckpointError naming the checkpoint, the variable and both shapes (or class counts).
    """
    if num_classes is None:
        num_classes = model_num_classes([variable for variable, _, _ in pairs])
    class_remedy = remedy if class_remedy is None else class_remedy
    ordered = sorted(pairs, key=lambda pair: CLASS_HEAD not in pair[0].op.name)  # stable
    plan = set()
    for variable, name, slices in ordered:
        if name not in checkpoint_shapes:
            if slices is not None:
                continue
            if ignore_missing:
                tf.logging.warning('variable %s not in the checkpoint; keeping its initialiser',
                                   name)
                continue
            raise CheckpointError('checkpoint %s lacks the variable %s%s%s' % (
                prefix, name, '' if name == variable.op.name else ' (for %s)' % variable.op.name,
                remedy))
        if _loaded_shape(checkpoint_shapes[name], slices) != variable.shape.as_list():
            raise _mismatch(prefix, variable, name, checkpoint_shapes[name], slices, num_classes,
                            remedy, class_remedy)
        plan.add(id(variable))
    return [pair for pair in pairs if id(pair[0]) in plan]


def check_fits(path, variables, num_classes=None, remedy=''):
    """Raises CheckpointError unless the checkpoint at ``path`` (prefix or directory) holds every
    one of ``variables`` under its own name and shape; returns the prefix."""
    prefix = resolve(path)
    shapes = open_reader(prefix).get_variable_to_shape_map()
    match_variables(prefix, shapes, [(v, v.op.name, None) for v in variables], num_classes,
                    remedy=remedy)
    return prefix


def restore(sess, path, var_list=None, num_classes=None, remedy=''):
    """Restores ``var_list`` (default: every global variable) from the checkpoint at ``path``
    after ``check_fits``; returns the prefix."""
    var_list = tf.global_variables() if var_list is None else var_list
    prefix = check_fits(path, var_list, num_classes, remedy)
    try:
        tf.train.Saver(var_list={v.op.name: v for v in var_list}).restore(sess, prefix)
    except tf.errors.OpError as e:  # damaged data the size check cannot see (a bad CRC)
        raise CheckpointError('cannot read checkpoint %s: %s'
                              % (prefix, tf_errors.describe(e).cause))
    return prefix
