"""Training helpers shared by the trainer and the benchmarks: LR, optimizer, train op, init fn.

Graph mode (``tensorflow.compat.v1``). Nothing here reads flags: the trainer passes values in.
"""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from deployment import model_deploy
from model import checkpoints
from model import pretrained
from nets.nets_model import ssd_vgg_300
from utils import files
from utils.errors import ToolkitError

LEARNING_RATE_DECAY_TYPES = ('fixed', 'exponential', 'polynomial')
OPTIMIZERS = ('adadelta', 'adagrad', 'adam', 'ftrl', 'momentum', 'sgd', 'rmsprop')


class TrainConfigError(ToolkitError, ValueError):
    """A training setting or checkpoint does not fit the run (message names the flag/file)."""


def reshape_list(values, shape=None):
    """Flattens a list of tensors and lists of tensors, or regroups a flat list.

    Without ``shape``: ``[a, [b, c], d]`` -> ``[a, b, c, d]`` (what tf.data and ``batch`` take).
    With ``shape``, a list of group sizes (1 = a single item): ``reshape_list([a, b, c, d],
    [1, 2, 1])`` -> ``[a, [b, c], d]``.
    """
    if shape is None:
        flat = []
        for item in values:
            if isinstance(item, (list, tuple)):
                flat.extend(item)
            else:
                flat.append(item)
        return flat
    if sum(shape) != len(values):
        raise ValueError('shape %s needs %d items, got %d' % (shape, sum(shape), len(values)))
    grouped, start = [], 0
    for size in shape:
        grouped.append(values[start] if size == 1 else list(values[start:start + size]))
        start += size
    return grouped


def configure_learning_rate(decay_type, learning_rate, global_step, decay_steps=None,
                            decay_factor=0.94, end_learning_rate=0.0001, staircase=True,
                            warmup_steps=0):
    """Learning-rate tensor: ``fixed``, ``exponential`` or ``polynomial`` (to end_learning_rate).

    ``decay_steps``: steps per decay period (exponential) or to reach the end rate (polynomial).
    ``warmup_steps`` > 0 multiplies the schedule by ``(step + 1) / warmup_steps`` until that step,
    so freshly initialised layers cannot throw pretrained ones off with their first large updates.
    """
    if warmup_steps < 0:
        raise TrainConfigError('--warmup_steps=%d must be >= 0' % warmup_steps)
    schedule = _decayed_learning_rate(decay_type, learning_rate, global_step, decay_steps,
                                      decay_factor, end_learning_rate, staircase)
    if not warmup_steps:
        return schedule
    progress = tf.cast(global_step + 1, tf.float32) / float(warmup_steps)
    return tf.multiply(schedule, tf.minimum(1., progress), name='warmup_learning_rate')


def _decayed_learning_rate(decay_type, learning_rate, global_step, decay_steps, decay_factor,
                           end_learning_rate, staircase):
    if decay_type == 'fixed':
        return tf.constant(learning_rate, tf.float32, name='fixed_learning_rate')
    if decay_type not in LEARNING_RATE_DECAY_TYPES:
        raise TrainConfigError('--learning_rate_decay_type=%s is not one of %s'
                               % (decay_type, ', '.join(LEARNING_RATE_DECAY_TYPES)))
    if not decay_steps or decay_steps <= 0:
        raise TrainConfigError('learning-rate decay needs decay_steps > 0, got %s' % decay_steps)
    if decay_type == 'exponential':
        return tf.train.exponential_decay(learning_rate, global_step, decay_steps, decay_factor,
                                          staircase=staircase, name='exponential_decay_learning_rate')
    return tf.train.polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate,
                                     power=1.0, cycle=False, name='polynomial_decay_learning_rate')


# Epsilon when none is given: 1.0 for RMSProp as in the public SSD-Tensorflow trainer (it damps the
# first steps at its default learning rate 0.01); Adam and Adadelta keep their usual 1e-8, since
# a large epsilon there shrinks every update by orders of magnitude and stalls training.
DEFAULT_EPSILON = {'rmsprop': 1.0, 'adam': 1e-8, 'adadelta': 1e-8}


def configure_optimizer(name, learning_rate, momentum=0.9, rmsprop_decay=0.9,
                        rmsprop_momentum=0.9, opt_epsilon=None, adam_beta1=0.9, adam_beta2=0.999,
                        adadelta_rho=0.95, adagrad_initial_accumulator_value=0.1,
                        ftrl_learning_rate_power=-0.5, ftrl_initial_accumulator_value=0.1,
                        ftrl_l1=0.0, ftrl_l2=0.0):
    """A ``tf.train`` optimizer by name (see OPTIMIZERS) with its hyper-parameters.

    ``opt_epsilon`` None takes DEFAULT_EPSILON of the optimizer.
    """
    if opt_epsilon is None:
        opt_epsilon = DEFAULT_EPSILON.get(name)
    if name == 'adadelta':
        return tf.train.AdadeltaOptimizer(learning_rate, rho=adadelta_rho, epsilon=opt_epsilon)
    if name == 'adagrad':
        return tf.train.AdagradOptimizer(
            learning_rate, initial_accumulator_value=adagrad_initial_accumulator_value)
    if name == 'adam':
        return tf.train.AdamOptimizer(learning_rate, beta1=adam_beta1, beta2=adam_beta2,
                                      epsilon=opt_epsilon)
    if name == 'ftrl':
        return tf.train.FtrlOptimizer(
            learning_rate, learning_rate_power=ftrl_learning_rate_power,
            initial_accumulator_value=ftrl_initial_accumulator_value,
            l1_regularization_strength=ftrl_l1, l2_regularization_strength=ftrl_l2)
    if name == 'momentum':
        return tf.train.MomentumOptimizer(learning_rate, momentum=momentum, name='Momentum')
    if name == 'sgd':
        return tf.train.GradientDescentOptimizer(learning_rate)
    if name == 'rmsprop':
        return tf.train.RMSPropOptimizer(learning_rate, decay=rmsprop_decay,
                                         momentum=rmsprop_momentum, epsilon=opt_epsilon)
    raise TrainConfigError('--optimizer=%s is not one of %s' % (name, ', '.join(OPTIMIZERS)))


def get_variables_to_train(trainable_scopes=None):
    """Trainable variables under the comma-separated ``trainable_scopes`` (all when empty),
    matched at scope boundaries as ``--checkpoint_exclude_scopes`` (``checkpoints.in_scopes``)."""
    scopes = checkpoints.parse_scopes(trainable_scopes)
    if not scopes:
        return tf.trainable_variables()
    for scope in scopes:
        if not any(checkpoints.in_scopes(v.op.name, [scope]) for v in tf.trainable_variables()):
            raise TrainConfigError('--trainable_scopes: no trainable variable under %r' % scope)
    return [v for v in tf.trainable_variables() if checkpoints.in_scopes(v.op.name, scopes)]


def deploy_loss_summary(clones, optimizer, var_list=None, regularization_losses=None):
    """Averages the clones' gradients and adds loss summaries; returns (total_loss, grads_and_vars).

    Summaries: ``total_loss``, ``regularization_loss`` and every loss part averaged over clones
    under its own name (``cross_entropy_pos``, ``localization``, ... as the network named them).
    """
    if regularization_losses is None:
        regularization_losses = tf.losses.get_regularization_losses()
    total_loss, grads_and_vars = model_deploy.optimize_clones(
        clones, optimizer, regularization_losses=regularization_losses, var_list=var_list)
    tf.summary.scalar('losses/total_loss', total_loss)
    if regularization_losses:
        tf.summary.scalar('losses/regularization_loss', tf.add_n(regularization_losses))
    for name, loss in sorted(mean_loss_parts(clones).items()):
        tf.summary.scalar('losses/%s' % name, loss)
    return total_loss, grads_and_vars


def loss_name(loss):
    """Short name of a loss tensor: 'clone_0/ssd_losses/localization' -> 'localization'."""
    parts = loss.op.name.split('/')
    # tf.losses helpers name their output 'value' inside a scope named after the loss.
    return parts[-2] if parts[-1] == 'value' and len(parts) > 1 else parts[-1]


def mean_loss_parts(clones):
    """{name: loss averaged over clones} for every loss the clones added (batch-level parts)."""
    by_name = {}
    for clone in clones:
        for loss in tf.losses.get_losses(clone.scope):
            by_name.setdefault(loss_name(loss), []).append(loss)
    return dict((name, tf.add_n(losses) / float(len(losses))) for name, losses in by_name.items())


def get_trainop(optimizer, grads_and_vars, global_step, total_loss, update_ops=None):
    """One op that applies the gradients, runs ``update_ops`` (batch-norm) and returns the loss.

    Also returns whether the step is finite (loss and gradient norm), so a guard can refuse to
    checkpoint weights a non-finite update has spoilt: ``(train_tensor, is_finite)``.
    """
    if not grads_and_vars:
        raise TrainConfigError('no variable to train: check --trainable_scopes')
    grad_norm = tf.global_norm([g for g, _ in grads_and_vars])
    is_finite = tf.logical_and(tf.is_finite(total_loss), tf.is_finite(grad_norm),
                               name='step_is_finite')
    apply_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
    update_op = tf.group(apply_op, *(update_ops or []))
    with tf.control_dependencies([update_op]):
        train_tensor = tf.identity(total_loss, name='train_op')
    return train_tensor, is_finite


def get_init_fn(pre_trained_path, resume_prefix, num_classes, model_scope=ssd_vgg_300.SCOPE,
                checkpoint_model_scope=None, checkpoint_exclude_scopes=None,
                ignore_missing_vars=False):
    """fn(sess) initialising the model from ``pre_trained_path``, or None.

    None when the run resumes from ``resume_prefix`` (the newest complete checkpoint of
    --train_model_dir, or None for a new run: the session restores it, which wins over
    fine-tuning; it must fit the graph's variables) or when no ``pre_trained_path`` is given
    (training from scratch). Either checkpoint must have the run's class count unless its
    class layers are excluded. Call it after the network is built (it compares against the
    graph's variables). Raises ``checkpoints.CheckpointError`` naming the flag.
    """
    if resume_prefix:
        checkpoints.check_fits(
            resume_prefix, tf.global_variables(), num_classes,
            remedy=' (the resume checkpoint in --train_model_dir): use a new --train_model_dir, or '
                   'the flags it was trained with (--num_classes, --model_name, '
                   '--width_multiplier, --optimizer)')
        return None
    if not pre_trained_path:
        return None
    try:
        return pretrained.init_fn_from_checkpoint(
            pre_trained_path, model_scope=model_scope,
            checkpoint_model_scope=checkpoint_model_scope,
            exclude_scopes=checkpoint_exclude_scopes, ignore_missing_vars=ignore_missing_vars,
            num_classes=num_classes)
    except checkpoints.CheckpointError as e:
        raise checkpoints.CheckpointError('--pre_trained_path=%s: %s' % (pre_trained_path, e))


def print_configuration(flag_values, params, data_sources, save_dir=None):
    """Prints the flags, the network parameters and the data files; also saves them to
    ``save_dir/training_config.txt`` so a run can be reproduced."""
    lines = ['# Training flags']
    lines += ['%s: %s' % (k, flag_values[k]) for k in sorted(flag_values)]
    lines += ['', '# Network parameters']
    for field, value in params._asdict().items():
        lines.append('%s: %s' % (field, np.asarray(value).tolist()
                                 if isinstance(value, np.ndarray) else value))
    lines += ['', '# Data sources'] + list(data_sources)
    text = '\n'.join(lines) + '\n'
    print(text, flush=True)
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        files.write_text_atomically(os.path.join(save_dir, 'training_config.txt'), text)
    return text
