"""Evaluating a training folder's checkpoints while it trains, in the evaluator's follow mode
(``eval_ssd_network.py --wait_for_checkpoints``) or inside the trainer
(``train_ssd_network.py --eval_every_n_steps``).

- ``CheckpointEvaluator``: scores one checkpoint on a split (``model/evaluation.py``, in a graph
  and session of its own), writes its TensorBoard summaries at the checkpoint's step into
  ``<train_dir>/eval_<split>/`` (``training/eval_summaries.py``), keeps ``best/``
  (``training/best_checkpoint.py``) and prints one progress line.
- ``follow_checkpoints``: the checkpoints of a training folder as they appear, until the run's
  last step (``max_number_of_steps`` in its model_info.json) or a timeout.
- ``EvaluationHook``: the trainer's session hook that saves and scores a checkpoint every
  ``--eval_every_n_steps`` steps, in the training process (a second process would take a core).
"""
import os
import time

import tensorflow.compat.v1 as tf

from datasets import dataset_factory
from model import checkpoints
from model import evaluation
from model import model_info
from training import best_checkpoint
from training import eval_summaries
from training.train_tools import TrainConfigError
from utils import cli
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K

NUM_SUMMARY_IMAGES = 3   # images drawn into the summaries at each evaluation
EVAL_BATCH_SIZE = 8
# The evaluator's post-processing defaults (a low score threshold: the whole PR curve counts).
EVAL_POSTPROCESSING = dict(select_threshold=0.01, nms_threshold=NMS_THRESHOLD, top_k=TOP_K,
                           keep_top_k=KEEP_TOP_K)


def last_step(train_dir):
    """The run's ``--max_number_of_steps`` as its model_info.json records it (None: unknown or
    unbounded)."""
    try:
        return model_info.read_model_info(train_dir).get('max_number_of_steps')
    except model_info.ModelInfoError:
        return None


class CheckpointEvaluator(object):
    """Scores checkpoints of ``train_dir`` on the split ``spec`` and records each evaluation.

    ``batch_size``, ``max_images``, ``postprocessing`` (``select_threshold``, ``nms_threshold``,
    ``top_k``, ``keep_top_k``, and ``breakdown_threshold``) and ``precision`` as
    ``model.evaluation.evaluate_checkpoint``.
    """

    def __init__(self, train_dir, spec, batch_size=EVAL_BATCH_SIZE, max_images=None,
                 precision='float32', progress=False, printer=None, **postprocessing):
        self.train_dir = train_dir
        self.spec = spec
        self._options = dict(EVAL_POSTPROCESSING, batch_size=batch_size, max_images=max_images,
                             precision=precision, progress=progress)
        self._options.update(postprocessing)
        self._printer = printer or say
        self._writer = None

    def settings(self, prefix):
        """The evaluation settings written beside the results (results.json)."""
        settings = {key: value for key, value in self._options.items() if key != 'progress'}
        settings.update(dataset_name=self.spec.dataset_name, split_name=self.spec.split_name,
                        num_samples=self.spec.num_samples, checkpoint=prefix,
                        step=checkpoints.checkpoint_step(prefix))
        return settings

    def evaluate(self, prefix):
        """Scores checkpoint ``prefix``, writes its summaries, updates ``best/``.

        Returns ``(evaluation, results, settings)`` (``model.evaluation.Evaluation``, the merged
        results, the settings).
        """
        start = time.time()
        scored = evaluation.evaluate_checkpoint(prefix, self.spec,
                                                num_kept_images=NUM_SUMMARY_IMAGES,
                                                **self._options)
        results = scored.metrics.evaluate()
        settings = self.settings(scored.prefix)
        step = settings['step']
        if self._writer is None:
            self._writer = eval_summaries.SummaryWriter(
                eval_summaries.summary_dir(self.train_dir, self.spec.split_name))
        self._writer.write(step, eval_summaries.evaluation_summary(results, scored.images,
                                                                   self.spec.class_names))
        improved = best_checkpoint.update(self.train_dir, scored.prefix, results, settings,
                                          warn=self._printer)
        self._printer('evaluated step %s on %s (%d images, %.0f s): mAP@0.5 VOC07 %s, VOC10+ %s, '
                      'COCO mAP@[.5:.95] %s%s' % (
                          step, self.spec.split_name, results['num_images'],
                          time.time() - start, _number(results['map_voc07']),
                          _number(results['map_voc2010']), _number(results['map_coco']),
                          ' (new best: %s)' % best_checkpoint.best_dir(self.train_dir)
                          if improved else ''))
        return scored, results, settings

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _number(value):
    return '%.4f' % value if value is not None else '-'


def say(line):
    """Prints a progress line at once (training logs and pipes buffer otherwise)."""
    print(line, flush=True)


class NothingScoredError(TrainConfigError):
    """Follow mode ended without scoring a single checkpoint."""


def follow_checkpoints(train_dir, interval_secs, timeout_secs=None, printer=say,
                       sleep=time.sleep, clock=time.monotonic):
    """Yields the newest complete checkpoint prefix of ``train_dir`` each time a newer one
    appears, looking every ``interval_secs``; the folder itself may appear later.

    Stops after yielding the run's last step (``last_step``), or once ``timeout_secs`` (None:
    never) pass without a new checkpoint: a ``NothingScoredError`` when none was yielded. A
    checkpoint that appears while the previous one is being scored is the next one yielded;
    older ones saved meanwhile are skipped, so the evaluation keeps up with training. A newer
    checkpoint that cannot be used is named once (``printer``) when it is still unusable a look
    later (the trainer may be writing it), and the newest complete one is taken instead.
    """
    scored_step = None
    waiting_since = clock()
    unusable, reported = set(), set()
    while True:
        prefix, passed_over = (checkpoints.newest_complete(train_dir) if os.path.isdir(train_dir)
                               else (None, []))
        for passed, reason in passed_over:
            if passed in unusable and passed not in reported:
                printer(checkpoints.passed_over_line(passed, reason, prefix))
                reported.add(passed)
        unusable = {passed for passed, _ in passed_over}
        step = checkpoints.checkpoint_step(prefix) if prefix else None
        if step is not None and (scored_step is None or step > scored_step):
            yield prefix
            scored_step = step
            final = last_step(train_dir)
            if final is not None and step >= final:
                printer('step %d is the last of the run (max_number_of_steps=%d in %s): stopping'
                        % (step, final, model_info.MODEL_INFO_FILENAME))
                return
            waiting_since = clock()
            continue
        waited = clock() - waiting_since
        if timeout_secs is not None and waited >= timeout_secs:
            if scored_step is None:
                raise NothingScoredError(
                    '--timeout=%g: no checkpoint %s in %s after %.0f s: nothing was scored' % (
                        timeout_secs, 'could be used' if passed_over else 'appeared',
                        train_dir, waited))
            printer('no new checkpoint in %s for %.0f s (--timeout=%g): stopping'
                    % (train_dir, waited, timeout_secs))
            return
        pause = interval_secs if timeout_secs is None else min(interval_secs,
                                                               timeout_secs - waited)
        sleep(max(pause, 0.))


def score_new_checkpoints(evaluator, interval_secs, timeout_secs=None):
    """``evaluator.evaluate`` (a ``CheckpointEvaluator``) of each checkpoint of its training
    folder as ``follow_checkpoints`` finds them; yields ``(evaluation, results, settings)``.

    A checkpoint removed before it was scored (the trainer keeps ``--max_to_keep``) is skipped
    with one line; any other failure is raised.
    """
    for prefix in follow_checkpoints(evaluator.train_dir, interval_secs, timeout_secs):
        try:
            yield evaluator.evaluate(prefix)
        except (checkpoints.CheckpointError, tf.errors.OpError, OSError):
            if os.path.exists(prefix + '.index'):
                raise
            say('%s was removed before it was scored (the trainer keeps --max_to_keep '
                'checkpoints): skipped' % prefix)


class EvaluationHook(tf.train.SessionRunHook):
    """Every ``every_n_steps`` global steps, and at ``last_step``, saves a checkpoint with
    ``saver`` and scores it with ``evaluator`` (a ``CheckpointEvaluator``) before training
    goes on. ``step_tensor`` is the global step after the training op."""

    def __init__(self, evaluator, every_n_steps, step_tensor, saver, last_step=None):
        self._evaluator = evaluator
        self._every = int(every_n_steps)
        self._step_tensor = step_tensor
        self._saver = saver
        self._last_step = last_step

    def before_run(self, run_context):
        return tf.train.SessionRunArgs(self._step_tensor)

    def after_run(self, run_context, run_values):
        step = int(run_values.results)
        if step % self._every and step != self._last_step:
            return
        prefix = self._saver.save(run_context.session,
                                  os.path.join(self._evaluator.train_dir, 'model.ckpt'),
                                  global_step=step)
        self._evaluator.evaluate(prefix)

    def end(self, session):
        self._evaluator.close()


def check_flags(options):
    """``cli.UsageError`` (one line naming the flag) for the trainer's evaluation flag values
    that cannot work."""
    if options.eval_every_n_steps < 0:
        raise cli.UsageError('--eval_every_n_steps=%d must be >= 0 (0: no evaluation)'
                             % options.eval_every_n_steps)
    if options.eval_max_images is not None and options.eval_max_images < 1:
        raise cli.UsageError('--eval_max_images=%d must be >= 1' % options.eval_max_images)
    if options.eval_every_n_steps and not options.eval_split:
        raise cli.UsageError('--eval_every_n_steps needs --eval_split (the split to score)')


def eval_split_spec(options):
    """DatasetSpec of the trainer's ``--eval_split`` in ``--eval_dataset_dir`` (default
    ``--dataset_dir``); ``TrainConfigError`` naming both when it cannot be read."""
    dataset_dir = options.eval_dataset_dir or options.dataset_dir
    try:
        spec = dataset_factory.get_dataset(options.dataset_name, options.eval_split, dataset_dir)
    except (ValueError, IOError, KeyError) as e:
        raise TrainConfigError('--eval_split=%s in %s: %s' % (options.eval_split, dataset_dir, e))
    empty = [path for path in spec.data_sources if os.path.getsize(path) == 0]
    if empty:
        raise TrainConfigError('--eval_split=%s: %s is empty but dataset_description.json lists '
                               '%d images: convert the split again'
                               % (options.eval_split, empty[0], spec.num_samples))
    return spec


def hook_from_flags(options, step_tensor, saver, class_names):
    """The trainer's ``EvaluationHook`` for its flags (None without --eval_every_n_steps).

    Reads the evaluation split now, so a missing split or other classes than the model's
    (``class_names``) stop the run before its first step.
    """
    if not options.eval_every_n_steps:
        return None
    spec = eval_split_spec(options)
    if spec.class_names != list(class_names):
        raise TrainConfigError('--eval_split=%s in %s has classes %s, the model %s'
                               % (options.eval_split, options.eval_dataset_dir or
                                  options.dataset_dir, spec.class_names, list(class_names)))
    evaluator = CheckpointEvaluator(options.train_model_dir, spec,
                                    max_images=options.eval_max_images,
                                    precision=options.precision)
    return EvaluationHook(evaluator, options.eval_every_n_steps, step_tensor, saver,
                          options.max_number_of_steps)
