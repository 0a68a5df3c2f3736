"""The main job end to end on generated sample data: ``./demo.sh`` (or ``.venv/bin/python scripts/demo.py``).

generate sample data → convert to TFRecords → train the reduced-width SSD300 → evaluate (mAP) →
detect on sample images → export a SavedModel → start the local model server → query it over
gRPC and REST → print where everything is. Each step runs the same command-line tool a user would
run, and a step whose result already exists is reused, so a rerun is quick.
"""
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
sys.path.insert(0, REPO_ROOT)

from utils import cli  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402

# Reduced width and schedule measured by bench/bench_learning.py: mAP@0.5 0.73-0.88 on the
# held-out generated images after 900 steps (about 7 minutes on 2 cores); the demo trains 1200. Colour tells the sample
# classes apart, so the photometric distortion (hue) and zoom-out are off for this data.
TRAIN_SETTINGS = {
    'width_multiplier': '0.125',
    'batch_size': '8',
    'max_number_of_steps': '1200',
    'optimizer': 'adam',
    'learning_rate': '0.002',
    'learning_rate_decay_type': 'polynomial',
    'end_learning_rate': '0.0001',
    'num_epochs_per_decay': '40',  # = steps * batch / 240 training images: decay ends at the last step
    'seed': '0',
    'weight_decay': '0.0001',
    'weights_initializer': 'he',
    'zoom_out': 'false',
    'photometric_distortion': 'false',
}


# The small demo network is less confident than a full SSD300: report detections from 0.3.
DETECTION_THRESHOLD = 0.3
MODEL_NAME = 'ssd_vehicle'


class DemoError(ToolkitError, RuntimeError):
    """A step of the demo failed (its own output says why)."""


def banner(step, total, title):
    print('\n[demo %d/%d] %s' % (step, total, title), flush=True)


def run(*args, capture=False):
    """Runs a tool from the repository root, streaming its output; stops the demo if it fails."""
    command = [PYTHON] + list(args)
    print('$ ' + ' '.join(os.path.relpath(a, REPO_ROOT) if a.startswith(REPO_ROOT) else a
                          for a in ['python'] + list(args)), flush=True)
    result = subprocess.run(command, cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        raise DemoError('step failed (exit %d): %s' % (result.returncode, ' '.join(args)))
    if capture:
        print(result.stdout, end='', flush=True)
    return result.stdout


def free_port(preferred):
    """``preferred`` if nothing listens there, else any free loopback port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise DemoError('no free port')


def wait_for_server(process, rest_port, model_name, timeout=120):
    import urllib.request
    deadline = time.time() + timeout
    url = 'http://127.0.0.1:%d/v1/models/%s' % (rest_port, model_name)
    while time.time() < deadline:
        if process.poll() is not None:
            raise DemoError('the model server exited with code %d' % process.returncode)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if b'AVAILABLE' in response.read():
                    return
        except OSError:
            pass
        time.sleep(1)
    raise DemoError('the model server did not report the model AVAILABLE within %d s' % timeout)


def define_flags():
    """The demo's own flags (a ``utils.cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Demo')
    flag_set.string('work_dir', os.path.join(REPO_ROOT, 'output', 'demo'),
                    'Where the demo writes data, checkpoints and results.')
    flag_set.integer('num_images', 300, 'Generated sample images.')
    flag_set.integer('max_number_of_steps', int(TRAIN_SETTINGS['max_number_of_steps']),
                     'Training steps.')
    flag_set.boolean('fresh', False, 'Delete the work dir first.')
    return flag_set


DemoPaths = collections.namedtuple(
    'DemoPaths', 'work voc records train eval detections sample_images export version')


def demo_paths(work_dir, model_name=MODEL_NAME):
    """Where each step reads and writes: generated data and TFRecords under Images/, the rest
    under ``work_dir``."""
    work = os.path.abspath(work_dir)
    export_dir = os.path.join(work, 'export')
    return DemoPaths(
        work=work, voc=os.path.join(REPO_ROOT, 'Images', 'sample_vehicles'),
        records=os.path.join(REPO_ROOT, 'Images', 'tfrecords', 'sample_vehicles'),
        train=os.path.join(work, 'train'), eval=os.path.join(work, 'eval'),
        detections=os.path.join(work, 'detections'),
        sample_images=os.path.join(work, 'sample_images'), export=export_dir,
        version=os.path.join(export_dir, model_name, '1'))


def generate_data(paths, options):
    if os.path.isdir(os.path.join(paths.voc, 'Annotations')):
        print('reusing existing sample data')
        return
    run('datasets/write_dataset/sample_data.py', '--output_dir=' + paths.voc,
        '--num_images=%d' % options.num_images, '--seed=0')


def convert(paths, options):
    description = os.path.join(paths.records, 'dataset_description.json')
    existing = {}
    if os.path.isfile(description):
        with open(description) as f:
            existing = json.load(f).get('splits', {})
    for split in ('train', 'test'):
        if split in existing:
            print('reusing %s split (%d records)' % (split, existing[split]['num_samples']))
        else:
            run('datasets/write_dataset/dataset_to_tfrecords.py', '--dataset_dir=' + paths.voc,
                '--output_dir=' + paths.records, '--dataset_name=vehicle', '--split=' + split)


def train(paths, options):
    settings = dict(TRAIN_SETTINGS, max_number_of_steps=str(options.max_number_of_steps))
    run('train_ssd_network.py', '--train_model_dir=' + paths.train,
        '--dataset_dir=' + paths.records, '--dataset_name=vehicle', '--train_or_test=train',
        '--model_name=ssd_vgg_300', '--save_interval_secs=120', '--log_every_n_steps=20',
        *['--%s=%s' % item for item in sorted(settings.items())])


def evaluate(paths, options):
    run('eval_ssd_network.py', '--ckpt_path=' + paths.train, '--dataset_dir=' + paths.records,
        '--dataset_name=vehicle', '--split=test', '--output_dir=' + paths.eval)


def held_out_images(paths, count=4):
    """The first ``count`` images of the test split, as file paths."""
    with open(os.path.join(paths.voc, 'ImageSets', 'Main', 'test.txt')) as f:
        ids = [line.strip() for line in f if line.strip()][:count]
    return [os.path.join(paths.voc, 'JPEGImages', image_id + '.jpg') for image_id in ids]


def detect(paths, options):
    os.makedirs(paths.sample_images, exist_ok=True)
    for image in held_out_images(paths):
        shutil.copy(image, paths.sample_images)
    run('detector.py', '--ckpt_path=' + paths.train, '--image_path=' + paths.sample_images,
        '--output_dir=' + paths.detections, '--select_threshold=%g' % DETECTION_THRESHOLD,
        '--noshow')


def export(paths, options):
    if os.path.isfile(os.path.join(paths.version, 'saved_model.pb')):
        print('reusing %s' % paths.version)
        return
    run('export_saved_model.py', '--ckpt_path=' + paths.train, '--export_dir=' + paths.export,
        '--model_name=' + MODEL_NAME, '--model_version=1',
        '--select_threshold=%g' % DETECTION_THRESHOLD)


def serve_and_query(paths, options):
    """Starts the local model server on the export, queries it over gRPC and REST with one test
    image, and stops it."""
    grpc_port, rest_port = free_port(8500), free_port(8501)
    server = subprocess.Popen(
        [PYTHON, '-m', 'serving.model_server', '--port=%d' % grpc_port,
         '--rest_api_port=%d' % rest_port, '--model_name=' + MODEL_NAME,
         '--model_base_path=' + os.path.dirname(paths.version)], cwd=REPO_ROOT)
    try:
        wait_for_server(server, rest_port, MODEL_NAME)
        query_image = held_out_images(paths, 1)[0]
        for protocol, port in (('grpc', grpc_port), ('rest', rest_port)):
            run('-m', 'serving.client', '--server=127.0.0.1:%d' % port, '--protocol=' + protocol,
                '--model_name=' + MODEL_NAME, '--image_path=' + query_image,
                '--model_info=' + paths.version)
    finally:
        server.terminate()
        server.wait(timeout=30)


# (title, step) in order; a title may name the paths.
STEPS = (
    ('generate sample data (VOC layout) in {voc}', generate_data),
    ('convert to TFRecords in {records}', convert),
    ('train the reduced-width SSD300 (resumes from {train} if present)', train),
    ('evaluate on the held-out test split', evaluate),
    ('detect objects on sample images', detect),
    ('export a versioned SavedModel to {export}', export),
    ('serve it with the local model server (TF Serving API) and query it over gRPC and REST',
     serve_and_query),
)


def print_summary(paths, minutes):
    with open(os.path.join(paths.eval, 'results.json')) as f:
        results = json.load(f)
    print('\n[demo] done in %.1f min' % minutes)
    print('  mAP@0.5 on the test split: VOC07 %.3f, VOC10+ %.3f   (%s)' % (
        results['map_voc07'], results['map_voc2010'], os.path.join(paths.eval, 'results.json')))
    print('  pictures with detections:   %s' % paths.detections)
    print('  precision-recall curves:    %s' % paths.eval)
    print('  checkpoints + TensorBoard:  %s   (tensorboard --logdir %s)' % (paths.train,
                                                                          paths.train))
    print('  SavedModel:                 %s' % paths.version)


def _demo(options):
    # oneDNN kernels are off by default on some CPUs (AMD); they are faster for this network.
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    # Keep the demo's output to the tools' own progress and results (TensorFlow's C++ start-up
    # lines; the libraries' deprecation notices are silenced by utils/slim_compat.py).
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    paths = demo_paths(options.work_dir)
    if options.fresh and os.path.isdir(paths.work):
        shutil.rmtree(paths.work)
    started = time.time()
    for number, (title, step) in enumerate(STEPS, 1):
        banner(number, len(STEPS), title.format(**paths._asdict()))
        step(paths, options)
    print_summary(paths, (time.time() - started) / 60)
    return 0


def main(argv=None):
    """The command line: ``main(['demo.py', '--fresh'])`` → exit status."""
    try:
        return cli.run(argv, define_flags(), __doc__, _demo)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
