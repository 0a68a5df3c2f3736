"""Detects objects in images with a trained SSD checkpoint and draws them (docs/CONTRACT.md §7).

    python detector.py --ckpt_path=ckpt/fine_tuning --image_path=Images/test_images \
        [--output_dir=output/detections] [--select_threshold=0.5] [--json]

For each image (a file, or every file of a folder: JPEG, PNG, BMP, GIF and WebP are read, any
other file is reported with the reason): decode, turn upright by its EXIF orientation (boxes
and pictures as photo viewers show them), resize to 300×300, run the network, keep scores above
--select_threshold, non-maximum suppression, then print the detections (class, score, box
``[ymin, xmin, ymax, xmax]`` in pixels of the upright image) and save ``<output_dir>/<image name>.png`` with the boxes drawn (also shown on screen
when a display exists, unless --noshow). With --json, ``<output_dir>/detections.json`` holds them in
the detections-file format of utils/voc_metric.py (``eval_ssd_network.py --detections_file``).
With --annotations_dir, ``<annotations_dir>/<image name>.xml`` holds each image's detections as a
Pascal VOC annotation (``<filename>``, ``<size>``, one ``<object>`` per detection with 1-based
integer ``<bndbox>``, datasets/write_dataset/voc_writer.py), each file written whole or not at
all: open them in a labelling tool (labelImg, CVAT and Label Studio import VOC XML), correct them,
and convert the folder with datasets/write_dataset/dataset_to_tfrecords.py.

``--tflite_path`` runs a ``.tflite`` model (export_tflite.py) in LiteRT instead of a checkpoint;
its post-processing flags are the ones baked into the model at export.

Exit status: 0 when at least one image was processed (unreadable files are reported on stderr,
one line each, and skipped), 1 when the model cannot be loaded, no image could be processed or
--output_dir cannot be written (the picture being written is removed), 2 for bad flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from utils import cpu_features  # noqa: E402  (imports no TensorFlow)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

PRECISION = cpu_features.AUTO  # the default of --precision
tf_logging.start_tool(__name__, PRECISION)  # as a script: no TensorFlow C++ log lines

import tensorflow.compat.v1 as tf  # noqa: E402

from utils import cli  # noqa: E402
from utils import detection_io  # noqa: E402
from utils import exif  # noqa: E402
from utils import files  # noqa: E402
from utils import tf_errors  # noqa: E402
from model import inference  # noqa: E402
from model import tflite_runner  # noqa: E402
from datasets.write_dataset import voc_writer  # noqa: E402
from utils import visualization  # noqa: E402
from utils import voc_metric  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K  # noqa: E402

class DetectorError(cli.UsageError):
    """A flag problem that stops the whole run (one-line message, exit status 2)."""


def define_flags():
    """The detector's own flags (a ``cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('Model')
    flag_set.checkpoint_path()
    flag_set.tflite_path()
    flag_set.precision(PRECISION)
    flag_set.group('Input and output')
    flag_set.string('image_path', None, 'An image file, or a folder whose files are all '
                    'processed (%s) or reported.' % ', '.join(detection_io.IMAGE_EXTENSIONS))
    flag_set.string('output_dir', os.path.join('output', 'detections'),
                    'Folder for the annotated pictures (<image name>.png).')
    flag_set.boolean('json', False, 'Also write <output_dir>/%s (pixel boxes; eval_ssd_network.py '
                     '--detections_file reads it).' % voc_metric.DETECTIONS_JSON)
    flag_set.string('annotations_dir', None, 'Also write <annotations_dir>/<image name>.xml per '
                    'image: its detections above --select_threshold as a Pascal VOC annotation '
                    '(pre-labels to correct in labelImg, CVAT or Label Studio).')
    flag_set.boolean('show', True, 'Also show each picture on screen when a display exists '
                     '(ignored without one); --noshow to only save them.')
    flag_set.group('Post-processing')
    flag_set.postprocessing(select_threshold=0.5)
    return flag_set


def output_names(paths):
    """``<stem>.png`` per input; inputs sharing a stem (a.jpg, a.png) keep their extension."""
    stems = [os.path.splitext(os.path.basename(path))[0] for path in paths]
    names = []
    for path, stem in zip(paths, stems):
        if stems.count(stem) > 1:
            stem = visualization.safe_filename(os.path.basename(path))
        names.append(stem + '.png')
    return names


def _turn_upright(image, steps):
    """``utils.exif.UPRIGHT_STEPS`` in the graph: ``steps`` = boolean placeholders
    ``(transpose, flip up-down, flip left-right)`` applied to ``image [H, W, 3]``."""
    transpose, flip_ud, flip_lr = steps
    image = tf.cond(transpose, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)
    image = tf.cond(flip_ud, lambda: tf.reverse(image, [0]), lambda: image)
    return tf.cond(flip_lr, lambda: tf.reverse(image, [1]), lambda: image)


class Detector(object):
    """One inference graph and session for a checkpoint (its weights frozen into constants);
    ``run(encoded)`` per image."""

    def __init__(self, ckpt_path, select_threshold=0.5, nms_threshold=NMS_THRESHOLD, top_k=TOP_K,
                 keep_top_k=KEEP_TOP_K, precision='float32'):
        with tf.Graph().as_default():
            net, self.info, self.checkpoint = inference.load_model(ckpt_path)
            self._encoded = tf.placeholder(tf.string, [], name='encoded_image')
            self._upright_steps = [tf.placeholder_with_default(False, [], name=name) for name in
                                   ('transpose', 'flip_up_down', 'flip_left_right')]
            image = tf.io.decode_image(self._encoded, channels=3, expand_animations=False)
            image = _turn_upright(image, self._upright_steps)
            image.set_shape([None, None, 3])
            inputs, bbox_img = inference.preprocess_for_detection(image, net,
                                                                  self.info['model_name'])
            detections = inference.detect(net, inputs[None], tf.shape(image)[None, :2],
                                          select_threshold, nms_threshold, top_k, keep_top_k,
                                          precision=precision, bbox_img=bbox_img)
            self._fetches = {key: detections[key][0] for key in inference.DETECTION_KEYS}
            self._fetches['image'] = image
            self.session, (self._encoded, self._upright_steps, self._fetches) = \
                inference.restored_session(self.checkpoint,
                                           (self._encoded, self._upright_steps, self._fetches))
        self.graph = self.session.graph
        self.class_names = self.info['class_names']

    def run(self, encoded):
        """Encoded JPEG/PNG/BMP/GIF/WebP bytes → ``(image uint8 [H, W, 3] upright by its EXIF
        orientation, boxes [D, 4] pixels of that image, scores [D], classes [D])``. Raises
        ``tf.errors.InvalidArgumentError`` for bad bytes."""
        feed = dict(zip(self._upright_steps, exif.UPRIGHT_STEPS[exif.orientation(encoded)]))
        feed[self._encoded] = encoded
        with tf_logging.native_stderr_held():  # libjpeg's own lines about a bad image
            out = self.session.run(self._fetches, feed)
        count = int(out['num_detections'])
        return (out['image'], out['detection_boxes'][:count], out['detection_scores'][:count],
                out['detection_classes'][:count])

    def close(self):
        self.session.close()


class TFLiteDetector(Detector):
    """A ``.tflite`` model behind ``Detector``'s interface: images decoded by TensorFlow as
    there, detected by LiteRT."""

    def __init__(self, tflite_path):  # pylint: disable=super-init-not-called
        self.model = tflite_runner.TFLiteDetector(tflite_path)
        self.class_names = self.model.class_names
        self.graph = tf.Graph()
        with self.graph.as_default():
            self._encoded = tf.placeholder(tf.string, [], name='encoded_image')
            self._image = tf.io.decode_image(self._encoded, channels=3, expand_animations=False)
        self.session = tf.Session(graph=self.graph)

    def run(self, encoded):
        image = self.session.run(self._image, {self._encoded: encoded})
        return (image,) + tuple(self.model.detect_array(image))


def _check_flags(options):
    if options.ckpt_path and options.tflite_path:
        raise DetectorError('give --ckpt_path or --tflite_path, not both')
    if not options.tflite_path:
        cli.check_checkpoint_path(options)
    if not options.image_path:
        raise DetectorError('--image_path is required (an image file or a folder of images)')
    cli.check_postprocessing(options)


def _report_skipped(path, reason):
    print('error: %s: %s, skipped' % (path, reason), file=sys.stderr)


def _write_output(output_dir, path, write, *args, flag='output_dir'):
    """``write(temporary path, *args)``, then renamed to ``path``: a refused write (full disk...)
    or a Ctrl-C leaves no partial file, and a refused write stops the run with one line naming
    the folder's flag (``--output_dir``). Returns ``path``."""
    try:
        with files.atomic_path(path) as temporary:
            write(temporary, *args)
        return path
    except OSError as e:
        raise ToolkitError('--%s=%s: cannot write %s: %s'
                           % (flag, output_dir, os.path.basename(path), e.strerror or e))


def _write_annotation(annotations_dir, out_name, name, image, boxes, classes, class_names):
    """``<annotations_dir>/<out_name stem>.xml``: the detections of ``image`` as VOC XML."""
    text = voc_writer.detections_xml(name, image.shape[0], image.shape[1], boxes, classes,
                                     class_names)
    _write_output(annotations_dir, os.path.join(annotations_dir,
                                                os.path.splitext(out_name)[0] + '.xml'),
                  _write_text, text, flag='annotations_dir')


def _write_text(path, text):
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)


def detect_images(detector, paths, output_dir, show=False, annotations_dir=None):
    """Processes ``paths``; returns ``(entries for the detections file, failed paths)``. With
    ``annotations_dir``, also writes each image's detections there as VOC XML."""
    entries, failed = [], []
    for path, out_name in zip(paths, output_names(paths)):
        name = os.path.basename(path)
        try:
            with open(path, 'rb') as f:
                encoded = f.read()
            image, boxes, scores, classes = detector.run(encoded)
        except (OSError, tf.errors.InvalidArgumentError) as e:
            reason = (tf_errors.describe(e).cause if isinstance(e, tf.errors.OpError)
                      else e.strerror or str(e))
            _report_skipped(path, 'not a readable image (%s)' % reason)
            failed.append(path)
            continue
        print('\n'.join(detection_io.format_detections(name, image.shape[0], image.shape[1],
                                                       boxes, scores, classes,
                                                       detector.class_names)))
        picture = _write_output(output_dir, os.path.join(output_dir, out_name),
                                lambda target: visualization.save_detections(
                                    target, image, boxes, classes, scores, detector.class_names,
                                    title=name))
        if show:
            visualization.show_image(picture)
        if annotations_dir:
            _write_annotation(annotations_dir, out_name, name, image, boxes, classes,
                              detector.class_names)
        entries.append({'image': name, 'height': image.shape[0], 'width': image.shape[1],
                        'boxes': boxes, 'scores': scores, 'classes': classes})
    return entries, failed


def _run(options):
    _check_flags(options)
    paths, others = detection_io.list_images(options.image_path)
    folders = [(options.output_dir, '--output_dir')] + [
        (options.annotations_dir, '--annotations_dir')] * bool(options.annotations_dir)
    for folder, flag in folders:  # before the model loads; made once it has
        files.check_writable_dir(folder, flag)
    for path in others:
        _report_skipped(path, detection_io.unsupported_reason(path))
    try:
        detector = TFLiteDetector(options.tflite_path) if options.tflite_path else Detector(
            options.ckpt_path, options.select_threshold, options.nms_threshold, options.top_k,
            options.keep_top_k, options.precision)
    except tf.errors.OpError as e:
        raise ToolkitError('cannot load the model from %s: %s' % (
            options.ckpt_path or options.tflite_path, tf_errors.one_line(e)))
    try:
        for folder, flag in folders:
            files.make_writable_dir(folder, flag)
        entries, failed = detect_images(detector, paths, options.output_dir, options.show,
                                        options.annotations_dir)
    finally:
        detector.close()
    if options.json and entries:
        _write_output(options.output_dir,
                      os.path.join(options.output_dir, voc_metric.DETECTIONS_JSON),
                      voc_metric.write_detections_file, entries, detector.class_names)
    total = len(paths) + len(others)
    skipped = ['%d unreadable' % len(failed)] * bool(failed) + \
        ['%d not an image format read here' % len(others)] * bool(others)
    print('%d of %d file%s processed, pictures in %s%s'
          % (len(entries), total, '' if total == 1 else 's', options.output_dir,
             ' (skipped: %s)' % ', '.join(skipped) if skipped else ''), file=sys.stderr)
    return 0 if entries else 1


main = cli.make_main(__doc__, define_flags, _run)


if __name__ == '__main__':
    sys.exit(main())
