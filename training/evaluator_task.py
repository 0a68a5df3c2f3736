"""The ``evaluator`` task of a TF_CONFIG cluster: no training; it follows the chief's run folder
``--train_model_dir`` and scores each new checkpoint on ``--eval_split`` as
``eval_ssd_network.py --wait_for_checkpoints`` does (TensorBoard summaries in
``<train_model_dir>/eval_<split>/``, the best checkpoint in ``<train_model_dir>/best/``), until the
run's last step or ``--eval_timeout_secs`` without a new checkpoint."""
from training import evaluation
from utils import cli


def check_flags(options):
    """``cli.UsageError`` for the evaluator's own flags."""
    if not options.train_model_dir:
        raise cli.UsageError('--train_model_dir is required (the chief\'s run folder to follow)')
    if not options.eval_split:
        raise cli.UsageError('--eval_split is required (the split the evaluator scores)')
    if options.eval_interval_secs < 1:
        raise cli.UsageError('--eval_interval_secs=%d must be >= 1' % options.eval_interval_secs)
    if options.eval_timeout_secs < 1:
        raise cli.UsageError('--eval_timeout_secs=%d must be >= 1' % options.eval_timeout_secs)
    if options.eval_max_images is not None and options.eval_max_images < 1:
        raise cli.UsageError('--eval_max_images=%d must be >= 1' % options.eval_max_images)


def run(options):
    """Scores the run's checkpoints as they appear; returns the last step scored (None: none)."""
    check_flags(options)
    spec = evaluation.eval_split_spec(options)
    evaluator = evaluation.CheckpointEvaluator(options.train_model_dir, spec,
                                               max_images=options.eval_max_images,
                                               precision=options.precision)
    evaluation.say('evaluator: following %s, scoring each new checkpoint on %s (a look every '
                   '%d s, until the run\'s last step or %d s without one)'
                   % (options.train_model_dir, options.eval_split, options.eval_interval_secs,
                      options.eval_timeout_secs))
    last = None
    try:
        for _, _, settings in evaluation.score_new_checkpoints(
                evaluator, options.eval_interval_secs, options.eval_timeout_secs):
            last = settings['step']
    finally:
        evaluator.close()
    return last
