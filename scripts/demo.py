"""The main job end to end on generated sample data: ``./demo.sh`` (or ``.venv/bin/python scripts/demo.py``).

generate sample data → convert to TFRecords → train the reduced-width SSD300 → evaluate (mAP) →
detect on sample images → export a SavedModel → start the local model server → query it over
gRPC and REST → print where everything is. Each step runs the same command-line tool a user would
run, and a step whose result already exists is reused, so a rerun is quick.
"""
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


def _demo(options):
    # oneDNN kernels are off by default on some CPUs (AMD); they are faster for this network.
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    # Keep the demo's output to the tools' own progress and results (TensorFlow's C++ start-up
    # lines; the libraries' deprecation notices are silenced by utils/slim_compat.py).
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    work = os.path.abspath(options.work_dir)
    if options.fresh and os.path.isdir(work):
        shutil.rmtree(work)
    voc_dir = os.path.join(REPO_ROOT, 'Images', 'sample_vehicles')
    records_dir = os.path.join(REPO_ROOT, 'Images', 'tfrecords', 'sample_vehicles')
    train_dir = os.path.join(work, 'train')
    eval_dir = os.path.join(work, 'eval')
    detections_dir = os.path.join(work, 'detections')
    export_dir = os.path.join(work, 'export')
    model_name = 'ssd_vehicle'
    total = 8
    started = time.time()

    banner(1, total, 'generate sample data (VOC layout) in %s' % voc_dir)
    if os.path.isdir(os.path.join(voc_dir, 'Annotations')):
        print('reusing existing sample data')
    else:
        run('datasets/write_dataset/sample_data.py', '--output_dir=' + voc_dir,
            '--num_images=%d' % options.num_images, '--seed=0')

    banner(2, total, 'convert to TFRecords in %s' % records_dir)
    description = os.path.join(records_dir, 'dataset_description.json')
    existing = {}
    if os.path.isfile(description):
        with open(description) as f:
            existing = json.load(f).get('splits', {})
    for split in ('train', 'test'):
        if split in existing:
            print('reusing %s split (%d records)' % (split, existing[split]['num_samples']))
        else:
            run('datasets/write_dataset/dataset_to_tfrecords.py', '--dataset_dir=' + voc_dir,
                '--output_dir=' + records_dir, '--dataset_name=vehicle', '--split=' + split)

    banner(3, total, 'train the reduced-width SSD300 (resumes from %s if present)' % train_dir)
    settings = dict(TRAIN_SETTINGS, max_number_of_steps=str(options.max_number_of_steps))
    run('train_ssd_network.py', '--train_model_dir=' + train_dir, '--dataset_dir=' + records_dir,
        '--dataset_name=vehicle', '--train_or_test=train', '--model_name=ssd_vgg_300',
        '--save_interval_secs=120', '--log_every_n_steps=20',
        *['--%s=%s' % item for item in sorted(settings.items())])

    banner(4, total, 'evaluate on the held-out test split')
    run('eval_ssd_network.py', '--ckpt_path=' + train_dir, '--dataset_dir=' + records_dir,
        '--dataset_name=vehicle', '--split=test', '--output_dir=' + eval_dir)
    with open(os.path.join(eval_dir, 'results.json')) as f:
        results = json.load(f)

    banner(5, total, 'detect objects on sample images')
    sample_images = os.path.join(work, 'sample_images')
    os.makedirs(sample_images, exist_ok=True)
    with open(os.path.join(voc_dir, 'ImageSets', 'Main', 'test.txt')) as f:
        test_ids = [line.strip() for line in f if line.strip()][:4]
    for image_id in test_ids:
        shutil.copy(os.path.join(voc_dir, 'JPEGImages', image_id + '.jpg'), sample_images)
    run('detector.py', '--ckpt_path=' + train_dir, '--image_path=' + sample_images,
        '--output_dir=' + detections_dir, '--select_threshold=%g' % DETECTION_THRESHOLD, '--noshow')

    banner(6, total, 'export a versioned SavedModel to %s' % export_dir)
    version_dir = os.path.join(export_dir, model_name, '1')
    if os.path.isfile(os.path.join(version_dir, 'saved_model.pb')):
        print('reusing %s' % version_dir)
    else:
        run('export_saved_model.py', '--ckpt_path=' + train_dir, '--export_dir=' + export_dir,
            '--model_name=' + model_name, '--model_version=1',
            '--select_threshold=%g' % DETECTION_THRESHOLD)

    banner(7, total, 'start the local model server (TF Serving API)')
    grpc_port, rest_port = free_port(8500), free_port(8501)
    server = subprocess.Popen(
        [PYTHON, '-m', 'serving.model_server', '--port=%d' % grpc_port,
         '--rest_api_port=%d' % rest_port, '--model_name=' + model_name,
         '--model_base_path=' + os.path.join(export_dir, model_name)], cwd=REPO_ROOT)
    try:
        wait_for_server(server, rest_port, model_name)
        banner(8, total, 'query the served model over gRPC and REST')
        query_image = os.path.join(sample_images, test_ids[0] + '.jpg')
        for protocol, port in (('grpc', grpc_port), ('rest', rest_port)):
            run('-m', 'serving.client', '--server=127.0.0.1:%d' % port, '--protocol=' + protocol,
                '--model_name=' + model_name, '--image_path=' + query_image,
                '--model_info=' + version_dir)
    finally:
        server.terminate()
        server.wait(timeout=30)

    print('\n[demo] done in %.1f min' % ((time.time() - started) / 60))
    print('  mAP@0.5 on the test split: VOC07 %.3f, VOC10+ %.3f   (%s)' % (
        results['map_voc07'], results['map_voc2010'], os.path.join(eval_dir, 'results.json')))
    print('  pictures with detections:   %s' % detections_dir)
    print('  precision-recall curves:    %s' % eval_dir)
    print('  checkpoints + TensorBoard:  %s   (tensorboard --logdir %s)' % (train_dir, train_dir))
    print('  SavedModel:                 %s' % version_dir)
    return 0


def main(argv=None):
    """The command line: ``main(['demo.py', '--fresh'])`` → exit status."""
    try:
        return cli.run(argv, define_flags(), __doc__, _demo)
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
