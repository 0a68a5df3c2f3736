"""The trainer's session: the session configuration and the monitored session that runs the steps
(chief or worker). The cluster it joins is ``training/cluster.py``'s."""

import os

import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from datasets import record_check
from model import checkpoints
from training import cluster
from training import run_folder
from training.train_tools import TrainConfigError
from utils import cpu_features
from utils import tf_errors


def session_config(options):
    gpu_options = tf.GPUOptions(per_process_gpu_memory_fraction=options.gpu_memory_fraction,
                                allow_growth=options.allow_growth)
    config = tf.ConfigProto(allow_soft_placement=True,
                            log_device_placement=options.log_device_placement,
                            gpu_options=gpu_options)
    if options.num_ps_tasks > 0:
        # A worker talks to the parameter servers and itself only: it neither waits for the
        # other workers nor stops with one; each exchange is bounded by --cluster_timeout_secs.
        config.device_filters.extend(['/job:ps', '/job:worker/task:%d' % options.task])
        config.operation_timeout_in_ms = int(options.cluster_timeout_secs * 1000)
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
    if server:
        creator = cluster.StopOnLostTask(creator, options)
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
