r"""Exports a trained SSD checkpoint as a TFLite detector for phones, cameras and small boards.

    python export_tflite.py --ckpt_path=ckpt/fine_tuning --export_dir=export/tflite \
        [--model_name=ssd_vgg_300] [--quantization=none|float16|int8] \
        [--calibration_dataset_dir=Images/tfrecords --calibration_split=train] \
        [--select_threshold=0.5] [--nms_threshold=0.45] [--max_detections=100]

Writes ``<export_dir>/<model_name>.tflite`` with ``model_info.json`` (class names, thresholds,
quantization) and ``labels.txt`` (one class name per line) beside it. The model:
- input: one RGB image ``[1, height, width, 3]`` at the network size (300x300 for SSD300),
  float32 pixels in [0, 255] (``none``, ``float16``) or uint8 (``int8``: a camera frame goes in
  as it is); the VGG mean subtraction is inside the model;
- outputs: the four of the ``TFLite_Detection_PostProcess`` op, as the Object Detection API's
  SSD models have them: boxes ``[1, K, 4]`` ``[ymin, xmin, ymax, xmax]`` normalised (not
  clipped), classes ``[1, K]`` (0 = the first class of model_info.json: background is dropped),
  scores ``[1, K]``, count ``[1]``, K = ``--max_detections``. The op decodes the box offsets
  against this network's anchors with its prior scaling and runs per-class NMS
  (``--nms_threshold``) on the class probabilities above ``--select_threshold``.

Quantization: ``none`` keeps float32; ``float16`` stores the weights in float16 (half the file,
float32 compute); ``int8`` is full-integer post-training quantization calibrated on
``--num_calibration_images`` images of a TFRecords split (``--calibration_dataset_dir``,
``--calibration_split``), weights and activations int8, the post-processing op in float.

With MediaPipe installed (tests and devices; see requirements-test-nodeps.txt) the file also
carries TFLite metadata (input normalisation, label map), so MediaPipe's ``ObjectDetector``
runs it with no code; without it the model is written without metadata and a note says so.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

tf_logging.start_tool(__name__)  # as a script: no TensorFlow C++ log lines

import numpy as np  # noqa: E402
import tensorflow as tf2  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402
from tensorflow.python.eager import context  # noqa: E402

from datasets import dataset_factory  # noqa: E402
from datasets import input_pipeline  # noqa: E402
from model import checkpoints  # noqa: E402
from model import inference  # noqa: E402
from model import model_info as model_info_lib  # noqa: E402
from nets import anchors as anchors_lib  # noqa: E402
from preprocessing import np_transform  # noqa: E402
from utils import cli  # noqa: E402
from utils import files  # noqa: E402
from utils import tf_errors  # noqa: E402
from utils import tf_logging  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402
from utils.ssd_defaults import NMS_THRESHOLD  # noqa: E402

QUANTIZATIONS = ('none', 'float16', 'int8')
# LiteRT 2.3.0's TFLite_Detection_PostProcess corrupted its heap (an abort a few runs later)
# with max_detections=200 and thousands of candidate boxes; 100, the Object Detection API's
# default, ran clean.
MAX_DETECTIONS = 100
POSTPROCESS_OP = 'TFLite_Detection_PostProcess'
LABELS_FILE = 'labels.txt'
# Names of the model's outputs in its signature; the tensors follow the op's ports in this order.
OUTPUT_KEYS = ('detection_boxes', 'detection_classes', 'detection_scores', 'num_detections')
_IMAGE, _BOX_ENCODINGS, _CLASS_PREDICTIONS = 'image', 'box_encodings', 'class_predictions'


class TFLiteExportError(ToolkitError, ValueError):
    """A checkpoint, calibration split or flag that makes the export impossible (exit 1)."""


def frozen_network(ckpt_path, uint8_input=False):
    """The network of a checkpoint as a frozen GraphDef for the TFLite converter.

    Input ``image`` float32 ``[1, height, width, 3]`` RGB pixels in [0, 255]; outputs
    ``box_encodings`` ``[1, N, 4]`` (each anchor's offsets in the op's order ``[dy, dx, dh, dw]``,
    this toolkit's being ``[dx, dy, dw, dh]``) and ``class_predictions`` ``[1, N, C]`` (softmax,
    class 0 = background), anchors in ``nets.anchors.flat_anchor_grid`` order. With
    ``uint8_input`` the input carries the fixed range [0, 255] (scale 1, zero point 0 once
    quantized), whatever the calibration images span.
    Returns ``(graph_def, net, info, checkpoint_prefix)``.
    """
    with tf.Graph().as_default() as graph:
        net, info, prefix = inference.load_model(ckpt_path)
        image = tf.placeholder(tf.float32, (1,) + np_transform.input_shape(net) + (3,), _IMAGE)
        pixels = (tf.quantization.fake_quant_with_min_max_args(image, 0., 255.)
                  if uint8_input else image)
        predictions, localisations = inference.network_outputs(
            net, pixels - np.asarray(np_transform.VGG_MEANS, np.float32))
        num_classes = info['num_classes']
        tf.concat([tf.reshape(p, [1, -1, num_classes]) for p in predictions], 1,
                  name=_CLASS_PREDICTIONS)
        offsets = tf.concat([tf.reshape(l, [1, -1, 4]) for l in localisations], 1)
        tf.gather(offsets, [1, 0, 3, 2], axis=-1, name=_BOX_ENCODINGS)
        with tf.Session(graph=graph) as sess:
            inference.restore(sess, prefix)
            graph_def = inference.frozen_graph_def(sess, [_BOX_ENCODINGS, _CLASS_PREDICTIONS])
    return graph_def, net, info, prefix


def center_anchors(params):
    """Every anchor of ``params`` (an SSDParams) as ``[N, 4]`` ``(ycenter, xcenter, h, w)``
    normalised, the op's anchor input, in the order of the network's flattened outputs."""
    return np.stack(anchors_lib.flat_anchor_grid(anchors_lib.anchors_all_layers(params)),
                    axis=1).astype(np.float32)


def postprocess_signature(num_classes, prior_scaling, select_threshold, nms_threshold,
                          max_detections):
    """The ``experimental_implements`` text that the converter turns into the op.

    ``num_classes`` counts real classes: the op skips the extra leading column of its score
    input (background). The scales divide the encodings: this network's offsets are the box
    offsets divided by ``prior_scaling`` ``(y, x, h, w)``, so the op's scales are its
    inverses. Regular (per-class) NMS, as nets/postprocess.py runs it.
    """
    attributes = [('max_detections', 'i', max_detections),
                  ('max_classes_per_detection', 'i', 1),
                  ('detections_per_class', 'i', max_detections),
                  ('use_regular_nms', 'b', 'true'),
                  ('nms_score_threshold', 'f', select_threshold),
                  ('nms_iou_threshold', 'f', nms_threshold),
                  ('num_classes', 'i', num_classes),
                  ('y_scale', 'f', 1. / prior_scaling[0]), ('x_scale', 'f', 1. / prior_scaling[1]),
                  ('h_scale', 'f', 1. / prior_scaling[2]), ('w_scale', 'f', 1. / prior_scaling[3])]
    return ' '.join(['name: "%s"' % POSTPROCESS_OP] +
                    ['attr { key: "%s" value { %s: %s } }' % (key, kind, value)
                     for key, kind, value in attributes])


def _detector_module(graph_def, input_shape, anchors, signature):
    """A ``tf.Module`` whose ``detect(image)`` runs the frozen network, then the op (a stub
    function carrying ``signature``: TensorFlow has no such op, TFLite has)."""
    spec = tf2.TensorSpec((1,) + tuple(input_shape) + (3,), tf2.float32, name=_IMAGE)
    network = tf.wrap_function(
        lambda image: tf.import_graph_def(graph_def, input_map={_IMAGE + ':0': image}, name='',
                                          return_elements=[_BOX_ENCODINGS + ':0',
                                                           _CLASS_PREDICTIONS + ':0']),
        [spec])

    @tf2.function(experimental_implements=signature)
    def postprocess(box_encodings, class_predictions, anchors):  # pylint: disable=unused-argument
        stub = tf2.constant(0.)
        return stub, stub, stub, stub

    class Detector(tf2.Module):
        @tf2.function(input_signature=[spec])
        def detect(self, image):
            box_encodings, class_predictions = network(image)
            outputs = postprocess(box_encodings, class_predictions, tf2.constant(anchors))
            return dict(zip(OUTPUT_KEYS, outputs))

    return Detector()


def convert(graph_def, input_shape, anchors, signature, quantization, calibration=None):
    """The ``.tflite`` bytes of the frozen network + op. ``calibration`` (int8): a callable
    returning an iterable of float32 ``[1, height, width, 3]`` images in [0, 255]."""
    with context.eager_mode():  # the converter traces functions: eager, whatever the caller runs
        module = _detector_module(graph_def, input_shape, anchors, signature)
        converter = tf2.lite.TFLiteConverter.from_concrete_functions(
            [module.detect.get_concrete_function()], module)
        converter.allow_custom_ops = True
        if quantization == 'float16':
            converter.optimizations = [tf2.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf2.float16]
        elif quantization == 'int8':
            converter.optimizations = [tf2.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([image] for image in calibration())
            converter.target_spec.supported_ops = [tf2.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf2.uint8
        with tf_logging.native_stderr_held():  # the quantizer prints its settings
            return converter.convert()


def calibration_split(dataset_dir, dataset_name, split):
    """The DatasetSpec of the calibration split; TFLiteExportError naming the flag when it is
    missing or empty."""
    if not dataset_dir:
        raise TFLiteExportError('--quantization=int8 needs --calibration_dataset_dir (TFRecords '
                                'of images like those the model will see)')
    if not os.path.isdir(dataset_dir):
        raise TFLiteExportError('--calibration_dataset_dir=%s: no such folder' % dataset_dir)
    try:
        spec = dataset_factory.get_dataset(dataset_name, split, dataset_dir)
    except dataset_factory.DatasetError as e:
        raise TFLiteExportError('--calibration_split: %s' % e)
    if not spec.num_samples:
        raise TFLiteExportError('--calibration_split: %s/%s holds no images'
                                % (dataset_dir, split))
    return spec


def calibration_images(spec, num_images, input_shape):
    """The first ``num_images`` images of ``spec`` as the uint8 model sees them: warp-resized
    to ``input_shape`` and rounded, float32 ``[1, height, width, 3]``."""
    with tf.Graph().as_default():
        example = tf.data.make_one_shot_iterator(
            input_pipeline.make_dataset(spec, shuffle=False, num_epochs=1)).get_next()
        with tf.Session() as sess:
            for _ in range(num_images):
                try:
                    image = sess.run(example['image'])
                except tf.errors.OutOfRangeError:
                    return
                pixels = np.round(np_transform.resize_bilinear(image, input_shape))
                yield pixels.astype(np.float32)[None]


def mediapipe_protobuf_compat():
    """Lets MediaPipe 0.10.21 (built for protobuf < 5) run beside TensorFlow's protobuf 7:
    its bindings still call ``MessageFactory.GetPrototype``, which protobuf 5 replaced by
    ``message_factory.GetMessageClass``. Call before importing MediaPipe."""
    from google.protobuf import message_factory
    if not hasattr(message_factory.MessageFactory, 'GetPrototype'):
        message_factory.MessageFactory.GetPrototype = (
            lambda self, descriptor: message_factory.GetMessageClass(descriptor))


def with_metadata(model, class_names):
    """``model`` bytes with MediaPipe object-detector metadata: float input normalisation
    mean 0, std 1 (the model takes [0, 255] pixels) and the label map ``class_names`` (id
    order, packed as ``labels.txt``); None when MediaPipe's metadata writer is not installed."""
    mediapipe_protobuf_compat()
    try:
        from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer
        from mediapipe.tasks.python.metadata.metadata_writers import object_detector
    except ImportError:
        return None
    labels = metadata_writer.Labels().add(list(class_names), exported_filename=LABELS_FILE)
    writer = object_detector.MetadataWriter.create_for_models_with_nms(
        bytearray(model), [0.], [1.], labels)
    return bytes(writer.populate()[0])


def export(ckpt_path, export_dir, model_name='ssd_vgg_300', quantization='none',
           select_threshold=0.5, nms_threshold=NMS_THRESHOLD, max_detections=MAX_DETECTIONS,
           calibration_dataset_dir=None, calibration_dataset_name=None,
           calibration_split_name='train', num_calibration_images=200):
    """Exports the checkpoint at ``ckpt_path``; returns ``(tflite path, has_metadata)``."""
    if quantization not in QUANTIZATIONS:
        raise TFLiteExportError('--quantization must be one of %s, got %r'
                                % ('|'.join(QUANTIZATIONS), quantization))
    if not model_name or os.sep in model_name or model_name in ('.', '..'):
        raise TFLiteExportError('--model_name must be a plain file name, got %r' % model_name)
    spec = None
    if quantization == 'int8':  # before the slow part: a bad split fails at once
        info = model_info_lib.read_model_info(checkpoints.resolve(ckpt_path))
        spec = calibration_split(calibration_dataset_dir,
                                 calibration_dataset_name or info.get('dataset_name', 'vehicle'),
                                 calibration_split_name)
    graph_def, net, info, prefix = frozen_network(ckpt_path, uint8_input=quantization == 'int8')
    input_shape = np_transform.input_shape(net)
    signature = postprocess_signature(info['num_classes'] - 1, net.params.prior_scaling,
                                      select_threshold, nms_threshold, max_detections)
    model = convert(graph_def, input_shape, center_anchors(net.params), signature, quantization,
                    lambda: calibration_images(spec, num_calibration_images, input_shape))
    described = with_metadata(model, info['class_names'])
    os.makedirs(export_dir, exist_ok=True)
    path = os.path.join(export_dir, model_name + '.tflite')
    files.write_bytes_atomically(path, described or model)
    files.write_text_atomically(os.path.join(export_dir, LABELS_FILE),
                                ''.join(name + '\n' for name in info['class_names']))
    model_info_lib.write_model_info(
        export_dir, **dict(info, checkpoint=os.path.basename(prefix), quantization=quantization,
                           tflite_file=os.path.basename(path), select_threshold=select_threshold,
                           nms_threshold=nms_threshold, max_detections=max_detections,
                           input_type='uint8' if quantization == 'int8' else 'float32',
                           calibration_images=num_calibration_images if spec else 0))
    return path, described is not None


def define_flags():
    """The exporter's own flags (a ``cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('Input')
    flag_set.checkpoint_path()
    flag_set.group('Output')
    flag_set.string('export_dir', os.path.join('export', 'tflite'),
                    'Folder of <model_name>.tflite, model_info.json and labels.txt.')
    flag_set.string('model_name', 'ssd_vgg_300', 'File name of the model, without .tflite.')
    flag_set.enum('quantization', 'none', QUANTIZATIONS,
                  'none: float32; float16: float16 weights; int8: full-integer, uint8 input.')
    flag_set.group('Post-processing inside the model (TFLite_Detection_PostProcess)')
    flag_set.thresholds(select_threshold=0.5)
    flag_set.integer('max_detections', MAX_DETECTIONS, 'Detections per image (K of the '
                     'outputs), and at most per class; at most %d.' % MAX_DETECTIONS)
    flag_set.group('Calibration (int8)')
    flag_set.string('calibration_dataset_dir', None, 'Folder of the TFRecords of the split.')
    flag_set.string('calibration_dataset_name', None,
                    'Dataset name of the shards (default: model_info.json\'s dataset_name).')
    flag_set.string('calibration_split', 'train', 'Split whose first images calibrate.')
    flag_set.integer('num_calibration_images', 200, 'Images that calibrate the int8 ranges.')
    return flag_set


def _export(options):
    tf.logging.set_verbosity(tf.logging.WARN)
    cli.check_checkpoint_path(options)
    cli.check_thresholds(options)
    if not 1 <= options.max_detections <= MAX_DETECTIONS:
        raise cli.UsageError('--max_detections must be in [1, %d], got %d'
                             % (MAX_DETECTIONS, options.max_detections))
    if options.num_calibration_images < 1:
        raise cli.UsageError('--num_calibration_images must be positive, got %d'
                             % options.num_calibration_images)
    if options.quantization == 'int8' and not options.calibration_dataset_dir:
        raise cli.UsageError('--quantization=int8 needs --calibration_dataset_dir (TFRecords of '
                             'images like those the model will see)')
    files.check_writable_dir(options.export_dir, '--export_dir')  # before the slow conversion
    try:
        path, described = export(
            options.ckpt_path, options.export_dir, options.model_name, options.quantization,
            options.select_threshold, options.nms_threshold, options.max_detections,
            options.calibration_dataset_dir, options.calibration_dataset_name,
            options.calibration_split, options.num_calibration_images)
    except tf.errors.OpError as e:
        raise TFLiteExportError(tf_errors.one_line(e))
    except OSError as e:  # an --export_dir that is a file, read-only, full
        raise TFLiteExportError('--export_dir=%s: cannot write %s: %s (nothing was exported)' % (
            options.export_dir, os.path.basename(e.filename or options.export_dir),
            e.strerror or e))
    if not described:
        print('note: MediaPipe is not installed, so %s carries no metadata (pip install '
              '--no-deps -r requirements-test-nodeps.txt adds it)' % path, file=sys.stderr)
    print('exported %s (%d bytes)' % (path, os.path.getsize(path)))
    return 0


main = cli.make_main(__doc__, define_flags, _export)


if __name__ == '__main__':
    sys.exit(main())
