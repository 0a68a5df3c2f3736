"""Replicates a model over clones (GPUs or CPU) and replicas, and averages the clones' gradients.

A *clone* is one copy of the model inside this process, fed one slice of the batch; a *replica* is
one worker process of a distributed job (``tf.train.ClusterSpec``), its variables on parameter
servers. Every clone shares the same variables (created under ``variables_device()``), so
averaging the clones' gradients equals the gradient of the mean loss over the whole batch.

Typical use::

    config = DeploymentConfig(num_clones=2, clone_on_cpu=True)
    with tf.device(config.variables_device()):
        global_step = tf.train.get_or_create_global_step()
    clones = create_clones(config, model_fn, [batch_queue])
    with tf.device(config.optimizer_device()):
        optimizer = tf.train.MomentumOptimizer(0.01, 0.9)
    total_loss, grads_and_vars = optimize_clones(clones, optimizer)
    train_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
"""
import collections

import tensorflow.compat.v1 as tf

Clone = collections.namedtuple('Clone', ['outputs', 'scope', 'device'])
Clone.__doc__ = """One copy of the model: what ``model_fn`` returned, its name scope and device."""


class DeploymentConfig(object):
    """Where clones, inputs, variables and the optimizer run.

    Args:
      num_clones: model copies in this process; each gets ``batch_size / num_clones`` images.
      clone_on_cpu: put every clone on the CPU instead of one GPU each.
      replica_id: index of this worker among ``num_replicas`` (0 is the chief).
      num_replicas: worker processes of a distributed job (1 = not distributed).
      num_ps_tasks: parameter-server tasks holding the variables (0 = variables stay local).
      worker_job_name, ps_job_name: job names in the cluster spec.
    """

    def __init__(self, num_clones=1, clone_on_cpu=False, replica_id=0, num_replicas=1,
                 num_ps_tasks=0, worker_job_name='worker', ps_job_name='ps'):
        if num_clones < 1:
            raise ValueError('num_clones must be >= 1, got %d' % num_clones)
        if num_replicas < 1:
            raise ValueError('num_replicas must be >= 1, got %d' % num_replicas)
        if num_ps_tasks < 0:
            raise ValueError('num_ps_tasks must be >= 0, got %d' % num_ps_tasks)
        if num_replicas > 1 and num_ps_tasks == 0:
            raise ValueError('num_replicas=%d needs num_ps_tasks >= 1 to share variables'
                             % num_replicas)
        if not 0 <= replica_id < num_replicas:
            raise ValueError('replica_id must be in [0, %d), got %d' % (num_replicas, replica_id))
        self._num_clones = num_clones
        self._clone_on_cpu = clone_on_cpu
        self._replica_id = replica_id
        self._num_replicas = num_replicas
        self._num_ps_tasks = num_ps_tasks
        self._worker_job_name = worker_job_name
        self._ps_job_name = ps_job_name
        # With parameter servers every device string names the job and task explicitly.
        self._worker_device = '/job:%s/task:%d' % (worker_job_name, replica_id) \
            if num_ps_tasks > 0 else ''
        self._ps_device = '/job:%s' % ps_job_name if num_ps_tasks > 0 else ''

    num_clones = property(lambda self: self._num_clones)
    clone_on_cpu = property(lambda self: self._clone_on_cpu)
    replica_id = property(lambda self: self._replica_id)
    num_replicas = property(lambda self: self._num_replicas)
    num_ps_tasks = property(lambda self: self._num_ps_tasks)
    worker_job_name = property(lambda self: self._worker_job_name)
    ps_job_name = property(lambda self: self._ps_job_name)
    worker_device = property(lambda self: self._worker_device)
    ps_device = property(lambda self: self._ps_device)

    @property
    def is_chief(self):
        """True for the replica that initialises variables and writes checkpoints."""
        return self._replica_id == 0

    def clone_device(self, clone_index):
        """Device string of clone ``clone_index``: '/device:CPU:0' or '/device:GPU:i'."""
        if not 0 <= clone_index < self._num_clones:
            raise ValueError('clone_index must be in [0, %d), got %d'
                             % (self._num_clones, clone_index))
        device = '/device:CPU:0' if self._clone_on_cpu else '/device:GPU:%d' % clone_index
        return self._worker_device + device

    def clone_scope(self, clone_index):
        """Name scope of clone ``clone_index``: '' for a single clone, else 'clone_i'."""
        if not 0 <= clone_index < self._num_clones:
            raise ValueError('clone_index must be in [0, %d), got %d'
                             % (self._num_clones, clone_index))
        return 'clone_%d' % clone_index if self._num_clones > 1 else ''

    def optimizer_device(self):
        """Device for the optimizer and the gradient averaging (this worker's CPU)."""
        return self._worker_device + '/device:CPU:0'

    def inputs_device(self):
        """Device for the input pipeline (this worker's CPU)."""
        return self._worker_device + '/device:CPU:0'

    def variables_device(self):
        """Device (string or device function) under which variables are created.

        Locally the CPU; with parameter servers a ``replica_device_setter`` spreading variables
        round-robin over the ps tasks while every other op stays on this worker.
        """
        if self._num_ps_tasks == 0:
            return '/device:CPU:0'
        return tf.train.replica_device_setter(
            ps_tasks=self._num_ps_tasks, ps_device=self._ps_device,
            worker_device=self._worker_device, merge_devices=True)


def create_clones(config, model_fn, args=None, kwargs=None):
    """Builds ``model_fn(*args, **kwargs)`` once per clone; returns a list of ``Clone``.

    Each call runs under the clone's name scope and device, with variables created on
    ``config.variables_device()`` and reused by clones after the first. ``model_fn`` adds its
    losses to ``tf.losses`` collections (they are found again by the clone scope).
    """
    args = args or []
    kwargs = kwargs or {}
    clones = []
    for i in range(config.num_clones):
        with tf.name_scope(config.clone_scope(i)) as clone_scope:
            with tf.device(config.clone_device(i)):
                with tf.variable_scope(tf.get_variable_scope(), reuse=True if i > 0 else None):
                    # Variables go to variables_device(); everything else stays on the clone.
                    with tf.device(_variables_on(config.variables_device())):
                        outputs = model_fn(*args, **kwargs)
            clones.append(Clone(outputs, clone_scope, config.clone_device(i)))
    return clones


def _variables_on(variables_device):
    """Device function placing Variable ops on ``variables_device`` and leaving the rest alone."""
    def place(op):
        if op.type in ('Variable', 'VariableV2', 'VarHandleOp'):
            return variables_device(op) if callable(variables_device) else variables_device
        return op.device
    return place


def _clone_loss(clone, num_clones, regularization_losses):
    """Sum of one clone's losses divided by ``num_clones`` (+ regularisation when given)."""
    with tf.device(clone.device):
        parts = []
        clone_losses = tf.losses.get_losses(clone.scope)
        if clone_losses:
            clone_loss = tf.add_n(clone_losses, name='clone_loss')
            if num_clones > 1:
                clone_loss = tf.div(clone_loss, 1.0 * num_clones, name='scaled_clone_loss')
            parts.append(clone_loss)
        if regularization_losses:
            parts.append(tf.add_n(regularization_losses, name='regularization_loss'))
        if not parts:
            return None
        return tf.add_n(parts)


def optimize_clones(clones, optimizer, regularization_losses=None, **kwargs):
    """Gradients of the clones' losses, averaged over clones; regularisation counted once.

    Each clone contributes ``sum(its losses) / num_clones``; the regularisation losses
    (``tf.losses.get_regularization_losses()`` when None) join the first clone's loss only.
    ``kwargs`` go to ``optimizer.compute_gradients``.

    Returns:
      ``(total_loss, grads_and_vars)``: the scalar loss summed over clones, and a list of
      ``(gradient, variable)`` pairs with the clones' gradients summed (variables without a
      gradient are left out).
    """
    if regularization_losses is None:
        regularization_losses = tf.losses.get_regularization_losses()
    num_clones = len(clones)
    clone_totals = []
    clone_grads = []
    for clone in clones:
        with tf.name_scope(clone.scope):
            total = _clone_loss(clone, num_clones, regularization_losses)
            if total is not None:
                with tf.device(clone.device):
                    clone_grads.append(optimizer.compute_gradients(total, **kwargs))
                clone_totals.append(total)
        regularization_losses = None  # only the first clone carries them
    if not clone_totals:
        raise ValueError('no losses found in the clones: model_fn must add tf.losses')
    total_loss = tf.add_n(clone_totals, name='total_loss')
    return total_loss, _sum_clones_gradients(clone_grads)


def _sum_clones_gradients(clone_grads):
    """Sums the gradients of each variable over clones (each already divided by num_clones)."""
    summed = []
    for grads_and_vars in zip(*clone_grads):
        var = grads_and_vars[0][1]
        grads = [g for g, _ in grads_and_vars if g is not None]
        if not grads:
            continue
        if len(grads) == 1:
            summed.append((grads[0], var))
            continue
        with tf.name_scope(var.op.name + '/sum_grads'):
            # add_n needs dense tensors; sparse (IndexedSlices) gradients are densified.
            grad = tf.add_n([tf.convert_to_tensor(g) for g in grads])
        summed.append((grad, var))
    return summed
