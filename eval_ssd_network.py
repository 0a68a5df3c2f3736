"""Evaluates an SSD checkpoint (or a detections file) on a TFRecords split: per-class AP and mAP.

    python eval_ssd_network.py --ckpt_path=ckpt/fine_tuning --dataset_dir=Images/tfrecords \
        --dataset_name=vehicle --split=test [--output_dir=output/eval]
    python eval_ssd_network.py --detections_file=output/detections/detections.json \
        --dataset_dir=Images/tfrecords --dataset_name=vehicle --split=test
    python eval_ssd_network.py --ckpt_path=ckpt/fine_tuning --wait_for_checkpoints \
        --dataset_dir=Images/tfrecords --split=val --eval_interval_secs=60 --timeout=3600

Reported: the Pascal VOC 2007 11-point metric and the VOC 2010+ area metric (IoU >= 0.5,
difficult objects ignored; see utils/voc_metric.py), and COCO's AP over IoU 0.50:0.95 with AP@0.5
and AP@0.75 (pycocotools; see utils/coco_metric.py); below them, where the objects and the
detections went at ``--breakdown_threshold`` (found, wrong class, poor box, missed, recall by
size; see utils/error_breakdown.py). ``--output_dir`` receives ``results.json``
(run settings, mAPs, per-class AP, precision and recall), ``pr_<class>.png`` (precision-recall
curve per class with ground truth) and, for a checkpoint, ``detections.json`` (the detections in
pixels, re-scorable with ``--detections_file``).

With ``--wait_for_checkpoints`` the evaluator follows the training folder ``--ckpt_path``: it
scores each new checkpoint as it appears (the newest, looking every ``--eval_interval_secs``),
writes TensorBoard summaries at its step into ``<ckpt_path>/eval_<split>/``, keeps the best
checkpoint by mAP@0.5 in ``<ckpt_path>/best/`` and ``--output_dir`` for the newest one, and stops
after the run's last step (``max_number_of_steps`` in model_info.json) or when ``--timeout``
seconds pass without a new checkpoint (exit 1 when it scored none). It may start before the
trainer creates the folder.

    python eval_ssd_network.py --tflite_path=export/tflite/ssd_vgg_300.tflite \
        --dataset_dir=Images/tfrecords --dataset_name=vehicle --split=test

A ``.tflite`` model (export_tflite.py) runs in LiteRT on each decoded image, with the
post-processing baked into it; its detections feed the same metrics as a checkpoint's.

Exit status: 0 on success, 1 when the model, the data or the detections file cannot be used,
2 for bad flags.
"""
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from utils import cpu_features  # noqa: E402  (imports no TensorFlow)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

PRECISION = cpu_features.AUTO  # the default of --precision
tf_logging.start_tool(__name__, PRECISION)  # as a script: no TensorFlow C++ log lines

import tensorflow.compat.v1 as tf  # noqa: E402

from datasets import dataset_factory  # noqa: E402
from datasets import record_check  # noqa: E402
from model import evaluation  # noqa: E402
from model import tflite_runner  # noqa: E402
from model.evaluation import EvalError  # noqa: E402
from training import evaluation as training_evaluation  # noqa: E402
from utils import cli  # noqa: E402
from utils import error_breakdown  # noqa: E402
from utils import files  # noqa: E402
from utils import tf_errors  # noqa: E402

def define_flags():
    """The evaluator's own flags (a ``cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('What to evaluate')
    flag_set.checkpoint_path()
    flag_set.string('detections_file', None, 'Score this detections JSON (format in '
                    'utils/voc_metric.py, e.g. from detector.py --json) instead of a model.')
    flag_set.tflite_path()
    flag_set.precision(PRECISION)
    flag_set.group('Following a training run')
    flag_set.boolean('wait_for_checkpoints', False,
                     'Follow the training folder --ckpt_path: score each new checkpoint as it '
                     'appears, with TensorBoard summaries in <ckpt_path>/eval_<split>/ and the '
                     'best checkpoint in <ckpt_path>/best/.')
    flag_set.integer('eval_interval_secs', 60, 'Seconds between looks for a new checkpoint.')
    flag_set.integer('timeout', 3600, 'Stop after this many seconds without a new checkpoint '
                     '(the run also ends the evaluation at its max_number_of_steps).')
    flag_set.group('Data')
    flag_set.string('dataset_dir', None, 'Folder of the TFRecords and dataset_description.json.')
    flag_set.string('dataset_name', 'vehicle', 'pascalvoc_2007, vehicle or a custom name.')
    flag_set.string('split', 'test', 'Split to evaluate (as the converter named it).')
    flag_set.deprecated_alias('train_or_test', 'split')
    flag_set.deprecated_alias('split_name', 'split')
    flag_set.integer('batch_size', 8, 'Images per batch.')
    flag_set.boolean('skip_corrupt_records', False, 'Read every record once first and evaluate '
                     'past the corrupt ones (counted, with their shards, in results.json).')
    flag_set.integer('max_num_batches', None, 'Evaluate only the first N batches (default: all).')
    flag_set.group('Post-processing (checkpoint only)')
    flag_set.postprocessing(select_threshold=0.01)
    flag_set.group('Output')
    flag_set.string('output_dir', os.path.join('output', 'eval'),
                    'Folder for results.json, pr_<class>.png and detections.json.')
    flag_set.float('breakdown_threshold', error_breakdown.DEFAULT_SCORE_THRESHOLD,
                   'Score at which the error breakdown counts a detection (found, wrong class, '
                   "poor box, missed; recall by size): your detector's --select_threshold.")
    return flag_set


def _check_flags(options):
    if sum(map(bool, (options.ckpt_path, options.tflite_path, options.detections_file))) != 1:
        raise cli.UsageError('give exactly one of --ckpt_path (evaluate a model), --tflite_path '
                             '(evaluate a .tflite model) and --detections_file (score a file)')
    if not options.dataset_dir:
        raise cli.UsageError('--dataset_dir is required (folder of the TFRecords)')
    if options.batch_size < 1:
        raise cli.UsageError('--batch_size must be positive, got %d' % options.batch_size)
    if options.max_num_batches is not None and options.max_num_batches < 1:
        raise cli.UsageError('--max_num_batches must be positive, got %d' % options.max_num_batches)
    if options.wait_for_checkpoints:
        if not options.ckpt_path or os.path.isfile(options.ckpt_path) or os.path.isfile(
                options.ckpt_path + '.index'):
            raise cli.UsageError('--wait_for_checkpoints follows a training folder: --ckpt_path '
                                 'must be a directory (or one the trainer will create), got %s'
                                 % options.ckpt_path)
        if options.eval_interval_secs < 1:
            raise cli.UsageError('--eval_interval_secs must be >= 1, got %d'
                                 % options.eval_interval_secs)
        if options.timeout < 1:
            raise cli.UsageError('--timeout must be >= 1, got %d' % options.timeout)
    cli.check_postprocessing(options)
    if not 0. <= options.breakdown_threshold <= 1.:
        raise cli.UsageError('--breakdown_threshold must be in [0, 1], got %g'
                             % options.breakdown_threshold)


def _scoring(options):
    """The post-processing flags and the breakdown's threshold, as evaluate_checkpoint takes them."""
    return {key: getattr(options, key) for key in ('select_threshold', 'nms_threshold', 'top_k',
                                                   'keep_top_k', 'breakdown_threshold')}


def _max_images(options):
    return options.max_num_batches * options.batch_size if options.max_num_batches else None


def _follow(options, spec):
    """--wait_for_checkpoints: scores the run's checkpoints as they appear."""
    evaluator = training_evaluation.CheckpointEvaluator(
        options.ckpt_path, spec, options.batch_size, _max_images(options), options.precision,
        progress=True, **_scoring(options))
    training_evaluation.say('following %s: looking for a new checkpoint every %d s, until the '
                            "run's last step or %d s without one"
                            % (options.ckpt_path, options.eval_interval_secs, options.timeout))
    try:
        for scored, results, settings in training_evaluation.score_new_checkpoints(
                evaluator, options.eval_interval_secs, options.timeout):
            evaluation.write_results(options.output_dir, results, settings, scored.entries,
                                     spec.class_names)
    finally:
        evaluator.close()


def _evaluate_tflite(path, spec, options):
    """--tflite_path: the model in LiteRT on each image of the split."""
    model = tflite_runner.TFLiteDetector(path)
    if model.class_names is not None and model.class_names != spec.class_names:
        raise EvalError('%s detects %s (model_info.json beside it) but dataset %s/%s has '
                        'classes %s' % (path, model.class_names, spec.dataset_name,
                                        spec.split_name, spec.class_names))
    return evaluation.evaluate_detector(model.detect_array, spec, options.batch_size,
                                        _max_images(options),
                                        'evaluating %s' % os.path.basename(path),
                                        options.breakdown_threshold)


def _run(options):
    _check_flags(options)
    spec = dataset_factory.get_dataset(options.dataset_name, options.split, options.dataset_dir)
    skipped = None
    if options.skip_corrupt_records:
        spec, skipped = record_check.skip_corrupt(spec, functools.partial(print, file=sys.stderr))
    files.make_writable_dir(options.output_dir, '--output_dir')  # before a long evaluation
    if options.wait_for_checkpoints:
        return _follow(options, spec)
    settings = {'dataset_name': spec.dataset_name, 'split_name': spec.split_name,
                'dataset_dir': options.dataset_dir, 'num_samples': spec.num_samples,
                'max_num_batches': options.max_num_batches, 'batch_size': options.batch_size,
                'skipped_records': skipped}
    if options.detections_file:
        metrics = evaluation.evaluate_detections_file(options.detections_file, spec,
                                                      options.batch_size, _max_images(options),
                                                      options.breakdown_threshold)
        detections = None  # the file scored is the detections
        settings['detections_file'] = options.detections_file
    elif options.tflite_path:
        metrics, detections = _evaluate_tflite(options.tflite_path, spec, options)
        settings['tflite_path'] = options.tflite_path
    else:
        scored = evaluation.evaluate_checkpoint(
            options.ckpt_path, spec, options.batch_size, _max_images(options),
            precision=options.precision, **_scoring(options))
        settings.update(checkpoint=scored.prefix, precision=options.precision,
                        **_scoring(options))
        metrics, detections = scored.metrics, scored.entries
    results = metrics.evaluate()
    print(evaluation.format_table(results))
    print('results written to %s' % evaluation.write_results(
        options.output_dir, results, settings, detections, spec.class_names))


def _remove_files_written_since(folder, since):
    """Removes the files of ``folder`` modified since ``since`` (a failed run's partial output)."""
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.path.getmtime(path) >= since:
            os.remove(path)


def _evaluate(options):
    started = time.time() - 1  # file times may be rounded down to the second
    try:
        _run(options)
    except tf.errors.OpError as e:
        record_check.raise_if_corrupt(e, dataset_factory.get_dataset(
            options.dataset_name, options.split, options.dataset_dir).data_sources,
            remedy='; --skip_corrupt_records evaluates past it')
        raise EvalError('evaluation failed: %s' % tf_errors.one_line(e))
    except KeyboardInterrupt:  # Ctrl-C: no partial results left looking complete
        if not options.wait_for_checkpoints:  # (a follower's earlier results are complete)
            _remove_files_written_since(options.output_dir, started)
        raise
    except OSError as e:  # e.g. an --output_dir that cannot be written
        if tf_errors.is_disk_full(e):
            _remove_files_written_since(options.output_dir, started)
            raise EvalError('--output_dir=%s: cannot write: %s (this run\'s files removed)'
                            % (options.output_dir, e.strerror))
        raise EvalError('%s: %s' % (e.filename, e.strerror))
    return 0


main = cli.make_main(__doc__, define_flags, _evaluate)


if __name__ == '__main__':
    sys.exit(main())
