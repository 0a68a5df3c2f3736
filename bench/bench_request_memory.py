r"""Peak memory of one serving_default request of many large images, without and with the
total-pixels-per-request limit (``--max_request_pixels`` of the model server and the export).

    python bench/bench_request_memory.py [--images=8] [--megapixels=6] [--limit_megapixels=20] \
        [--width_multiplier=0.125]

Exports a randomly initialised SSD-VGG300 (the network's width barely matters: the cost is in
decoding the images), then, in a fresh child process per case, loads it as the local server
does (``serving.server.servable.Servable``), builds ``--images`` JPEGs of ``--megapixels`` each
and sends them as one request: once with no total limit, once with ``--limit_megapixels``. The
child reports its peak resident memory (``ru_maxrss``) before and after the request. Prints
``[figure]`` lines; the first case's growth is what one such request costs, the second's is the
cost of refusing it.
"""
import json
import os
import subprocess
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench import common  # noqa: E402
from utils import cli  # noqa: E402

NO_LIMIT = 2 ** 62


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``): the request, the model, and the ones the
    benchmark gives its child processes."""
    flag_set = cli.FlagSet()
    flag_set.group('Request')
    flag_set.integer('images', 8, 'Images in the request.')
    flag_set.float('megapixels', 6., 'Pixels of each image, MP.')
    flag_set.float('limit_megapixels', 20., '--max_request_pixels of the limited case, MP.')
    flag_set.group('Model')
    flag_set.float('width_multiplier', 0.125, 'Width of the exported network.')
    flag_set.group('Internal')
    flag_set.string('child', None, 'Set by the benchmark itself: export folder whose one case '
                    'runs in this process.')
    flag_set.integer('max_request_pixels', NO_LIMIT, 'Set by the benchmark itself: the total '
                     'limit of the case run with --child.')
    return flag_set


def _photo(height, width, seed):
    """JPEG bytes of a smooth picture (compresses like a photo, decodes to full size)."""
    import cv2
    import numpy as np
    image = np.empty((height, width, 3), np.uint8)  # built in place: a small peak of its own
    image[..., 0] = ((np.arange(height) + seed) % 256).astype(np.uint8)[:, None]
    image[..., 1] = (np.arange(width) * 2 % 256).astype(np.uint8)[None, :]
    image[..., 2] = 128
    return cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def run_child(options):
    """One request in this process; prints the JSON of its memory figures."""
    import numpy as np
    from serving.errors import ServingError
    from serving.server import servable
    from serving.server.limits import DEFAULT_LIMITS
    side = int((options.megapixels * 1e6) ** 0.5)
    limits = DEFAULT_LIMITS._replace(max_image_pixels=NO_LIMIT, max_batch_rows=options.images,
                                     max_request_pixels=options.max_request_pixels)
    model = servable.Servable(options.child, 1, limits=limits)
    images = np.array([_photo(side, side, seed) for seed in range(options.images)], dtype=object)
    before = common.peak_memory_mb()
    try:
        model.run('serving_default', {'encoded_image': images})
        refused = None
    except ServingError as error:
        refused = error.message
    print(json.dumps({'before_mb': before, 'peak_mb': common.peak_memory_mb(),
                      'refused': refused, 'pixels': side * side * options.images}))


def _case(options, export_dir, max_request_pixels):
    command = [sys.executable, os.path.abspath(__file__), '--child=%s' % export_dir,
               '--images=%d' % options.images, '--megapixels=%g' % options.megapixels,
               '--max_request_pixels=%d' % max_request_pixels]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    out = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _benchmark(options):
    if options.child:
        run_child(options)
        return 0
    import export_saved_model
    from bench.bench_serving import random_checkpoint
    work = tempfile.mkdtemp(prefix='bench_request_memory_')
    ckpt = random_checkpoint(os.path.join(work, 'train'), options.width_multiplier)
    export_dir = export_saved_model.export(ckpt, os.path.join(work, 'export'), 'ssd', 1)
    limit = int(options.limit_megapixels * 1e6)
    note = '%d images of %g MP in one request, network width %g' % (
        options.images, options.megapixels, options.width_multiplier)
    for name, max_request_pixels in (('no_total_limit', NO_LIMIT), ('total_limit', limit)):
        result = _case(options, export_dir, max_request_pixels)
        outcome = 'refused' if result['refused'] else 'answered'
        detail = '%s; %s (limit %s pixels)' % (
            note, outcome, 'none' if max_request_pixels == NO_LIMIT else max_request_pixels)
        common.report('serving.request_peak_mb.%s' % name, result['peak_mb'], 'MiB', detail)
        common.report('serving.request_peak_growth_mb.%s' % name,
                      result['peak_mb'] - result['before_mb'], 'MiB',
                      'over the peak of the loaded server with the request built')
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
