"""Edge formats side by side: TFLite float32 / float16 / int8 beside the TF SavedModels.

    python bench/bench_tflite.py                       # bench_finetune.py's fine-tuned model
    python bench/bench_tflite.py --ckpt_path=DIR --tfrecords_dir=DIR --num_eval_images=8 \
        --repeats=3 --report=''                        # a quick check on any small model

From one checkpoint (default: the recipe run of ``bench_finetune.py``) it
exports the three TFLite models (``export_tflite.py``; int8 calibrated on
``--num_calibration_images`` of ``--calibration_split``) and the float32 and bfloat16
SavedModels (``export_saved_model.py``), then reports per format:
- model size (the ``.tflite`` file; a SavedModel's folder without ``assets.extra/``);
- batch-1 latency: the TFLite model in LiteRT (XNNPACK) with 1 and 2 threads, network and
  post-processing op, on one preprocessed val picture; a SavedModel's ``detected_model``
  signature (the network) with TensorFlow's default threads (all cores: TensorFlow fixes its
  thread pools for the whole process at its first session, so a session's own thread count
  does not hold; ``bench_threads.py`` times the network per thread setting, each in its own
  process). Formats are timed in interleaved rounds in this one process, the median of
  ``--repeats`` rounds each;
- mAP@0.5 (VOC07 11-point and VOC10+) on ``--split`` through eval_ssd_network.py's code: the
  TFLite models through ``--tflite_path``'s path, the SavedModels through the checkpoint in the
  same precision (the graph they hold).
It records the CPU's int8 / bfloat16 instructions (AVX2, AVX512-VNNI, AVX-VNNI, AMX-INT8,
AVX512-BF16) beside the figures and writes them into the "Edge formats" section of
``bench/REPORT.md`` (``--report=''`` to skip). Time it alone on the machine: shared cores make
every latency up to several times slower.
"""
import datetime
import glob
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

tf_logging.start_tool(__name__)  # as a script: no TensorFlow C++ log lines

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402
from tensorflow.python.util import deprecation  # noqa: E402

import detector  # noqa: E402
import export_saved_model  # noqa: E402
import export_tflite  # noqa: E402
from bench import bench_finetune  # noqa: E402
from bench import common  # noqa: E402
from datasets import dataset_factory  # noqa: E402
from datasets import input_pipeline  # noqa: E402
from model import checkpoints  # noqa: E402
from model import evaluation  # noqa: E402
from model import model_info  # noqa: E402
from preprocessing import np_transform  # noqa: E402
from model import tflite_runner  # noqa: E402
from utils import boxes as boxes_lib  # noqa: E402
from utils import cli  # noqa: E402
from utils import cpu_features  # noqa: E402
from utils.ssd_defaults import NMS_THRESHOLD  # noqa: E402

# Instructions that make int8 (VNNI, AMX) or bfloat16 arithmetic fast, as /proc/cpuinfo names them.
INSTRUCTIONS = (('AVX2', 'avx2'), ('AVX512-VNNI', 'avx512_vnni'), ('AVX-VNNI', 'avx_vnni'),
                ('AMX-INT8', 'amx_int8'), ('AVX512-BF16', 'avx512_bf16'))
THREADS = (1, 2)

def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``): the model and its data, then the measurement."""
    flag_set = cli.FlagSet()
    flag_set.group('Model and data')
    flag_set.string('ckpt_path', bench_finetune.run_dir(bench_finetune.RESULTS_DIR, 'recipe'),
                    'Checkpoint (prefix or training directory) to export; default: '
                    'bench_finetune.py\'s recipe run.')
    flag_set.string('tfrecords_dir', None, 'TFRecords of the splits (default: the nearest '
                    '<folder>/tfrecords above the checkpoint, where bench_finetune.py converts '
                    'them).')
    flag_set.string('dataset_name', 'vehicle', 'Dataset name of the shards.')
    flag_set.string('split', 'val', 'Split scored for mAP.')
    flag_set.string('calibration_split', 'train', 'Split whose first images calibrate int8.')
    flag_set.integer('num_calibration_images', 200, 'Images that calibrate int8.')
    flag_set.integer('num_eval_images', 0, 'Score only the first N images (0: the whole split).')
    flag_set.string('test_images', os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data',
                                                'test_images', 'vehicle_*.jpg'),
                    'Glob of photos on which MediaPipe (int8 model) and detector.py (checkpoint) '
                    'are compared.')
    flag_set.group('Measurement and report')
    flag_set.integer('repeats', 20, 'Timed rounds per format and thread count.')
    flag_set.string('work_dir', os.path.join(REPO_ROOT, 'bench', 'results', 'tflite'),
                    'Folder of the exports.')
    flag_set.string('report', os.path.join(REPO_ROOT, 'bench', 'REPORT.md'),
                    'Report whose "Edge formats" section receives the figures ("" to skip).')
    return flag_set

# mAP scoring keeps low scores, as eval_ssd_network.py does for a checkpoint.
EVAL_THRESHOLDS = dict(select_threshold=0.01, nms_threshold=NMS_THRESHOLD,
                       max_detections=export_tflite.MAX_DETECTIONS)


def cpu_instructions():
    """{name: present} of INSTRUCTIONS on this CPU (None values where /proc/cpuinfo is absent)."""
    flags_present = cpu_features.cpu_flags()
    return {name: None if flags_present is None else flag in flags_present
            for name, flag in INSTRUCTIONS}


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def first_image(spec):
    """The first picture of ``spec`` (uint8 [H, W, 3])."""
    with tf.Graph().as_default():
        example = tf.data.make_one_shot_iterator(
            input_pipeline.make_dataset(spec, shuffle=False, num_epochs=1)).get_next()
        with tf.Session() as sess:
            return sess.run(example['image'])


class SavedModelRunner(object):
    """The ``detected_model`` signature of a SavedModel in a session of the process's threads."""

    def __init__(self, export_dir):
        self.graph = tf.Graph()
        self.session = tf.Session(graph=self.graph)
        with deprecation.silence():  # the TF1 loader is the one TF Serving's graphs need
            meta = tf.saved_model.loader.load(self.session, ['serve'], export_dir)
        signature = meta.signature_def[export_saved_model.DETECTED_MODEL]
        self._input = signature.inputs['images'].name
        self._outputs = [info.name for info in signature.outputs.values()]

    def __call__(self, whitened):
        self.session.run(self._outputs, {self._input: whitened})


def export_all(options, ckpt_path, tfrecords_dir):
    """Exports every format; returns ({format: path}, {format: bytes})."""
    paths, sizes = {}, {}
    for quantization in export_tflite.QUANTIZATIONS:
        paths['tflite ' + quantization], _ = export_tflite.export(
            ckpt_path, os.path.join(options.work_dir, quantization), quantization=quantization,
            calibration_dataset_dir=tfrecords_dir, calibration_dataset_name=options.dataset_name,
            calibration_split_name=options.calibration_split,
            num_calibration_images=options.num_calibration_images, **EVAL_THRESHOLDS)
        sizes['tflite ' + quantization] = os.path.getsize(paths['tflite ' + quantization])
    for precision in cpu_features.PRECISIONS:
        name = 'SavedModel ' + precision
        paths[name] = export_saved_model.export(
            ckpt_path, os.path.join(options.work_dir, 'saved_model'), model_name=precision,
            model_version=1, overwrite=True, precision=precision)
        sizes[name] = folder_bytes(paths[name]) - folder_bytes(
            os.path.join(paths[name], model_info.ASSETS_EXTRA))
    return paths, sizes


def latencies(paths, image, input_shape, repeats):
    """{(format, threads): median seconds} of batch-1 runs, all formats and thread counts
    interleaved round by round; a SavedModel's threads are None (the process's)."""
    whitened, _ = np_transform.preprocess(image, input_shape)
    runs = {}
    for name, path in paths.items():
        if name.startswith('tflite'):
            for threads in THREADS:
                model = tflite_runner.TFLiteDetector(path, num_threads=threads)
                runs[name, threads] = (lambda m=model, x=model.network_input(image):
                                       m.raw_outputs(x))
        else:
            runs[name, None] = (lambda m=SavedModelRunner(path), x=whitened: m(x))
    # Two warm-up runs each: the first runs allocate and pack weights.
    return common.interleaved_median_seconds(runs, repeats, warmup=2)


def mean_ap(name, path, spec, prefix, max_images):
    """(VOC07, VOC10+ mAP@0.5, images) of one format on the first ``max_images`` (None: all) of
    ``spec``; a SavedModel's through the checkpoint ``prefix`` it was exported from."""
    if name.startswith('tflite'):
        metrics, _ = evaluation.evaluate_detector(
            tflite_runner.TFLiteDetector(path).detect_array, spec, 8, max_images)
    else:
        metrics = evaluation.evaluate_checkpoint(
            prefix, spec, 8, max_images, select_threshold=0.01,
            keep_top_k=EVAL_THRESHOLDS['max_detections'], precision=name.split()[-1]).metrics
    results = metrics.evaluate()
    return results['map_voc07'] or 0., results['map_voc2010'] or 0., results['num_images']


def mediapipe_agreement(tflite_path, prefix, image_paths, min_score=0.5, min_iou=0.9):
    """How many of ``detector.py``'s detections (checkpoint ``prefix``, scores >= ``min_score``)
    on ``image_paths`` MediaPipe's ObjectDetector finds in ``tflite_path`` (same class, IoU >=
    ``min_iou``): ``(found, total, MediaPipe's own count)``; None without MediaPipe."""
    export_tflite.mediapipe_protobuf_compat()
    try:
        import mediapipe
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core import base_options
    except ImportError:
        return None
    options = vision.ObjectDetectorOptions(
        base_options=base_options.BaseOptions(model_asset_path=tflite_path),
        score_threshold=min_score)
    reference = detector.Detector(prefix, select_threshold=min_score,
                                  keep_top_k=export_tflite.MAX_DETECTIONS)
    found = total = theirs = 0
    with vision.ObjectDetector.create_from_options(options) as mp_detector:
        for path in image_paths:
            with open(path, 'rb') as f:
                image, boxes, _, classes = reference.run(f.read())
            result = mp_detector.detect(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB,
                                                        data=np.ascontiguousarray(image)))
            mp_boxes = np.array([[d.bounding_box.origin_y, d.bounding_box.origin_x,
                                  d.bounding_box.origin_y + d.bounding_box.height,
                                  d.bounding_box.origin_x + d.bounding_box.width]
                                 for d in result.detections], np.float32).reshape(-1, 4)
            # MediaPipe names the class (from the label map) but leaves its index unset.
            mp_classes = np.array([reference.class_names.index(d.categories[0].category_name) + 1
                                   for d in result.detections])
            theirs += len(mp_classes)
            for box, label in zip(boxes, classes):
                same = mp_classes == label
                total += 1
                found += bool(same.any() and boxes_lib.iou(box[None], mp_boxes[same]).max()
                              >= min_iou)
    reference.close()
    return found, total, theirs


def nearest_tfrecords_dir(prefix):
    """The first ``<folder>/tfrecords`` holding a dataset description, from the checkpoint's
    folder upwards (a bench_finetune.py run: ``<results_dir>/runs/<name>[/best]/model.ckpt-N``,
    its records in ``<results_dir>/tfrecords``); the checkpoint's own ``tfrecords`` otherwise."""
    folder = os.path.dirname(os.path.abspath(prefix))
    while True:
        candidate = os.path.join(folder, 'tfrecords')
        if os.path.isfile(os.path.join(candidate, 'dataset_description.json')):
            return candidate
        if os.path.dirname(folder) == folder:
            return os.path.join(os.path.dirname(os.path.abspath(prefix)), 'tfrecords')
        folder = os.path.dirname(folder)


def _benchmark(options):
    try:
        prefix = checkpoints.resolve(options.ckpt_path)
    except checkpoints.CheckpointError as e:
        raise checkpoints.CheckpointError('--ckpt_path: %s (run bench/bench_finetune.py first, '
                                          'or point it at a checkpoint)' % e)
    print('checkpoint: %s' % prefix, flush=True)
    tfrecords_dir = options.tfrecords_dir or nearest_tfrecords_dir(prefix)
    spec = dataset_factory.get_dataset(options.dataset_name, options.split, tfrecords_dir)
    instructions = cpu_instructions()
    cpu = '%s, %s' % (common.this_machine().cpu, ', '.join(
        '%s %s' % (n, {True: 'yes', False: 'no', None: '?'}[v]) for n, v in instructions.items()))
    print('CPU: %s' % cpu, flush=True)
    paths, sizes = export_all(options, prefix, tfrecords_dir)
    input_shape = np_transform.input_shape(model_info.read_model_info(prefix))
    seconds = latencies(paths, first_image(spec), input_shape, options.repeats)
    maps = {name: mean_ap(name, path, spec, prefix, options.num_eval_images or None)
            for name, path in paths.items()}
    rows = ['| format | size MB | 1 thread ms | 2 threads ms | mAP VOC07 | mAP VOC10+ |',
            '|---|---|---|---|---|---|']
    for name in paths:
        saved_model = (name, None) in seconds   # timed with the process's threads
        times = ([None, seconds[name, None] * 1e3] if saved_model
                 else [seconds[name, threads] * 1e3 for threads in THREADS])
        rows.append('| %s | %.1f | %s | %s | %.4f | %.4f |' % (
            name, sizes[name] / 1e6, *['-' if ms is None else '%.1f' % ms for ms in times],
            maps[name][0], maps[name][1]))
        key = name.replace(' ', '_')
        common.report('edge_%s_size' % key, sizes[name] / 1e6, 'MB')
        if saved_model:
            common.report('edge_%s_latency_default_threads' % key, times[1], 'ms',
                          'batch 1, %d cores' % os.cpu_count())
        else:
            for threads, ms in zip(THREADS, times):
                common.report('edge_%s_latency_%dthread' % (key, threads), ms, 'ms', 'batch 1')
        common.report('edge_%s_map_voc07' % key, maps[name][0], 'mAP@0.5',
                      '%s, %d images' % (options.split, maps[name][2]))
    rows += ['', 'SavedModels run with TensorFlow\'s default threads (all %d cores), set once per '
             'process: no 1-thread figure.' % os.cpu_count()]
    print('\n'.join(rows))
    agreement = mediapipe_agreement(paths['tflite int8'], prefix, sorted(glob.glob(
        options.test_images)))
    if agreement is None:
        rows += ['', 'MediaPipe is not installed: its ObjectDetector was not compared.']
    else:
        rows += ['', 'MediaPipe ObjectDetector on the int8 model found %d of the %d detections '
                 '(score >= 0.5) detector.py makes with the checkpoint on %s (same class, IoU '
                 '>= 0.9); it returned %d in all.' % (agreement[:2] + (options.test_images,
                                                                          agreement[2]))]
        common.report('edge_mediapipe_int8_agreement', agreement[0] / max(agreement[1], 1),
                      'fraction', 'of %d detector.py detections' % agreement[1])
    print(rows[-1])
    if options.report:
        note = ('`python bench/bench_tflite.py`, %s, checkpoint %s, %s split (%d images), int8 '
                'calibrated on %d %s images; latency: median of %d interleaved batch-1 rounds. '
                'CPU: %s.' % (datetime.date.today().isoformat(), prefix, options.split,
                              maps[next(iter(maps))][2], options.num_calibration_images,
                              options.calibration_split, options.repeats, cpu))
        common.write_report_section(options.report, 'Edge formats', [note, ''] + rows)
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
