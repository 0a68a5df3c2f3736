"""The trainer's session hooks: stop at a non-finite step before it is checkpointed, log the
losses and speed, stop cleanly on SIGINT/SIGTERM, save summaries and checkpoints."""
import signal
import time

import tensorflow.compat.v1 as tf

from training import evaluation
from utils.errors import ToolkitError


class NonFiniteLossError(ToolkitError, RuntimeError):
    """The loss or the gradients became NaN/inf; the message names the step."""


class NonFiniteGuardHook(tf.train.SessionRunHook):
    """Stops training at the first non-finite step, before any later hook can checkpoint it.

    Put it first in the hook list: hooks run ``after_run`` in order, and raising here also skips
    the final save at session close, so no checkpoint holds the spoilt weights.
    """

    def __init__(self, is_finite, total_loss, global_step):
        self._fetches = [is_finite, total_loss]
        self._global_step = global_step

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._fetches)

    def after_run(self, run_context, run_values):
        finite, loss = run_values.results
        if not finite:
            step = run_context.session.run(self._global_step)
            raise NonFiniteLossError(
                'non-finite training step %d (total loss %s, or an infinite gradient): stopped '
                'without checkpointing it; lower --learning_rate or check the data' % (step, loss))


class LoggingHook(tf.train.SessionRunHook):
    """Prints every ``every_n_steps`` local steps: step, losses, learning rate, s/step, images/s."""

    def __init__(self, every_n_steps, batch_size, global_step, total_loss, learning_rate,
                 loss_parts, printer=print):
        self._every = max(1, int(every_n_steps))
        self._batch_size = batch_size
        self._fetches = {'step': global_step, 'total': total_loss, 'lr': learning_rate,
                         'parts': loss_parts}
        self._printer = printer
        self._local_step = 0
        self._last_time = None
        self._last_local_step = 0

    def before_run(self, run_context):
        if self._last_time is None:
            self._last_time = time.time()
        if (self._local_step + 1) % self._every == 0:
            return tf.train.SessionRunArgs(self._fetches)
        return None

    def after_run(self, run_context, run_values):
        self._local_step += 1
        if run_values.results is None:
            return
        values = run_values.results
        now = time.time()
        sec_per_step = (now - self._last_time) / (self._local_step - self._last_local_step)
        self._last_time, self._last_local_step = now, self._local_step
        parts = ', '.join('%s %.4f' % (k, v) for k, v in sorted(values['parts'].items()))
        self._printer('step %d: loss %.4f (%s) lr %.6g | %.3f s/step, %.1f images/s' % (
            values['step'], values['total'], parts, values['lr'], sec_per_step,
            self._batch_size / sec_per_step))


class SignalStopHook(tf.train.SessionRunHook):
    """Turns SIGINT/SIGTERM into a clean stop after the current step (the session's
    CheckpointSaverHook then writes a final checkpoint). A second signal interrupts at once.

    Use ``install()`` before training and ``uninstall()`` in a ``finally``.
    """

    def __init__(self, printer=print):
        self._printer = printer
        self._signal = None
        self._previous = {}

    def install(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def stopped_by(self):
        """Name of the signal that stopped training, or None."""
        return self._signal

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self._signal is not None:
            raise KeyboardInterrupt('a second signal (%s after %s): stopped at once, without a '
                                    'final checkpoint; the newest one saved is kept'
                                    % (name, self._signal))
        self._signal = name

    def after_run(self, run_context, run_values):
        if self._signal is not None:
            self._printer('%s received: saving a final checkpoint and stopping' % self._signal)
            run_context.request_stop()


def build_hooks(options, handles, global_step, step_after, is_chief, scaffold, signal_hook,
                class_names):
    """Session hooks in the order that matters: the non-finite guard first, checkpoints and
    the evaluation (--eval_every_n_steps, chief only; its split must have ``class_names``)
    last."""
    hooks = [NonFiniteGuardHook(handles['is_finite'], handles['total_loss'], global_step),
             signal_hook,
             LoggingHook(options.log_every_n_steps, options.batch_size, step_after,
                         handles['total_loss'], handles['learning_rate'], handles['loss_parts'])]
    if options.max_number_of_steps:
        hooks.append(tf.train.StopAtStepHook(last_step=options.max_number_of_steps))
    if is_chief:
        hooks.append(tf.train.SummarySaverHook(save_secs=options.save_summaries_secs,
                                               output_dir=options.train_model_dir,
                                               scaffold=scaffold))
        hooks.append(tf.train.CheckpointSaverHook(options.train_model_dir,
                                                  save_secs=options.save_interval_secs,
                                                  scaffold=scaffold))
        evaluation_hook = evaluation.hook_from_flags(options, step_after, scaffold.saver,
                                                     class_names)
        if evaluation_hook:
            hooks.append(evaluation_hook)
    return hooks
