"""The trainer's cluster and session: deployment config from the distributed flags, the session
configuration, and the monitored session that runs the steps (chief or worker)."""

import os

import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from datasets import record_check
from deployment import model_deploy
from model import checkpoints
from training import run_folder
from training.train_tools import TrainConfigError
from utils import cli
from utils import cpu_features
from utils import tf_errors


def _hosts(flag_name, value):
    hosts = [h.strip() for h in value.split(',') if h.strip()]
    for host in hosts:
        if ':' not in host:
            raise cli.UsageError('--%s: %r is not host:port' % (flag_name, host))
    return hosts


def setup_cluster(options):
    """(DeploymentConfig, tf.distribute.Server or None) from the distributed flags.

    A ps process serves forever here (the caller never gets back); workers get a server whose
    target the session connects to.
    """
    if options.num_replicas == 1 and options.num_ps_tasks == 0:
        return _deployment_config(options), None
    ps_hosts = _hosts('ps_hosts', options.ps_hosts)
    worker_hosts = _hosts('worker_hosts', options.worker_hosts)
    if len(ps_hosts) != options.num_ps_tasks:
        raise cli.UsageError('--ps_hosts lists %d hosts for --num_ps_tasks=%d'
                             % (len(ps_hosts), options.num_ps_tasks))
    if len(worker_hosts) != options.num_replicas:
        raise cli.UsageError('--worker_hosts lists %d hosts for --num_replicas=%d'
                             % (len(worker_hosts), options.num_replicas))
    if options.job_name not in ('ps', 'worker'):
        raise cli.UsageError('--job_name=%s must be ps or worker' % options.job_name)
    tasks = ps_hosts if options.job_name == 'ps' else worker_hosts
    if not 0 <= options.task < len(tasks):
        raise cli.UsageError('--task=%d is out of range for %d %s tasks'
                             % (options.task, len(tasks), options.job_name))
    cluster = tf.train.ClusterSpec({'ps': ps_hosts, 'worker': worker_hosts})
    server = tf.distribute.Server(cluster, job_name=options.job_name, task_index=options.task,
                                  config=tf.ConfigProto(allow_soft_placement=True))
    if options.job_name == 'ps':
        print('parameter server %d serving on %s' % (options.task, ps_hosts[options.task]),
              flush=True)
        server.join()
    return _deployment_config(options, replica_id=options.task), server


def _deployment_config(options, replica_id=0):
    try:
        return model_deploy.DeploymentConfig(
            num_clones=options.num_clones, clone_on_cpu=options.clone_on_cpu,
            replica_id=replica_id, num_replicas=options.num_replicas,
            num_ps_tasks=options.num_ps_tasks)
    except ValueError as e:
        raise cli.UsageError('--num_clones/--num_replicas/--num_ps_tasks/--task: %s' % e)


def session_config(options):
    gpu_options = tf.GPUOptions(per_process_gpu_memory_fraction=options.gpu_memory_fraction,
                                allow_growth=options.allow_growth)
    config = tf.ConfigProto(allow_soft_placement=True,
                            log_device_placement=options.log_device_placement,
                            gpu_options=gpu_options)
    if options.precision == 'bfloat16':
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
        cpu_features.warn_if_bfloat16_is_slow(options.precision)
    return config


class WorkerSessionCreator(tf.train.SessionCreator):
    """Session of a non-chief worker: waits for the chief to initialise the shared variables,
    polling every ``poll_secs`` (TensorFlow's own creator polls every 30 s)."""

    def __init__(self, scaffold, master, config, poll_secs=1):
        self._scaffold, self._master, self._config = scaffold, master, config
        self._poll_secs = poll_secs

    def create_session(self):
        self._scaffold.finalize()
        manager = tf.train.SessionManager(
            local_init_op=self._scaffold.local_init_op,
            ready_op=self._scaffold.ready_op,
            ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
            graph=tf.get_default_graph(), recovery_wait_secs=self._poll_secs)
        return manager.wait_for_session(self._master, config=self._config)


def training_error(options, error, data_sources):
    """The one-line ``ToolkitError`` for a TensorFlow ``error`` that stopped training."""
    record_check.raise_if_corrupt(error, data_sources,
                                  remedy='; --skip_corrupt_records trains past it')
    text = tf_errors.describe(error)
    if tf_errors.is_disk_full(error):
        run_folder.remove_partial_checkpoint(options.train_model_dir)
        newest, _ = checkpoints.newest_complete(options.train_model_dir)
        return TrainConfigError(
            '--train_model_dir=%s: cannot write: %s; %s' % (
                options.train_model_dir, text.cause,
                'the newest complete checkpoint is still %s (a rerun resumes from it)'
                % os.path.basename(newest) if newest else 'no checkpoint was written'))
    if text.node and 'Restore' in text.node:
        # A checkpoint in --train_model_dir written with other network flags.
        return TrainConfigError('--train_model_dir=%s: %s (was it trained with other '
                                '--model_name/--width_multiplier flags?)'
                                % (options.train_model_dir, tf_errors.one_line(error)))
    return TrainConfigError('training stopped: %s' % tf_errors.one_line(error))


def run_session(options, server, is_chief, scaffold, hooks, step_after, data_sources=()):
    """Runs training steps until a hook stops them; returns the last global step reached.

    The chief restores the newest checkpoint of --train_model_dir (else runs the scaffold's
    init_fn); other workers wait for the chief. TensorFlow errors become one-line
    ``ToolkitError``s: a corrupt record of ``data_sources`` named, a full disk named with the
    newest complete checkpoint (the failed save's files removed).
    """
    master = server.target if server else ''
    if is_chief:
        creator = tf.train.ChiefSessionCreator(scaffold=scaffold, master=master,
                                               config=session_config(options),
                                               checkpoint_dir=options.train_model_dir)
    else:
        creator = WorkerSessionCreator(scaffold, master, session_config(options))
    final_step = None
    try:
        with tf.train.MonitoredSession(session_creator=creator, hooks=hooks) as sess:
            while not sess.should_stop():
                final_step = sess.run(step_after)
    except tf.errors.OutOfRangeError:
        raise TrainConfigError('--dataset_dir=%s: the input ran out of data' % options.dataset_dir)
    except tf.errors.OpError as e:
        raise training_error(options, e, data_sources) from None
    return final_step
