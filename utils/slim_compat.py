"""Restores the private TensorFlow names that tf-slim 1.1.0 still imports.

TF >= 2.15 removed or moved a few internals that tf-slim reaches into:
``ops.IndexedSlices`` (used by ``slim.learning`` gradient clipping),
``control_flow_ops.cond/case/while_loop`` and ``array_ops.stack`` (metrics,
losses), and the Keras-2 legacy layers behind ``slim.batch_norm``, which moved
from ``tf_keras.legacy_tf_layers`` to ``tf_keras.src.legacy_tf_layers``.

Import this module (``from utils import slim_compat``) before using tf_slim;
``import_slim()`` does it for you. Each alias is installed only when missing,
so the patch is a no-op on TF versions that still have the names.
"""
import importlib
import sys

import tensorflow.compat.v1 as tf
from tensorflow.python.framework import ops
from tensorflow.python.ops import array_ops
from tensorflow.python.ops import control_flow_ops

_ATTRIBUTE_ALIASES = (
    (ops, 'IndexedSlices', tf.IndexedSlices),
    (control_flow_ops, 'cond', tf.cond),
    (control_flow_ops, 'case', tf.case),
    (control_flow_ops, 'while_loop', tf.while_loop),
    (array_ops, 'stack', tf.stack),
)
_LEGACY_LAYERS = 'tf_keras.legacy_tf_layers'
_LEGACY_LAYERS_HOME = 'tf_keras.src.legacy_tf_layers'
_LEGACY_LAYER_MODULES = ('base', 'convolutional', 'core', 'normalization', 'pooling')


def _alias_legacy_layers():
    """Makes ``tf_keras.legacy_tf_layers[.x]`` resolve to ``tf_keras.src.legacy_tf_layers[.x]``."""
    if _LEGACY_LAYERS in sys.modules:
        return
    try:
        importlib.import_module(_LEGACY_LAYERS)
        return
    except ImportError:
        pass
    try:
        home = importlib.import_module(_LEGACY_LAYERS_HOME)
    except ImportError:  # tf-keras not installed: only slim.batch_norm is affected.
        return
    sys.modules[_LEGACY_LAYERS] = home
    for name in _LEGACY_LAYER_MODULES:
        sys.modules['%s.%s' % (_LEGACY_LAYERS, name)] = importlib.import_module(
            '%s.%s' % (_LEGACY_LAYERS_HOME, name))


def apply():
    """Installs every missing alias; safe to call more than once."""
    for module, name, value in _ATTRIBUTE_ALIASES:
        if not hasattr(module, name):
            setattr(module, name, value)
    _alias_legacy_layers()


def import_slim():
    """Returns the ``tf_slim`` module with the compatibility aliases in place."""
    apply()
    import tf_slim
    return tf_slim


apply()
