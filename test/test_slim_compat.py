"""The tf-slim compatibility patch: each alias is needed on TF 2.21 and makes slim work."""
import subprocess
import sys

import tensorflow.compat.v1 as tf

from utils import slim_compat

slim = slim_compat.import_slim()

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


def test_patched_names_are_the_public_ones():
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import array_ops, control_flow_ops
    assert ops.IndexedSlices is tf.IndexedSlices
    assert control_flow_ops.cond is tf.cond
    assert array_ops.stack is tf.stack
    slim_compat.apply()  # idempotent
    assert ops.IndexedSlices is tf.IndexedSlices
