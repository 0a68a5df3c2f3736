"""training/train_tools and training/hooks: list reshaping, LR schedules, optimizers, train op,
checkpoint checks of get_init_fn, the non-finite guard, signal stop and logging hooks."""
import collections
import os
import signal

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model import checkpoints
from training import hooks, train_tools
from utils import slim_compat

slim = slim_compat.import_slim()

tf.disable_eager_execution()


def test_reshape_list_flattens_and_regroups():
    flat = train_tools.reshape_list(['img', ['c1', 'c2'], ['l1', 'l2'], 's'])
    assert flat == ['img', 'c1', 'c2', 'l1', 'l2', 's']
    assert train_tools.reshape_list(flat, [1, 2, 2, 1]) == ['img', ['c1', 'c2'], ['l1', 'l2'], 's']
    with pytest.raises(ValueError, match='needs 5 items'):
        train_tools.reshape_list(flat, [1, 2, 2])


def _lr_values(decay_type, steps, **kwargs):
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        lr = train_tools.configure_learning_rate(decay_type, 0.1, step, **kwargs)
        with tf.Session() as sess:
            return [sess.run(lr, {step: s}) for s in steps]


def test_learning_rate_schedules_match_hand_computed_values():
    assert _lr_values('fixed', [0, 1000]) == pytest.approx([0.1, 0.1])
    # Staircase exponential: 0.1 * 0.5 ** floor(step / 10).
    assert _lr_values('exponential', [0, 9, 10, 25], decay_steps=10, decay_factor=0.5) == \
        pytest.approx([0.1, 0.1, 0.05, 0.025])
    # Linear from 0.1 to 0.01 over 100 steps, then flat.
    assert _lr_values('polynomial', [0, 50, 100, 200], decay_steps=100,
                      end_learning_rate=0.01) == pytest.approx([0.1, 0.055, 0.01, 0.01])
    # Warm-up: (step + 1) / 4 of the schedule for the first 4 steps.
    assert _lr_values('fixed', [0, 1, 3, 4, 100], warmup_steps=4) == \
        pytest.approx([0.025, 0.05, 0.1, 0.1, 0.1])
    assert _lr_values('polynomial', [1, 50], decay_steps=100, end_learning_rate=0.01,
                      warmup_steps=4) == pytest.approx([0.5 * 0.0991, 0.055])
    with pytest.raises(train_tools.TrainConfigError, match='--warmup_steps=-1'):
        _lr_values('fixed', [0], warmup_steps=-1)
    with pytest.raises(train_tools.TrainConfigError, match='--learning_rate_decay_type=cosine'):
        _lr_values('cosine', [0], decay_steps=10)
    with pytest.raises(train_tools.TrainConfigError, match='decay_steps'):
        _lr_values('exponential', [0], decay_steps=0)


@pytest.mark.parametrize('name, cls', [
    ('adadelta', tf.train.AdadeltaOptimizer), ('adagrad', tf.train.AdagradOptimizer),
    ('adam', tf.train.AdamOptimizer), ('ftrl', tf.train.FtrlOptimizer),
    ('momentum', tf.train.MomentumOptimizer), ('sgd', tf.train.GradientDescentOptimizer),
    ('rmsprop', tf.train.RMSPropOptimizer)])
def test_configure_optimizer_by_name(name, cls):
    assert type(train_tools.configure_optimizer(name, 0.01)) is cls


def test_unknown_optimizer_names_the_flag():
    with pytest.raises(train_tools.TrainConfigError, match='--optimizer=lbfgs'):
        train_tools.configure_optimizer('lbfgs', 0.01)


def test_momentum_step_matches_hand_computation():
    with tf.Graph().as_default():
        w = tf.Variable([1.0, -2.0])
        loss = tf.reduce_sum(tf.square(w))  # gradient 2w
        optimizer = train_tools.configure_optimizer('momentum', 0.1, momentum=0.5)
        step = tf.train.get_or_create_global_step()
        grads = optimizer.compute_gradients(loss)
        train_tensor, finite = train_tools.get_trainop(optimizer, grads, step, loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            loss0, ok = sess.run([train_tensor, finite])
            w1 = sess.run(w)
            sess.run(train_tensor)
            w2, s = sess.run([w, step])
    assert loss0 == pytest.approx(5.0) and ok
    v1 = 2 * np.array([1.0, -2.0])
    np.testing.assert_allclose(w1, [1.0, -2.0] - 0.1 * v1, rtol=1e-6)
    v2 = 0.5 * v1 + 2 * w1
    np.testing.assert_allclose(w2, w1 - 0.1 * v2, rtol=1e-6)
    assert s == 2


def test_trainop_reports_non_finite_steps():
    with tf.Graph().as_default():
        w = tf.Variable([1.0])
        x = tf.placeholder(tf.float32, [])
        loss = tf.reduce_sum(w * x)
        optimizer = tf.train.GradientDescentOptimizer(0.1)
        train_tensor, finite = train_tools.get_trainop(
            optimizer, optimizer.compute_gradients(loss), tf.train.get_or_create_global_step(),
            loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            assert sess.run([train_tensor, finite], {x: 2.0})[1]
            assert not sess.run([train_tensor, finite], {x: np.inf})[1]


def test_variables_to_train_by_scope():
    with tf.Graph().as_default():
        with tf.variable_scope('ssd_300_vgg'):
            with tf.variable_scope('conv1'):
                tf.get_variable('w', [1])
            with tf.variable_scope('block4_box'):
                box = tf.get_variable('w', [1])
        assert len(train_tools.get_variables_to_train('')) == 2
        assert train_tools.get_variables_to_train('ssd_300_vgg/block4_box') == [box]
        with pytest.raises(train_tools.TrainConfigError, match='--trainable_scopes'):
            train_tools.get_variables_to_train('nowhere')


def _class_layer(num_classes, anchors=4, depth=8):
    """The model variable of one SSD class layer for ``num_classes`` in the default graph."""
    return slim.model_variable('ssd_300_vgg/block4_box/conv_cls/weights',
                               [3, 3, depth, anchors * num_classes])


def _save_class_layer(path, num_classes, anchors=4):
    """A checkpoint holding one SSD class layer for ``num_classes``."""
    with tf.Graph().as_default():
        _class_layer(num_classes, anchors)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return tf.train.Saver().save(sess, path)


def test_class_count_mismatch_names_both_counts_and_the_flag(tmp_path):
    prefix = _save_class_layer(str(tmp_path / 'voc' / 'model.ckpt'), num_classes=21)
    with tf.Graph().as_default():
        _class_layer(6)
        with pytest.raises(checkpoints.CheckpointError) as err:
            train_tools.get_init_fn(prefix, None, num_classes=6)
        message = str(err.value)
        assert message.startswith('--pre_trained_path=%s: ' % prefix)
        assert 'num_classes=21' in message and 'num_classes=6' in message
        assert '--checkpoint_exclude_scopes=ssd_300_vgg/block4_box/conv_cls' in message
        # Resuming a run with another class count is refused the same way.
        with pytest.raises(checkpoints.CheckpointError, match='--train_model_dir'):
            train_tools.get_init_fn(None, prefix, num_classes=6)


def test_matching_class_count_resumes_without_init_fn(tmp_path):
    prefix = _save_class_layer(str(tmp_path / 'run' / 'model.ckpt'), num_classes=6)
    with tf.Graph().as_default():
        var = _class_layer(6)
        shapes = checkpoints.open_reader(prefix).get_variable_to_shape_map()
        assert checkpoints.trained_num_classes(shapes[var.op.name], var.shape.as_list(), 6) == 6
        # Resume wins over fine-tuning: the session restores the run's own checkpoint.
        assert train_tools.get_init_fn('/elsewhere/model.ckpt', prefix, 6) is None
        assert train_tools.get_init_fn(None, None, 6) is None


def test_print_configuration_saves_a_copy(tmp_path, capsys):
    Params = collections.namedtuple('Params', ['num_classes', 'anchor_steps'])
    text = train_tools.print_configuration({'batch_size': 4, 'optimizer': 'adam'},
                                           Params(6, [8, 16]), ['a.tfrecord'], str(tmp_path))
    assert 'batch_size: 4' in text and 'num_classes: 6' in text and 'a.tfrecord' in text
    assert (tmp_path / 'training_config.txt').read_text() == text
    assert 'optimizer: adam' in capsys.readouterr().out


def _toy_training(train_dir, hooks_before, poison_at=None, save_steps=1):
    """A one-variable training loop in a MonitoredTrainingSession; the loss becomes NaN from
    global step ``poison_at`` on. Returns the list of global steps the loop saw."""
    step = tf.train.get_or_create_global_step()
    w = tf.Variable(1.0, name='w')
    poison = tf.cond(step >= (poison_at or 10 ** 9), lambda: np.float32(np.nan),
                     lambda: np.float32(1.0))
    loss = tf.square(w) * poison
    optimizer = tf.train.GradientDescentOptimizer(0.1)
    train_tensor, finite = train_tools.get_trainop(optimizer, optimizer.compute_gradients(loss),
                                                   step, loss)
    guard = hooks.NonFiniteGuardHook(finite, loss, step)
    saver = tf.train.Saver()
    session_hooks = [guard] + hooks_before + [
        tf.train.StopAtStepHook(last_step=6),
        tf.train.CheckpointSaverHook(train_dir, save_steps=save_steps, saver=saver)]
    with tf.train.MonitoredTrainingSession(hooks=session_hooks, save_checkpoint_secs=None,
                                           save_summaries_steps=None, log_step_count_steps=None,
                                           checkpoint_dir=train_dir) as sess:
        while not sess.should_stop():
            sess.run(train_tensor)


def test_non_finite_guard_stops_before_a_nan_checkpoint(tmp_path):
    train_dir = str(tmp_path)
    with tf.Graph().as_default():
        with pytest.raises(hooks.NonFiniteLossError, match='step 4'):
            _toy_training(train_dir, [], poison_at=3)
    latest = tf.train.latest_checkpoint(train_dir)
    assert latest.endswith('model.ckpt-3')  # step 4 (whose update produced NaN) never saved
    reader = tf.train.load_checkpoint(latest)
    assert np.isfinite(reader.get_tensor('w'))


def test_signal_stops_cleanly_with_a_final_checkpoint(tmp_path):
    train_dir = str(tmp_path)

    class SendSigterm(tf.train.SessionRunHook):
        def __init__(self):
            self.runs = 0

        def after_run(self, run_context, run_values):
            self.runs += 1
            if self.runs == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    stop = hooks.SignalStopHook(printer=lambda *_: None)
    stop.install()
    try:
        with tf.Graph().as_default():
            # stop must see the flag after the signal: it comes after the sender in the list.
            _toy_training(train_dir, [SendSigterm(), stop], save_steps=100)
    finally:
        stop.uninstall()
    assert stop.stopped_by == 'SIGTERM'
    assert tf.train.latest_checkpoint(train_dir).endswith('model.ckpt-2')
    assert signal.getsignal(signal.SIGTERM) is not stop._handle


def test_logging_hook_reports_losses_rate_and_speed():
    lines = []
    with tf.Graph().as_default():
        step = tf.train.get_or_create_global_step()
        increment = tf.assign_add(step, 1)
        hook = hooks.LoggingHook(2, 8, step, tf.constant(3.5), tf.constant(0.01),
                                 {'localization': tf.constant(1.25)}, printer=lines.append)
        with tf.train.MonitoredSession(hooks=[hook]) as sess:
            for _ in range(4):
                sess.run(increment)
    assert len(lines) == 2
    assert lines[0].startswith('step ') and 'loss 3.5000 (localization 1.2500) lr 0.01' in lines[0]
    assert 's/step' in lines[0] and 'images/s' in lines[0]


def test_resume_checkpoint_of_another_width_is_refused(tmp_path):
    prefix = _save_class_layer(str(tmp_path / 'run' / 'model.ckpt'), num_classes=6)
    with tf.Graph().as_default():
        _class_layer(6, depth=4)  # half the input channels
        with pytest.raises(checkpoints.CheckpointError, match=r'ssd_300_vgg/block4_box/conv_cls/'
                           r'weights has shape \[3, 3, 8, 24\], the model needs \[3, 3, 4, 24\]'):
            train_tools.get_init_fn(None, prefix, 6)


def test_default_epsilon_per_optimizer():
    # Adam with epsilon 1.0 (the RMSProp setting of SSD-Tensorflow) barely moves: keep 1e-8.
    assert train_tools.configure_optimizer('adam', 0.01)._epsilon == pytest.approx(1e-8)
    assert train_tools.configure_optimizer('rmsprop', 0.01)._epsilon == pytest.approx(1.0)
    assert train_tools.configure_optimizer('adam', 0.01, opt_epsilon=0.1)._epsilon == 0.1
