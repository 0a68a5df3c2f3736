"""What a trained model needs to be rebuilt: ``model_info.json`` beside its checkpoints.

The trainer writes it into ``--train_model_dir``; the detector, the evaluator and the exporter read
it so that users never repeat ``--num_classes`` or class names. Fields:
``model_name``, ``num_classes`` (background included), ``class_names`` (id order, no background),
``width_multiplier``, ``dataset_name``, ``img_shape``; and ``max_number_of_steps`` (the step the
run stops at, null when unbounded) so that an evaluator following the run knows when it is over.
"""
import json
import os

from utils import files
from utils.errors import ToolkitError

MODEL_INFO_FILENAME = 'model_info.json'


class ModelInfoError(ToolkitError, ValueError):
    """A trained model's files cannot be used: its model_info.json is missing or inconsistent
    (``model.checkpoints.CheckpointError``, a subclass, covers the checkpoint itself)."""


def write_model_info(train_dir, **fields):
    """Writes ``fields`` as ``<train_dir>/model_info.json`` atomically; returns the path."""
    os.makedirs(train_dir, exist_ok=True)
    path = os.path.join(train_dir, MODEL_INFO_FILENAME)
    files.write_json_atomically(path, fields)
    return path


def _checkpoint_dir(path):
    return path if os.path.isdir(path) else os.path.dirname(path) or '.'


def read_model_info(path):
    """Reads model_info.json for a checkpoint directory or prefix (``dir/model.ckpt-100``)."""
    info_path = os.path.join(_checkpoint_dir(path), MODEL_INFO_FILENAME)
    if not os.path.isfile(info_path):
        raise ModelInfoError('%s not found: train with train_ssd_network.py, which writes it beside '
                             'the checkpoints' % info_path)
    try:
        with open(info_path) as f:
            info = json.load(f)
    except ValueError as e:
        raise ModelInfoError('%s is not valid JSON: %s' % (info_path, e))
    for key in ('model_name', 'num_classes', 'class_names'):
        if key not in info:
            raise ModelInfoError('%s lacks the field %r' % (info_path, key))
    if len(info['class_names']) != info['num_classes'] - 1:
        raise ModelInfoError('%s: %d class names for num_classes=%d (background included)'
                             % (info_path, len(info['class_names']), info['num_classes']))
    info.setdefault('width_multiplier', 1.0)
    info.setdefault('img_shape', [300, 300])
    return info
