"""deployment/model_deploy: device strings, clone construction, gradient averaging over clones."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from deployment import model_deploy
from utils import slim_compat

slim = slim_compat.import_slim()
tf.disable_eager_execution()

WEIGHT_DECAY = 0.1


def test_local_devices_and_scopes():
    config = model_deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True)
    assert config.clone_device(0) == '/device:CPU:0'
    assert config.clone_device(1) == '/device:CPU:0'
    assert config.clone_scope(0) == 'clone_0' and config.clone_scope(1) == 'clone_1'
    assert config.variables_device() == '/device:CPU:0'
    assert config.inputs_device() == '/device:CPU:0'
    assert config.optimizer_device() == '/device:CPU:0'
    gpus = model_deploy.DeploymentConfig(num_clones=3)
    assert [gpus.clone_device(i) for i in range(3)] == [
        '/device:GPU:0', '/device:GPU:1', '/device:GPU:2']
    assert model_deploy.DeploymentConfig().clone_scope(0) == ''
    with pytest.raises(ValueError, match='clone_index'):
        config.clone_device(2)


def test_distributed_devices_put_variables_on_ps_round_robin():
    config = model_deploy.DeploymentConfig(num_clones=1, clone_on_cpu=True, replica_id=1,
                                           num_replicas=2, num_ps_tasks=2)
    assert config.clone_device(0) == '/job:worker/task:1/device:CPU:0'
    assert config.inputs_device() == '/job:worker/task:1/device:CPU:0'
    assert not config.is_chief
    with tf.Graph().as_default():
        clones = model_deploy.create_clones(config, _linear_model_fn([_half_batches()[0]]))
        specs = [tf.DeviceSpec.from_string(v.device) for v in tf.global_variables()]
        assert [s.job for s in specs] == ['ps', 'ps']
        assert sorted(s.task for s in specs) == [0, 1]  # round robin over the two ps tasks
        loss = tf.losses.get_losses()[0]
        assert loss.device == '/job:worker/task:1/device:CPU:0'
        assert clones[0].device == '/job:worker/task:1/device:CPU:0'


def test_invalid_configs_are_rejected():
    with pytest.raises(ValueError, match='num_ps_tasks'):
        model_deploy.DeploymentConfig(num_replicas=2)
    with pytest.raises(ValueError, match='replica_id'):
        model_deploy.DeploymentConfig(num_replicas=2, num_ps_tasks=1, replica_id=2)
    with pytest.raises(ValueError, match='num_clones'):
        model_deploy.DeploymentConfig(num_clones=0)


def _half_batches():
    rng = np.random.RandomState(0)
    x = rng.randn(4, 3).astype(np.float32)
    y = rng.randn(4, 2).astype(np.float32)
    # Unequal halves make a plain full-batch mean differ from the mean of clone means.
    y[2:] *= 5.0
    return [(x[:2], y[:2]), (x[2:], y[2:])]


def _linear_model_fn(slices):
    """model_fn consuming one (x, y) slice per call: y_hat = x W + b, MSE, L2 on W."""
    pending = list(slices)

    def model_fn():
        x, y = pending.pop(0)
        pred = slim.fully_connected(tf.constant(x), 2, activation_fn=None, scope='fc',
                                    weights_regularizer=slim.l2_regularizer(WEIGHT_DECAY),
                                    weights_initializer=tf.constant_initializer(0.3),
                                    biases_initializer=tf.constant_initializer(-0.1))
        tf.losses.mean_squared_error(tf.constant(y), pred)
        return pred
    return model_fn


def _numpy_grads(x, y, w, b):
    """Gradient of mean((x w + b - y)^2) by hand."""
    residual = x.dot(w) + b - y
    n = residual.size
    return 2.0 / n * x.T.dot(residual), 2.0 / n * residual.sum(axis=0)


def test_two_cpu_clones_apply_mean_of_half_batch_gradients_and_regularise_once():
    halves = _half_batches()
    config = model_deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True)
    with tf.Graph().as_default():
        clones = model_deploy.create_clones(config, _linear_model_fn(halves))
        assert [c.scope for c in clones] == ['clone_0/', 'clone_1/']
        assert len(tf.global_variables()) == 2  # the clones share one set of variables
        optimizer = tf.train.GradientDescentOptimizer(1.0)
        total_loss, grads_and_vars = model_deploy.optimize_clones(clones, optimizer)
        train_op = optimizer.apply_gradients(grads_and_vars)
        with tf.variable_scope('fc', reuse=True):
            w_var, b_var = tf.get_variable('weights'), tf.get_variable('biases')
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            w0, b0 = sess.run([w_var, b_var])
            loss_value, _ = sess.run([total_loss, train_op])
            w1, b1 = sess.run([w_var, b_var])

    per_clone = [_numpy_grads(x, y, w0, b0) for x, y in halves]
    expected_gw = np.mean([g[0] for g in per_clone], axis=0) + WEIGHT_DECAY * w0
    expected_gb = np.mean([g[1] for g in per_clone], axis=0)
    np.testing.assert_allclose(w0 - w1, expected_gw, atol=1e-5)
    np.testing.assert_allclose(b0 - b1, expected_gb, atol=1e-5)

    mses = [np.mean((x.dot(w0) + b0 - y) ** 2) for x, y in halves]
    regularisation = WEIGHT_DECAY * 0.5 * np.sum(w0 ** 2)
    np.testing.assert_allclose(loss_value, np.mean(mses) + regularisation, rtol=1e-5)


def test_single_clone_gradients_match_numpy():
    halves = _half_batches()
    with tf.Graph().as_default():
        clones = model_deploy.create_clones(model_deploy.DeploymentConfig(clone_on_cpu=True),
                                            _linear_model_fn(halves[1:]))
        optimizer = tf.train.GradientDescentOptimizer(1.0)
        _, grads_and_vars = model_deploy.optimize_clones(clones, optimizer,
                                                         regularization_losses=[])
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(dict((v.op.name, (g, v)) for g, v in grads_and_vars))
    gw, gb = _numpy_grads(halves[1][0], halves[1][1], values['fc/weights'][1],
                          values['fc/biases'][1])
    np.testing.assert_allclose(values['fc/weights'][0], gw, atol=1e-5)
    np.testing.assert_allclose(values['fc/biases'][0], gb, atol=1e-5)
