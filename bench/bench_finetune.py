"""Real-data benchmark and ablation: fine-tunes SSD300 from ImageNet VGG-16 on real vehicle photos.

    python bench/bench_finetune.py                            # the README recipe, 1600 steps
    python bench/bench_finetune.py --nozoom_out --seed=1      # one factor (and a seed) changed
    python bench/bench_finetune.py --time_budget_minutes=60   # train at most an hour this run

1. converts the shared Open Images vehicle set (``--data_dir``, splits train and val) to TFRecords;
2. runs ``train_ssd_network.py`` exactly as a user would, with ``RECIPE`` (the README's
   fine-tuning recipe) and the recipe's factors given as flags here (zoom-out, steps, negative
   ratio, match threshold, optimizer, learning rate, seed), from ``--pre_trained_path``
   (conv-only VGG-16), printing progress and an ETA; stops cleanly (SIGTERM, final checkpoint)
   when ``--time_budget_minutes`` runs out;
3. scores the newest checkpoint on val with ``eval_ssd_network.py`` (mAP@0.5, VOC07 and VOC10+,
   per class, PR curves) and runs ``detector.py`` on the street photos;
4. adds the run's row to the ablation table in this machine's section of ``bench/REPORT.md``
   (one row per run, rows of earlier runs kept) and, for the recipe itself, rewrites its
   per-class part (the markdown: ``bench/finetune_report.py``).

A run is named by the factors that differ from the recipe (``recipe``, ``zoom_out-false``,
``max_number_of_steps-3200_seed-1``, ...) and lives in ``--results_dir/runs/<name>/``: the
checkpoints with ``model_info.json``, ``train.log``, ``eval/``, ``detections/`` and
``progress.json`` (training minutes summed over the script's runs, and the factors' flags).
Rerunning the same flags continues that run where it stopped; a finished run is only re-scored; a folder
trained with other factors (the recipe's defaults changed since) is refused. The TFRecords are
shared by all runs.
Time it alone: two cores shared with anything else make every figure up to 2x slower.
"""
import collections
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

tf_logging.start_tool(__name__)  # as a script: no TensorFlow C++ log lines

from bench import error_crops  # noqa: E402
from bench import finetune_report  # noqa: E402
from datasets.utils import dataset_utils  # noqa: E402
from nets import ssd_params  # noqa: E402
from utils import cli  # noqa: E402
from utils import files  # noqa: E402
from utils import ssd_defaults  # noqa: E402
from utils import voc_metric  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')
RESULTS_DIR = os.path.join(REPO_ROOT, 'bench', 'results', 'finetune')
TRAINABLE_SCOPES = ','.join('%s/%s' % (ssd_params.SSD300_SCOPE, s) for s in (
    'conv4', 'conv5', 'conv6', 'conv7', 'block8', 'block9', 'block10', 'block11',
    'block4_box', 'block7_box', 'block8_box', 'block9_box', 'block10_box', 'block11_box'))
BATCH_SIZE = 8
# The README's fine-tuning recipe less its factors (FACTORS); command.sh runs the same flags on
# Images/, the factors at their recipe values, without a seed.
RECIPE = [
    '--trainable_scopes=%s' % TRAINABLE_SCOPES,   # conv1-conv3 frozen: generic edges, 40 % of cost
    '--weights_initializer=he',                   # conv6/conv7 and the extra blocks start fresh
    '--head_init_stddev=0.001',                   # ... and the heads predict ~nothing at first
    '--warmup_steps=100',
    '--learning_rate_decay_type=polynomial', '--end_learning_rate=0.00001',
    '--num_epochs_per_decay=0',                   # the decay ends at --max_number_of_steps
    '--weight_decay=0.0005', '--batch_size=%d' % BATCH_SIZE,
    '--photometric_distortion=true',
]
# The recipe's factors: (FlagSet method, trainer flag, recipe value, help). Each is a flag of
# this script passed on to the trainer; a run is named by those that differ from the recipe.
FACTORS = (
    ('integer', 'max_number_of_steps', 1600, 'Training steps of the whole run (the learning-rate '
     'schedule ends there).'),
    ('boolean', 'zoom_out', True, "SSD's zoom-out (expansion) augmentation: objects shrink on "
     'a mean-coloured canvas.'),
    ('float', 'negative_ratio', 3.0, 'Hard negatives mined per positive.'),
    ('float', 'match_threshold', ssd_defaults.MATCH_THRESHOLD,
     'IoU from which an anchor is a positive.'),
    ('enum', 'optimizer', 'adam', 'The optimizer (a trainer choice).'),
    ('float', 'learning_rate', 0.0001, 'Peak learning rate (after the warm-up).'),
    ('string', 'class_weights', '', 'Weights of the classes in the classification loss: '
     '"balanced" (inverse to their training object counts) or "Truck=3,Bus=2" ("": all 1).'),
    ('integer', 'seed', 0, 'Seed of initialisation, augmentation and shuffling.'),
    ('float', 'width_multiplier', 1.0, 'Layer widths (below 1, --pre_trained_path="" trains '
     'from scratch: a quick check of the benchmark itself).'),
)
STEP_LINE = re.compile(r'^step (\d+): loss ([\d.]+).*\| ([\d.]+) s/step')


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``): where things are, this run, the factors."""
    from training import train_tools
    flag_set = cli.FlagSet()
    flag_set.group('Data and output')
    flag_set.string('results_dir', RESULTS_DIR,
                    'Folder for the records and one subfolder per run (resumed on rerun).')
    flag_set.string('data_dir', os.path.join(SHARED_DATA, 'vehicles_openimages'),
                    'VOC-layout vehicle folder with ImageSets/Main/train.txt and val.txt.')
    flag_set.string('pre_trained_path',
                    os.path.join(SHARED_DATA, 'pretrained', 'vgg_16_imagenet_conv.ckpt'),
                    'ImageNet VGG-16 checkpoint (slim vgg_16 names) to start from ("": from '
                    'scratch).')
    flag_set.string('test_images', os.path.join(SHARED_DATA, 'test_images', 'vehicle_*.jpg'),
                    'Glob of photos for detector.py ("" to skip).')
    flag_set.string('report', os.path.join(REPO_ROOT, 'bench', 'REPORT.md'),
                    'Report whose ablation table receives the run ("" to skip).')
    flag_set.group('This run of the script')
    flag_set.float('time_budget_minutes', 0, 'Stop training after this many minutes in this '
                   'run of the script (0: no limit); rerun to continue.')
    flag_set.boolean('skip_training', False, 'Only score the newest checkpoint of the run.')
    flag_set.float('detector_threshold', 0.5, 'Score threshold of the drawn detections.')
    flag_set.integer('eval_every_n_steps', 200, 'The trainer scores the run on val every N steps '
                     '(TensorBoard eval_val/, best/ and learning_curve.png; 0: only at the end).')
    flag_set.group('Factors of the recipe (defaults: the README recipe)')
    for kind, name, default, help_text in FACTORS:
        if kind == 'enum':
            flag_set.enum(name, default, train_tools.OPTIMIZERS, help_text)
        else:
            getattr(flag_set, kind)(name, default, help_text)
    return flag_set


def log(message):
    print('[finetune] %s' % message, flush=True)


def run_dir(results_dir, name):
    """The folder of run ``name`` (checkpoints, logs, pictures) under ``results_dir``."""
    return os.path.join(results_dir, 'runs', name)


def tfrecords_dir(results_dir):
    """The TFRecords every run of ``results_dir`` trains and scores on."""
    return os.path.join(results_dir, 'tfrecords')


def read_json(path, default):
    """The JSON content of ``path``, or ``default`` when it does not exist."""
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def _flag_text(value):
    """A flag value as the command line and the run names spell it."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return '%g' % value if isinstance(value, float) else str(value)


def changed_factors(options):
    """``[(name, value)]`` of the factors that differ from the recipe, in ``FACTORS`` order."""
    return [(name, getattr(options, name)) for _, name, default, _ in FACTORS
            if getattr(options, name) != default]


def run_name(options):
    """The run's folder name: ``recipe``, or its changed factors (``zoom_out-false_seed-1``)."""
    changed = changed_factors(options)
    return '_'.join('%s-%s' % (name, _flag_text(value)) for name, value in changed) or 'recipe'


def factor_args(options):
    """The trainer flags of the factors (every factor, changed or not)."""
    return ['--%s=%s' % (name, _flag_text(getattr(options, name))) for _, name, _, _ in FACTORS]


def convert(data_dir, tfrecords_dir):
    """Shared vehicle folder -> TFRecords of the train and val splits (skipped when present)."""
    done = (dataset_utils.read_description(tfrecords_dir) or {'splits': {}})['splits']
    for split in ('train', 'val'):
        if split not in done:
            subprocess.run([sys.executable, 'datasets/write_dataset/dataset_to_tfrecords.py',
                            '--dataset_dir=%s' % data_dir, '--output_dir=%s' % tfrecords_dir,
                            '--dataset_name=vehicle', '--split=%s' % split],
                           cwd=REPO_ROOT, check=True)


def latest_step(train_dir):
    """The global step of the newest complete checkpoint in ``train_dir`` (0 when there is
    none), as the trainer resumes from it."""
    from model import checkpoints
    prefix = checkpoints.newest_complete(train_dir)[0] if os.path.isdir(train_dir) else None
    return checkpoints.checkpoint_step(prefix) or 0


def load_progress(path):
    return read_json(path, {'train_minutes': 0.0})


def save_progress(path, progress):
    files.write_json_atomically(path, progress)


def train(options, tfrecords_dir, train_dir, progress_path):
    """Runs (or resumes) the trainer; returns the global step of the newest checkpoint.
    ``cli.UsageError`` when the run folder was trained with other factors (a recipe whose
    defaults changed since: the same name no longer means the same run)."""
    progress = load_progress(progress_path)
    factors = factor_args(options)
    if progress.get('factors', factors) != factors:
        raise cli.UsageError('%s was trained with %s, not %s: give its factors, or another '
                             '--results_dir' % (train_dir, ' '.join(progress['factors']),
                                                ' '.join(factors)))
    progress['factors'] = factors
    start_step = latest_step(train_dir)
    steps = options.max_number_of_steps
    if start_step >= steps:
        log('training already finished at step %d' % start_step)
        return start_step
    command = [sys.executable, 'train_ssd_network.py', '--train_model_dir=%s' % train_dir,
               '--dataset_dir=%s' % tfrecords_dir, '--dataset_name=vehicle',
               '--train_or_test=train', '--pre_trained_path=%s' % options.pre_trained_path,
               '--clone_on_cpu', '--log_every_n_steps=10', '--save_interval_secs=600',
               '--save_summaries_secs=300'] + RECIPE + factor_args(options)
    if options.eval_every_n_steps:
        command += ['--eval_every_n_steps=%d' % options.eval_every_n_steps, '--eval_split=val']
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
    log('training from step %d to %d (%s)' % (start_step, steps, 'resuming' if start_step else
                                             'from %s' % (options.pre_trained_path or 'scratch')))
    started = time.time()
    trainer = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    budget = options.time_budget_minutes * 60.0
    stopping = False
    log_path = os.path.join(train_dir, 'train.log')
    with open(log_path, 'a') as log_file:
        for line in trainer.stdout:
            log_file.write(line)
            log_file.flush()   # train.log is what a user tails while the run goes on
            match = STEP_LINE.match(line)
            if match:
                step, loss, sec_per_step = int(match.group(1)), float(match.group(2)), \
                    float(match.group(3))
                log('step %d/%d  loss %.3f  %.2f s/step  %.1f min so far, ETA %.0f min' % (
                    step, steps, loss, sec_per_step,
                    progress['train_minutes'] + (time.time() - started) / 60.0,
                    (steps - step) * sec_per_step / 60.0))
            elif line.startswith(('restored ', 'class weights', 'evaluated ', 'error',
                                  'training stopped', 'SIG')) or \
                    '(--precision=auto: ' in line:
                log(line.strip())
            if budget and not stopping and time.time() - started > budget:
                log('time budget of %g min reached: stopping with a final checkpoint'
                    % options.time_budget_minutes)
                trainer.send_signal(signal.SIGTERM)
                stopping = True
    code = trainer.wait()
    progress['train_minutes'] += (time.time() - started) / 60.0
    progress['step'] = latest_step(train_dir)
    save_progress(progress_path, progress)
    if code != 0:
        raise SystemExit('[finetune] the trainer failed (exit %d): see %s' % (code, log_path))
    return progress['step']


def evaluate(tfrecords_dir, train_dir, eval_dir):
    """eval_ssd_network.py on val; returns its results.json."""
    subprocess.run([sys.executable, 'eval_ssd_network.py', '--ckpt_path=%s' % train_dir,
                    '--dataset_dir=%s' % tfrecords_dir, '--dataset_name=vehicle',
                    '--split=val', '--output_dir=%s' % eval_dir],
                   cwd=REPO_ROOT, check=True)
    return read_json(os.path.join(eval_dir, 'results.json'), None)


def detect(options, train_dir, detections_dir):
    """detector.py on the street photos; returns the pictures it drew."""
    images = sorted(glob.glob(options.test_images)) if options.test_images else []
    if not images:
        log('no test images match %r: detector skipped' % options.test_images)
        return []
    os.makedirs(detections_dir, exist_ok=True)
    # detector.py takes a file or a folder: run it once per photo of the glob.
    for image in images:
        subprocess.run([sys.executable, 'detector.py', '--ckpt_path=%s' % train_dir,
                        '--image_path=%s' % image, '--output_dir=%s' % detections_dir,
                        '--select_threshold=%g' % options.detector_threshold, '--noshow'],
                       cwd=REPO_ROOT, check=True)
    return sorted(glob.glob(os.path.join(detections_dir, '*.png')))


def draw_errors(tfrecords_dir, run_dir, split='val'):
    """bench/error_crops.py on the run's detections of ``split`` (``<run_dir>/eval/``): the
    wrong detections and unfound objects per class; returns the sheets drawn."""
    output_dir = os.path.join(run_dir, 'error_crops')
    status = error_crops.main(['error_crops.py', '--detections_file=%s' % os.path.join(
        run_dir, 'eval', voc_metric.DETECTIONS_JSON), '--tfrecords_dir=%s' % tfrecords_dir,
        '--split=%s' % split, '--output_dir=%s' % output_dir])
    if status:
        log('error crops not drawn (exit %d)' % status)
        return []
    return sorted(glob.glob(os.path.join(output_dir, '*.png')))


OVERALL_TAGS = (('mAP@0.5 VOC07', 'mAP@0.5/VOC07'), ('mAP@[.5:.95] COCO', 'mAP@[.5:.95]/COCO'))


def class_tag(class_name):
    """The evaluation summaries' tag of a class's AP."""
    return 'AP@0.5_VOC07/%s' % class_name


def learning_curve_series(scalars, classes):
    """``{label: [(step, value)]}``: the overall mAPs, the mean AP of ``classes`` (at the steps
    where each has one) and each class's AP, from ``scalars`` (``{tag: [(step, value)]}``)."""
    series = collections.OrderedDict((label, scalars.get(tag, [])) for label, tag in OVERALL_TAGS)
    per_class = [dict(scalars.get(class_tag(name), [])) for name in classes]
    steps = sorted(set.intersection(*[set(values) for values in per_class])) if classes else []
    series['mAP@0.5 %s' % ', '.join(classes)] = [
        (step, sum(values[step] for values in per_class) / len(classes)) for step in steps]
    for name in classes:
        series['%s AP@0.5' % name] = scalars.get(class_tag(name), [])
    return series


def draw_learning_curve(run_dir, name, classes):
    """``<run_dir>/learning_curve.png``: val mAP, and the mean and each AP of ``classes`` (the
    classes with enough val objects), against the step, from the trainer's evaluation summaries
    (``eval_val/``); returns its path, or None without them."""
    from training import eval_summaries
    scalars = eval_summaries.read_scalars(
        eval_summaries.summary_dir(run_dir, 'val'),
        [tag for _, tag in OVERALL_TAGS] + [class_tag(c) for c in classes])
    if not any(scalars.values()):
        return None
    from utils import visualization
    return visualization.save_learning_curve(
        os.path.join(run_dir, 'learning_curve.png'), learning_curve_series(scalars, classes),
        'Fine-tuning on the vehicle photos (%s): val split' % name, ylabel='AP / mAP')


def check_flags(options):
    if not os.path.isdir(options.data_dir):
        raise cli.UsageError('--data_dir=%s: no such folder' % options.data_dir)
    if options.pre_trained_path and not os.path.exists(options.pre_trained_path + '.index'):
        raise cli.UsageError('--pre_trained_path=%s: no such checkpoint (%s.index not found)'
                             % (options.pre_trained_path, options.pre_trained_path))
    if options.max_number_of_steps < 1:
        raise cli.UsageError('--max_number_of_steps must be >= 1, got %d'
                             % options.max_number_of_steps)


def _benchmark(options):
    check_flags(options)
    results_dir = os.path.abspath(options.results_dir)
    records_dir = tfrecords_dir(results_dir)
    name = run_name(options)
    folder = run_dir(results_dir, name)
    progress_path = os.path.join(folder, 'progress.json')
    os.makedirs(folder, exist_ok=True)
    log('run %s in %s' % (name, folder))
    convert(options.data_dir, records_dir)
    step = latest_step(folder) if options.skip_training else \
        train(options, records_dir, folder, progress_path)
    if not step:
        raise ToolkitError('no checkpoint in %s to score' % folder)
    results = evaluate(records_dir, folder, os.path.join(folder, 'eval'))
    pictures = detect(options, folder, os.path.join(folder, 'detections'))
    pictures += draw_errors(records_dir, folder)
    curve = draw_learning_curve(folder, name, finetune_report.counted_classes(results))
    if curve:
        pictures.append(curve)
    finetune_report.report(options, name, results, step,
                           load_progress(progress_path)['train_minutes'], records_dir,
                           RECIPE + factor_args(options), BATCH_SIZE)
    log('pictures: %s' % (', '.join(pictures) or 'none'))
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
