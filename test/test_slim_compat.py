"""The tf-slim compatibility patch: each alias is needed on TF 2.21 and makes slim work."""
import os
import subprocess
import sys

import tensorflow.compat.v1 as tf

from utils import slim_compat

slim = slim_compat.import_slim()
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBES = {
    'batch_norm': 'slim.batch_norm(tf.zeros([2, 4, 4, 3]))',
    'clip_gradient_norms': (
        'slim.learning.clip_gradient_norms([(tf.IndexedSlices(tf.ones([2]), tf.constant([0, 1])),'
        ' tf.Variable([1., 2.]))], 1.0)'),
}


def _run_probe(code, patched):
    prelude = 'from utils import slim_compat\n' if patched else ''
    script = (prelude + 'import tensorflow.compat.v1 as tf\ntf.disable_eager_execution()\n'
              'import tf_slim as slim\n' + code + '\n')
    return subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120)


def test_probes_fail_without_patch_and_pass_with_it():
    for name, code in _PROBES.items():
        unpatched = _run_probe(code, patched=False)
        assert unpatched.returncode != 0, '%s works without the patch: drop its alias' % name
        patched = _run_probe(code, patched=True)
        assert patched.returncode == 0, '%s still fails with the patch:\n%s' % (name, patched.stderr[-2000:])


def test_clipped_indexed_slices_have_the_requested_norm():
    with tf.Graph().as_default():
        grad = tf.IndexedSlices(tf.constant([[3.0, 4.0]]), tf.constant([0]), tf.constant([2, 2]))
        var = tf.Variable(tf.zeros([2, 2]))
        (clipped, _), = slim.learning.clip_gradient_norms([(grad, var)], 1.0)
        with tf.Session() as sess:
            values = sess.run(clipped.values)
    assert abs(float((values ** 2).sum()) ** 0.5 - 1.0) < 1e-6


def _patch_state():
    """Everything apply() installs: the aliased names, the module aliases, the filters."""
    import logging
    import warnings
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import array_ops, control_flow_ops
    return ([ops.IndexedSlices, control_flow_ops.cond, control_flow_ops.case,
             control_flow_ops.while_loop, array_ops.stack],
            {name: module for name, module in sys.modules.items()
             if name.startswith('tf_keras.legacy_tf_layers')},
            list(warnings.filters), list(logging.getLogger('tensorflow').filters))


def test_patched_names_are_the_public_ones():
    names, modules, _, _ = _patch_state()
    assert names == [tf.IndexedSlices, tf.cond, tf.case, tf.while_loop, tf.stack]
    assert modules['tf_keras.legacy_tf_layers'] is sys.modules['tf_keras.src.legacy_tf_layers']


def test_apply_is_idempotent_and_restores_a_missing_alias():
    from tensorflow.python.framework import ops
    slim_compat.apply()  # pytest resets the warning filters of each test
    before = _patch_state()
    slim_compat.apply()
    slim_compat.apply()
    assert _patch_state() == before  # no alias replaced, no filter installed twice
    del ops.IndexedSlices
    try:
        slim_compat.apply()
        assert ops.IndexedSlices is tf.IndexedSlices
    finally:
        ops.IndexedSlices = tf.IndexedSlices


_DEPRECATION_PROBE = """
from utils import slim_compat
import tensorflow.compat.v1 as tf
tf.disable_eager_execution()
slim = slim_compat.import_slim()
net = slim.flatten(slim.batch_norm(slim.conv2d(tf.zeros([1, 8, 8, 3]), 4, 3)))
tf.train.RMSPropOptimizer(0.1).minimize(tf.reduce_sum(slim.fully_connected(net, 2)))
tf.zeros_initializer(dtype=tf.float32)  # a deprecated call of our own: still reported
"""


def test_library_deprecation_notices_are_silenced_ours_are_not():
    result = subprocess.run([sys.executable, '-c', _DEPRECATION_PROBE], capture_output=True,
                            text=True, timeout=120, cwd=REPO_ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if 'deprecated' in line]
    assert len(notices) == 1 and notices[0].startswith('WARNING:tensorflow:From <string>:8:'), \
        result.stderr
