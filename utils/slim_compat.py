"""Restores the private TensorFlow names that tf-slim 1.1.0 still imports.

TF >= 2.15 removed or moved a few internals that tf-slim reaches into:
``ops.IndexedSlices`` (used by ``slim.learning`` gradient clipping),
``control_flow_ops.cond/case/while_loop`` and ``array_ops.stack`` (metrics,
losses), and the Keras-2 legacy layers behind ``slim.batch_norm``, which moved
from ``tf_keras.legacy_tf_layers`` to ``tf_keras.src.legacy_tf_layers``.

Import this module (``from utils import slim_compat``) before using tf_slim;
``import_slim()`` does it for you. Each alias is installed only when missing,
so the patch is a no-op on TF versions that still have the names.

It also keeps the libraries' own deprecation notices out of every tool's output: tf-slim calls
the legacy Keras layers' ``layer.apply`` (a ``UserWarning`` per run) and TensorFlow, tf-keras and
tf-slim call deprecated TensorFlow functions internally ("From .../rmsprop.py: calling
Ones.__init__ ... is deprecated"). Only notices raised inside those libraries are dropped; a
deprecated call from the toolkit's own code is still reported.
"""
import importlib
import importlib.util
import logging
import os
import sys
import warnings

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


# Python warnings the libraries raise about their own deprecated code paths.
_LIBRARY_WARNING_MODULES = r'(tensorflow\.python\.keras|tf_keras|tf_slim)\.'
_LIBRARY_PACKAGES = ('tensorflow', 'tf_keras', 'tf_slim')


def _package_dir(name):
    spec = importlib.util.find_spec(name)
    return os.path.dirname(spec.origin) + os.sep if spec is not None and spec.origin else None


class LibraryDeprecationFilter(logging.Filter):
    """Drops TensorFlow's "From <file>:<line>: ... is deprecated" log lines whose ``<file>`` lies
    inside one of ``package_dirs`` (a library calling itself, not the toolkit's code)."""

    def __init__(self, package_dirs):
        super(LibraryDeprecationFilter, self).__init__()
        self.package_dirs = tuple(package_dirs)

    def filter(self, record):
        if not (isinstance(record.msg, str) and record.msg.startswith('From %s:')
                and 'deprecated' in record.msg and record.args):
            return True
        return not str(record.args[0]).startswith(self.package_dirs)


def _quiet_library_deprecations():
    """Installs the warning filter and the log filter once (repeated calls change nothing)."""
    # filterwarnings replaces an identical filter instead of adding a second one.
    warnings.filterwarnings('ignore', message=r'.*is deprecated', category=UserWarning,
                            module=_LIBRARY_WARNING_MODULES)
    logger = logging.getLogger('tensorflow')
    if not any(isinstance(f, LibraryDeprecationFilter) for f in logger.filters):
        logger.addFilter(LibraryDeprecationFilter(
            filter(None, (_package_dir(name) for name in _LIBRARY_PACKAGES))))


def apply():
    """Installs every missing alias and the deprecation filters; safe to call more than once."""
    for module, name, value in _ATTRIBUTE_ALIASES:
        if not hasattr(module, name):
            setattr(module, name, value)
    _alias_legacy_layers()
    _quiet_library_deprecations()


def import_slim():
    """Returns the ``tf_slim`` module with the compatibility aliases in place."""
    apply()
    import tf_slim
    return tf_slim


apply()
