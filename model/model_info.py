"""What a trained model needs to be rebuilt: ``model_info.json`` beside its checkpoints.

The trainer writes it into ``--train_model_dir``; the detector, the evaluator and the exporter read
it so that users never repeat ``--num_classes`` or class names; the exporter copies it into each
version's ``assets.extra/``, where the serving clients read the class names (standard library
only: clients import this module). Fields:
``model_name``, ``num_classes`` (background included), ``class_names`` (id order, no background),
``width_multiplier``, ``dataset_name``, ``img_shape``; and ``max_number_of_steps`` (the step the
run stops at, null when unbounded) so that an evaluator following the run knows when it is over.
"""
import json
import os

from utils import files
from utils.errors import ToolkitError

MODEL_INFO_FILENAME = 'model_info.json'
# Where an export keeps it, beside saved_model.pb (docs/CONTRACT.md §8).
ASSETS_EXTRA = 'assets.extra'


class ModelInfoError(ToolkitError, ValueError):
    """A trained model's files cannot be used: its model_info.json is missing or inconsistent
    (``model.checkpoints.CheckpointError``, a subclass, covers the checkpoint itself)."""


def write_model_info(train_dir, **fields):
    """Writes ``fields`` as ``<train_dir>/model_info.json`` atomically; returns the path."""
    os.makedirs(train_dir, exist_ok=True)
    path = os.path.join(train_dir, MODEL_INFO_FILENAME)
    files.write_json_atomically(path, fields)
    return path


def find_model_info(path):
    """The model_info.json of ``path``: a JSON file itself, an export version folder (its
    ``assets.extra/``), a checkpoint folder or a checkpoint prefix (``dir/model.ckpt-100``, whose
    folder holds it). The path returned may not exist (``read_model_info`` says so)."""
    if os.path.isfile(path) and path.endswith('.json'):
        return path
    folder = path if os.path.isdir(path) else os.path.dirname(path) or '.'
    candidates = [os.path.join(folder, ASSETS_EXTRA, MODEL_INFO_FILENAME),
                  os.path.join(folder, MODEL_INFO_FILENAME)]
    return next((c for c in candidates if os.path.isfile(c)), candidates[-1])


def read_model_info(path):
    """Reads and checks the model_info.json of ``path`` (see ``find_model_info``)."""
    info_path = find_model_info(path)
    if not os.path.isfile(info_path):
        raise ModelInfoError('%s not found: train with train_ssd_network.py, which writes it beside '
                             'the checkpoints' % info_path)
    try:
        with open(info_path) as f:
            info = json.load(f)
    except OSError as e:
        raise ModelInfoError('%s cannot be read: %s' % (info_path, e.strerror))
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
