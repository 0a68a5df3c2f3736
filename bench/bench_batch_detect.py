"""Batch detection throughput: ``batch_detect.py`` (Apache Beam's DirectRunner, one worker
process per core) beside ``detector.py --json`` on the same images and the same model (a random
full-width SSD-VGG300, exported for the Beam pipeline), each timed end to end as a user runs it
(process start, model load, every image, output written; detector.py also draws each picture).

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
from bench.bench_serving import random_checkpoint  # noqa: E402
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
        ckpt = random_checkpoint(os.path.join(work, 'train'), options.width_multiplier)
        version_dir = export_saved_model.export(ckpt, os.path.join(work, 'export'), 'ssd')
        detector_secs = _timed([sys.executable, 'detector.py', '--ckpt_path=%s' % ckpt,
                                '--image_path=%s' % images, '--json', '--noshow',
                                '--output_dir=%s' % os.path.join(work, 'detector')])
        beam_secs = _timed([sys.executable, 'batch_detect.py', '--model_dir=%s' % version_dir,
                            '--input_pattern=%s' % os.path.join(images, '*.jpg'),
                            '--output_path=%s' % os.path.join(work, 'beam.jsonl')])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    note = '%d images (%d x %d), width %g, end to end' % (count, options.copies, len(sources),
                                                          options.width_multiplier)
    common.report('detector_py_images_per_s', count / detector_secs, 'images/s', note)
    common.report('batch_detect_direct_runner_images_per_s', count / beam_secs, 'images/s',
                  note + ', %d worker processes' % (os.cpu_count() or 1))
    if options.report:
        machine = common.this_machine()
        common.write_report_section(options.report, TITLE, [
            '`python bench/bench_batch_detect.py --copies=%d` (%s, %s): %d JPEG images '
            '(the shared test images, %d copies), random full-width SSD-VGG300, each tool timed '
            'end to end as run (start, model load, all images, output).' % (
                options.copies, time.strftime('%Y-%m-%d'), 'machine shared with other work',
                count, options.copies),
            '',
            '| tool | wall s | images/s |',
            '|---|---|---|',
            '| `detector.py --json` (checkpoint, frozen weights; also draws each picture) '
            '| %.1f | %.2f |' % (detector_secs, count / detector_secs),
            '| `batch_detect.py` (SavedModel in RunInference, DirectRunner, %d worker processes) '
            '| %.1f | %.2f |' % (os.cpu_count() or 1, beam_secs, count / beam_secs),
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
