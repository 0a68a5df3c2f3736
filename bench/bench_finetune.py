"""Real-data benchmark: fine-tunes the full-width SSD300 from ImageNet VGG-16 on real vehicle photos.

    python bench/bench_finetune.py                          # the README recipe, 1600 steps
    python bench/bench_finetune.py --time_budget_minutes=60 # train at most an hour this sitting

1. converts the shared Open Images vehicle set (``--data_dir``, splits train and val) to TFRecords;
2. runs ``train_ssd_network.py`` exactly as a user would, with ``RECIPE`` (the README's
   fine-tuning recipe), from ``--pre_trained_path`` (conv-only VGG-16), printing progress and an
   ETA; stops cleanly (SIGTERM, final checkpoint) when ``--time_budget_minutes`` runs out;
3. scores the newest checkpoint on val with ``eval_ssd_network.py`` (mAP@0.5, VOC07 and VOC10+,
   per class, PR curves) and runs ``detector.py`` on the street photos;
4. prints its figures and writes them into the fine-tuning section of ``bench/REPORT.md``.

Everything stays in ``--results_dir`` (ignored by git): ``tfrecords/``, the checkpoints with
``model_info.json``, ``eval/``, ``detections/`` and ``progress.json`` (training minutes summed over
sittings). Rerunning continues the training where it stopped; a finished run is only re-scored.
Time it alone: two cores shared with anything else make every figure up to 2x slower.
"""
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

import tensorflow.compat.v1 as tf  # noqa: E402

from bench import common  # noqa: E402
from utils import files  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')
TRAINABLE_SCOPES = ','.join('ssd_300_vgg/%s' % s for s in (
    'conv4', 'conv5', 'conv6', 'conv7', 'block8', 'block9', 'block10', 'block11',
    'block4_box', 'block7_box', 'block8_box', 'block9_box', 'block10_box', 'block11_box'))
BATCH_SIZE = 8
# The README's fine-tuning recipe (command.sh runs the same flags on Images/).
RECIPE = [
    '--trainable_scopes=%s' % TRAINABLE_SCOPES,   # conv1-conv3 frozen: generic edges, 40 % of the cost
    '--weights_initializer=he',                   # conv6/conv7 and the extra blocks start fresh
    '--head_init_stddev=0.001',                   # ... and the heads predict ~nothing at first
    '--optimizer=adam', '--learning_rate=0.0001', '--warmup_steps=100',
    '--learning_rate_decay_type=polynomial', '--end_learning_rate=0.00001',
    '--num_epochs_per_decay=0',                   # the decay ends at --max_number_of_steps
    '--weight_decay=0.0005', '--batch_size=%d' % BATCH_SIZE,
    '--zoom_out=false', '--photometric_distortion=true',
    '--precision=bfloat16',
]
MIN_OBJECTS = 5   # val objects a class needs before its AP says much
STEP_LINE = re.compile(r'^step (\d+): loss ([\d.]+).*\| ([\d.]+) s/step')

flags = tf.app.flags
flags.DEFINE_string('results_dir', os.path.join(REPO_ROOT, 'bench', 'results', 'finetune'),
                    'Folder for records, checkpoints, evaluation and pictures (resumed on rerun).')
flags.DEFINE_string('data_dir', os.path.join(SHARED_DATA, 'vehicles_openimages'),
                    'VOC-layout vehicle folder with ImageSets/Main/train.txt and val.txt.')
flags.DEFINE_string('pre_trained_path',
                    os.path.join(SHARED_DATA, 'pretrained', 'vgg_16_imagenet_conv.ckpt'),
                    'ImageNet VGG-16 checkpoint (slim vgg_16 names) to start from.')
flags.DEFINE_string('test_images', os.path.join(SHARED_DATA, 'test_images', 'vehicle_*.jpg'),
                    'Glob of photos for detector.py.')
flags.DEFINE_integer('max_number_of_steps', 1600, 'Training steps of the whole run (the '
                     'learning-rate schedule ends there).')
flags.DEFINE_float('time_budget_minutes', 0, 'Stop training after this many minutes in this '
                   'sitting (0: no limit); rerun to continue.')
flags.DEFINE_boolean('skip_training', False, 'Only score the newest checkpoint.')
flags.DEFINE_float('detector_threshold', 0.5, 'Score threshold of the drawn detections.')
flags.DEFINE_string('report', os.path.join(REPO_ROOT, 'bench', 'REPORT.md'),
                    'Report whose fine-tuning section receives the figures ("" to skip).')
FLAGS = flags.FLAGS


def log(message):
    print('[finetune] %s' % message, flush=True)


def read_json(path, default):
    """The JSON content of ``path``, or ``default`` when it does not exist."""
    if not os.path.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def convert(tfrecords_dir):
    """Shared vehicle folder -> TFRecords of the train and val splits (skipped when present)."""
    done = read_json(os.path.join(tfrecords_dir, 'dataset_description.json'),
                     {'splits': {}})['splits']
    for split in ('train', 'val'):
        if split not in done:
            subprocess.run([sys.executable, 'datasets/write_dataset/dataset_to_tfrecords.py',
                            '--dataset_dir=%s' % FLAGS.data_dir, '--output_dir=%s' % tfrecords_dir,
                            '--dataset_name=vehicle', '--split=%s' % split],
                           cwd=REPO_ROOT, check=True)


def latest_step(train_dir):
    prefix = tf.train.latest_checkpoint(train_dir)
    return int(prefix.rsplit('-', 1)[1]) if prefix else 0


def load_progress(path):
    return read_json(path, {'train_minutes': 0.0})


def save_progress(path, progress):
    files.write_json_atomically(path, progress)


def train(tfrecords_dir, train_dir, progress_path):
    """Runs (or resumes) the trainer; returns the global step of the newest checkpoint."""
    progress = load_progress(progress_path)
    start_step = latest_step(train_dir)
    if start_step >= FLAGS.max_number_of_steps:
        log('training already finished at step %d' % start_step)
        return start_step
    command = [sys.executable, 'train_ssd_network.py', '--train_model_dir=%s' % train_dir,
               '--dataset_dir=%s' % tfrecords_dir, '--dataset_name=vehicle',
               '--train_or_test=train', '--pre_trained_path=%s' % FLAGS.pre_trained_path,
               '--max_number_of_steps=%d' % FLAGS.max_number_of_steps,
               '--clone_on_cpu', '--log_every_n_steps=10', '--save_interval_secs=600',
               '--save_summaries_secs=300'] + RECIPE
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=os.environ.get('TF_ENABLE_ONEDNN_OPTS', '1'),
               TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
    log('training from step %d to %d (%s)' % (start_step, FLAGS.max_number_of_steps,
                                             'resuming' if start_step else 'from VGG-16'))
    started = time.time()
    trainer = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    budget = FLAGS.time_budget_minutes * 60.0
    stopping = False
    log_path = os.path.join(train_dir, 'train.log')
    with open(log_path, 'a') as log_file:
        for line in trainer.stdout:
            log_file.write(line)
            match = STEP_LINE.match(line)
            if match:
                step, loss, sec_per_step = int(match.group(1)), float(match.group(2)), \
                    float(match.group(3))
                remaining = (FLAGS.max_number_of_steps - step) * sec_per_step / 60.0
                log('step %d/%d  loss %.3f  %.2f s/step  %.1f min so far, ETA %.0f min' % (
                    step, FLAGS.max_number_of_steps, loss, sec_per_step,
                    progress['train_minutes'] + (time.time() - started) / 60.0, remaining))
            elif line.startswith(('restored ', 'error', 'training stopped', 'SIG')):
                log(line.strip())
            if budget and not stopping and time.time() - started > budget:
                log('time budget of %g min reached: stopping with a final checkpoint'
                    % FLAGS.time_budget_minutes)
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


def detect(train_dir, detections_dir):
    """detector.py on the street photos; returns the pictures it drew."""
    images = sorted(glob.glob(FLAGS.test_images))
    if not images:
        log('no test images match %s: detector skipped' % FLAGS.test_images)
        return []
    os.makedirs(detections_dir, exist_ok=True)
    # detector.py takes a file or a folder: run it once per photo of the glob.
    for image in images:
        subprocess.run([sys.executable, 'detector.py', '--ckpt_path=%s' % train_dir,
                        '--image_path=%s' % image, '--output_dir=%s' % detections_dir,
                        '--select_threshold=%g' % FLAGS.detector_threshold, '--noshow'],
                       cwd=REPO_ROOT, check=True)
    return sorted(glob.glob(os.path.join(detections_dir, '*.png')))


def report(results, step, minutes):
    note = 'step %d of %d, %.0f min of training' % (step, FLAGS.max_number_of_steps, minutes)
    lines = ['Fine-tuning of the full-width SSD300 from `%s` on the shared vehicle photos '
             '(train 565 → val 63), `python bench/bench_finetune.py`: %s.' % (
                 os.path.basename(FLAGS.pre_trained_path), note), '',
             'Recipe: `%s`' % ' '.join(r for r in RECIPE if not r.startswith('--trainable')),
             ' with conv1–conv3 frozen.', '',
             '| class | objects | AP@0.5 VOC07 | AP@0.5 VOC10+ |', '|---|---|---|---|']
    for name, entry in sorted(results['classes'].items()):
        lines.append('| %s | %d | %.3f | %.3f |' % (name, entry['num_positives'],
                                                    entry['ap_voc07'], entry['ap_voc2010']))
    lines.append('| **mAP** | | **%.3f** | **%.3f** |' % (results['map_voc07'],
                                                        results['map_voc2010']))
    # Classes with one or two val objects score 0 or 1: say what the mean is without them.
    counted = [e for e in results['classes'].values() if e['num_positives'] >= MIN_OBJECTS]
    map_counted = sum(e['ap_voc07'] for e in counted) / max(len(counted), 1)
    lines += ['', 'The val split holds 1 Ambulance and 1 Motorcycle, whose AP can only be 0 or '
              'about 1; over the classes with at least %d val objects the VOC07 mAP is %.3f.'
              % (MIN_OBJECTS, map_counted)]
    common.report('finetune_steps', step, 'steps', note)
    common.report('finetune_train_minutes', minutes, 'min', note)
    common.report('finetune_map_voc07', results['map_voc07'], 'mAP@0.5', 'val split, ' + note)
    common.report('finetune_map_voc2010', results['map_voc2010'], 'mAP@0.5', 'val split, ' + note)
    common.report('finetune_map_voc07_classes_with_%d_objects' % MIN_OBJECTS, map_counted,
                  'mAP@0.5', ', '.join(sorted(n for n, e in results['classes'].items()
                                              if e['num_positives'] >= MIN_OBJECTS)))
    for name, entry in sorted(results['classes'].items()):
        common.report('finetune_ap07_%s' % name, entry['ap_voc07'], 'AP@0.5',
                      '%d val objects' % entry['num_positives'])
    if FLAGS.report:
        common.write_report_section(FLAGS.report, 'Fine-tuning on real vehicles', lines)


def main(_):
    for path, what in ((FLAGS.data_dir, '--data_dir'), (FLAGS.pre_trained_path + '.index',
                                                      '--pre_trained_path')):
        if not os.path.exists(path):
            print('error: %s: %s not found' % (what, path), file=sys.stderr)
            return 1
    results_dir = os.path.abspath(FLAGS.results_dir)
    tfrecords_dir = os.path.join(results_dir, 'tfrecords')
    progress_path = os.path.join(results_dir, 'progress.json')
    os.makedirs(results_dir, exist_ok=True)
    convert(tfrecords_dir)
    step = latest_step(results_dir) if FLAGS.skip_training else \
        train(tfrecords_dir, results_dir, progress_path)
    if not step:
        print('error: no checkpoint in %s to score' % results_dir, file=sys.stderr)
        return 1
    results = evaluate(tfrecords_dir, results_dir, os.path.join(results_dir, 'eval'))
    pictures = detect(results_dir, os.path.join(results_dir, 'detections'))
    report(results, step, load_progress(progress_path)['train_minutes'])
    log('pictures: %s' % ', '.join(pictures))
    return 0


if __name__ == '__main__':
    sys.exit(tf.app.run(main))
