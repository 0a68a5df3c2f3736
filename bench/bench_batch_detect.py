"""Batch detection throughput: ``batch_detect.py`` (Apache Beam's DirectRunner, one worker
process per core) beside ``detector.py --json`` and the local model server with batching, on the
same images and the same model (a random full-width SSD-VGG300 and its export). The two tools
are timed end to end as a user runs them (process start, model load, every image, output
written; detector.py also draws each picture); the server once it is up, one gRPC client per
core sending one JPEG a request.

    python bench/bench_batch_detect.py [--image_dir=../shared/data/test_images] [--copies=4]

Prints ``[figure]`` lines and writes the "Batch detection on Apache Beam" part of this machine's
section of bench/REPORT.md. Needs the Beam extra (requirements-beam.txt).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from utils import tf_logging  # noqa: E402

tf_logging.quiet_tensorflow()

from bench import common  # noqa: E402
from bench import bench_serving  # noqa: E402
from utils import cli  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_IMAGES = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'test_images')
TITLE = 'Batch detection on Apache Beam'


def define_flags():
    flag_set = cli.FlagSet()
    flag_set.group('Workload')
    flag_set.string('image_dir', DEFAULT_IMAGES, 'Folder of JPEG images to detect in.')
    flag_set.integer('copies', 4, 'Each image is detected this many times (copies of the folder).')
    flag_set.float('width_multiplier', 1.0, 'Width of the random SSD-VGG300.')
    flag_set.string('report', os.path.join(REPO_ROOT, 'bench', 'REPORT.md'),
                    'Report to write the figures into ("" : print only).')
    return flag_set


def _timed(command):
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    return time.perf_counter() - start


def _clients():
    return os.cpu_count() or 1


def _server_images_per_second(version_dir, paths):
    """Images per second through ``python -m serving.model_server --enable_batching``: each
    of ``_clients()`` gRPC clients sends its share of ``paths``, one JPEG per request."""
    import numpy as np
    from serving.clients import protocols
    requests = []
    for path in paths:
        with open(path, 'rb') as f:
            requests.append({'encoded_image': np.array([f.read()], dtype=object)})
    process, grpc_port, _ = bench_serving.start_model_server(os.path.dirname(version_dir),
                                                             ['--enable_batching'])
    try:
        return bench_serving.concurrent_rate(
            [protocols.GrpcTransport('127.0.0.1:%d' % grpc_port) for _ in range(_clients())],
            [requests[i::_clients()] for i in range(_clients())])
    finally:
        bench_serving.stop_model_server(process)


def _benchmark(options):
    import export_saved_model
    sources = sorted(glob.glob(os.path.join(options.image_dir, '*.jpg')))
    if not sources:
        raise cli.UsageError('--image_dir=%s holds no .jpg image' % options.image_dir)
    work = tempfile.mkdtemp(prefix='bench_batch_detect_')
    try:
        images = os.path.join(work, 'images')
        os.makedirs(images)
        for copy in range(options.copies):
            for path in sources:
                shutil.copy(path, os.path.join(images, '%d_%s' % (copy, os.path.basename(path))))
        count = len(sources) * options.copies
        ckpt = bench_serving.random_checkpoint(os.path.join(work, 'train'), options.width_multiplier)
        version_dir = export_saved_model.export(ckpt, os.path.join(work, 'export'),
                                                bench_serving.MODEL_NAME)
        detector_secs = _timed([sys.executable, 'detector.py', '--ckpt_path=%s' % ckpt,
                                '--image_path=%s' % images, '--json', '--noshow',
                                '--output_dir=%s' % os.path.join(work, 'detector')])
        beam_secs = _timed([sys.executable, 'batch_detect.py', '--model_dir=%s' % version_dir,
                            '--input_pattern=%s' % os.path.join(images, '*.jpg'),
                            '--output_path=%s' % os.path.join(work, 'beam.jsonl')])
        server_rate = _server_images_per_second(version_dir, sorted(glob.glob(
            os.path.join(images, '*.jpg'))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    note = '%d images (%d x %d), width %g, end to end' % (count, options.copies, len(sources),
                                                          options.width_multiplier)
    common.report('detector_py_images_per_s', count / detector_secs, 'images/s', note)
    common.report('batch_detect_direct_runner_images_per_s', count / beam_secs, 'images/s',
                  note + ', %d worker processes' % (os.cpu_count() or 1))
    common.report('local_server_batching_images_per_s', server_rate, 'images/s',
                  '%d images, one JPEG per gRPC request from %d clients, --enable_batching, '
                  'server started beforehand' % (count, _clients()))
    if options.report:
        machine = common.this_machine()
        common.write_report_section(options.report, TITLE, [
            '`python bench/bench_batch_detect.py --copies=%d` (%s): %d JPEG images (the shared '
            'test images, %d copies), random full-width SSD-VGG300; the two tools timed end to '
            'end as run (start, model load, all images, output), the local server once it '
            'is up.' % (options.copies, time.strftime('%Y-%m-%d'), count, options.copies),
            '',
            '| tool | wall s | images/s |',
            '|---|---|---|',
            '| `detector.py --json` (checkpoint, frozen weights; also draws each picture) '
            '| %.1f | %.2f |' % (detector_secs, count / detector_secs),
            '| `batch_detect.py` (SavedModel in RunInference, DirectRunner, %d worker processes) '
            '| %.1f | %.2f |' % (os.cpu_count() or 1, beam_secs, count / beam_secs),
            '| local model server, `--enable_batching`, %d gRPC clients (one JPEG a request) '
            '| %.1f | %.2f |' % (_clients(), count / server_rate, server_rate),
            '',
            'Random weights put many boxes above the 0.5 threshold, so the pictures detector.py '
            'draws weigh more here than with a trained model; batch_detect.py writes JSON only '
            'and runs one model per worker process.',
        ], machine=machine)
    return 0


def main(argv=None):
    return cli.run(argv, define_flags(), __doc__, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
