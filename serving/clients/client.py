r"""Python client of the exported SSD model, over gRPC or REST (library + CLI).

    python -m serving.client --server=localhost:8500 --protocol=grpc --model_name=ssd_vgg_300 \
        --image_path=picture.jpg [--signature=serving_default|detected_model] \
        [--model_info=export/ssd_vgg_300/1 | --labels_file=labels.txt]
    python -m serving.client --server=localhost:8501 --protocol=rest --model_name=ssd_vgg_300 \
        --num_tests=50 --dataset_dir=Images/tfrecords --dataset_name=vehicle

Both signatures end in the same ``Detections``: boxes ``[N, 4]`` ``[ymin, xmin, ymax, xmax]`` in
pixels of the original image, scores ``[N]`` (descending), class ids ``[N]`` (1..num_classes-1).
- ``serving_default`` sends the encoded JPEG/PNG bytes; the server does everything.
- ``detected_model`` preprocesses here in NumPy (``preprocessing.np_transform``: resize to the
  network input, VGG mean subtraction, as the graph's evaluation preprocessing), sends the float
  tensor, and post-processes the raw layer outputs with ``nets.np_postprocess`` and ``nets.anchors``.
NumPy + OpenCV (+ requests for REST, tensorflow-serving-api for gRPC) only: no TensorFlow graph.
"""
import collections
import os
import sys

import numpy as np

from model import model_info as model_info_lib
from nets import ssd_params
from preprocessing import np_transform
from serving.clients import protocols
from utils import cli
from utils import detection_io
from utils import exif
from utils.errors import ToolkitError
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K

SIGNATURES = ('serving_default', 'detected_model')
# The network detected_model serves (its input size, anchors and prior scaling).
PARAMS = ssd_params.SSD300_PARAMS

# JPEG quality of a photo re-encoded upright (high: the model sees nearly the original pixels).
UPRIGHT_JPEG_QUALITY = 95

Detections = collections.namedtuple('Detections', ['boxes', 'scores', 'classes'])


class ClientError(ToolkitError, ValueError):
    """Bad input to the client (flag, image, file); the message names it."""


def decode_image(data, name='image'):
    """Encoded JPEG/PNG bytes → RGB uint8 ``[H, W, 3]``, turned upright by its EXIF orientation
    (``utils.exif``), as photo viewers show it and as ``upright_bytes`` sends it."""
    import cv2
    array = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(array, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) \
        if array.size else None
    if image is None:
        raise ClientError('%s is not a JPEG or PNG image' % name)
    return exif.upright(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), exif.orientation(data))


def upright_bytes(data, name='image'):
    """The bytes to send for ``serving_default``: a JPEG whose EXIF orientation turns it,
    re-encoded upright (quality ``UPRIGHT_JPEG_QUALITY``, EXIF dropped); other bytes as they are.

    The served graph decodes the pixels as stored (it reads no EXIF), so clients send upright
    images and the boxes come back in the upright frame.
    """
    if exif.orientation(data) == exif.UPRIGHT:
        return data
    import cv2
    image = cv2.cvtColor(decode_image(data, name), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, UPRIGHT_JPEG_QUALITY])
    if not ok:
        raise ClientError('%s: cannot re-encode the upright picture' % name)
    return encoded.tobytes()


def preprocess(image, img_shape=PARAMS.img_shape):
    """RGB uint8 ``[H, W, 3]`` → float32 ``[*img_shape, 3]``: resize, minus the VGG means."""
    return np_transform.preprocess(image, img_shape)[0]


def load_class_names(model_info=None, labels_file=None):
    """Class names (id order, no background) from a model_info.json (file, export version folder
    or checkpoint folder) or a labels file; None when neither is given."""
    if labels_file:
        from datasets import dataset_config
        try:
            return dataset_config.read_labels_file(labels_file)
        except dataset_config.DatasetConfigError as e:
            raise ClientError(str(e))
    if not model_info:
        return None
    try:
        return list(model_info_lib.read_model_info(model_info)['class_names'])
    except model_info_lib.ModelInfoError as e:
        raise ClientError('--model_info: %s' % e)


class DetectionClient(object):
    """Turns images into ``Detections`` through a transport and one of the two signatures.

    ``select_threshold``, ``nms_threshold``, ``top_k``, ``keep_top_k`` apply to
    ``detected_model`` (the client post-processes); ``serving_default`` uses the thresholds
    baked in at export time.
    """

    def __init__(self, transport, model_name, signature='serving_default', version=None,
                 select_threshold=0.5, nms_threshold=NMS_THRESHOLD, top_k=TOP_K,
                 keep_top_k=KEEP_TOP_K):
        if signature not in SIGNATURES:
            raise ClientError('--signature must be one of %s, got %r'
                              % ('|'.join(SIGNATURES), signature))
        self.transport = transport
        self.model_name = model_name
        self.signature = signature
        self.version = version
        self.thresholds = dict(select_threshold=select_threshold, nms_threshold=nms_threshold,
                               top_k=top_k, keep_top_k=keep_top_k)
        self._anchors = None

    def detect(self, data, name='image'):
        """Encoded image bytes → ``Detections`` in pixels of that image turned upright by its
        EXIF orientation."""
        if self.signature == 'detected_model':
            return self.detect_array(decode_image(data, name))
        outputs = self.transport.predict(
            self.model_name, {'encoded_image': np.array([upright_bytes(data, name)], dtype=object)},
            'serving_default', self.version)
        count = int(np.asarray(outputs['num_detections']).reshape(-1)[0])
        return Detections(
            boxes=np.asarray(outputs['detection_boxes'], np.float32)[0, :count].reshape(-1, 4),
            scores=np.asarray(outputs['detection_scores'], np.float32)[0, :count],
            classes=np.asarray(outputs['detection_classes']).astype(np.int64)[0, :count])

    def raw_outputs(self, preprocessed):
        """``detected_model`` on one preprocessed float32 ``[300, 300, 3]`` image →
        ``(predictions, localisations)``: lists of 6 arrays ``[H_i, W_i, A_i, C]`` / ``[.., 4]``."""
        outputs = self.transport.predict(
            self.model_name, {'images': np.asarray(preprocessed, np.float32)},
            'detected_model', self.version)
        layers = sorted(int(k[len('predict'):]) for k in outputs if k.startswith('predict'))
        predictions = [np.asarray(outputs['predict%d' % i])[0] for i in layers]
        localisations = [np.asarray(outputs['local%d' % i])[0] for i in layers]
        return predictions, localisations

    def detect_array(self, image):
        """RGB uint8 ``[H, W, 3]`` → ``Detections``: ``detected_model`` + NumPy post-processing."""
        from nets import anchors as anchors_lib
        from nets import np_postprocess
        inputs, bbox_img = np_transform.preprocess(image, np_transform.input_shape(PARAMS))
        predictions, localisations = self.raw_outputs(inputs)
        if self._anchors is None:
            self._anchors = anchors_lib.anchors_all_layers(PARAMS)
        result = np_postprocess.detect(predictions, localisations, self._anchors,
                                       PARAMS.prior_scaling, bbox_img=bbox_img, **self.thresholds)
        count = int(result['num_detections'])
        return Detections(boxes=np_transform.to_pixels(result['detection_boxes'][:count],
                                                       image.shape[:2]),
                          scores=np.asarray(result['detection_scores'][:count], np.float32),
                          classes=np.asarray(result['detection_classes'][:count], np.int64))


def read_records(data_sources, limit):
    """The first ``limit`` records of TFRecord shards as ``datasets.records.parse_proto`` dicts:
    ``encoded`` bytes, ``filename``, ``height``, ``width``, ``bboxes [N, 4]`` normalised,
    ``labels [N]``, ``difficult [N]``, ``truncated [N]``.

    Reading TFRecords needs TensorFlow; only this evaluation mode imports it. A shard whose
    framing breaks raises ``records.CorruptRecordError`` naming it.
    """
    import itertools
    from datasets import records
    raws = itertools.chain.from_iterable(records.iter_records(path) for path in data_sources)
    for _, raw in itertools.islice(raws, limit):
        yield records.parse_proto(raw)


def evaluate(client, records, class_names=None):
    """Runs every record through ``client`` and scores the detections (Pascal VOC, IoU 0.5).

    Returns ``utils.voc_metric.VOCMetric.evaluate()``'s dict (``map_voc07``, ``map_voc2010``...).
    """
    from utils import voc_metric
    metric = voc_metric.VOCMetric(class_names=class_names)
    for index, record in enumerate(records):
        try:
            detections = client.detect(record['encoded'], record['filename'])
        except protocols.ServingError as e:
            if e.code not in ('INVALID_ARGUMENT', 400):
                raise
            raise ClientError('record of image %s: the server refused it: %s'
                              % (record['filename'], e.message))
        gt_boxes = np_transform.to_pixels(record['bboxes'], (record['height'], record['width']))
        metric.add(index, gt_boxes, record['labels'], record['difficult'],
                   detections.boxes, detections.scores, detections.classes)
    if metric.num_images == 0:
        raise ClientError('--num_tests: the split has no records')
    return metric.evaluate()


def define_flags():
    """The client's own flags (a ``utils.cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('Server')
    flag_set.string('server', 'localhost:8500', 'HOST:PORT of the model server '
                    '(TF Serving: 8500 for gRPC, 8501 for REST).')
    flag_set.enum('protocol', 'grpc', protocols.PROTOCOLS, 'Wire protocol.')
    flag_set.string('model_name', 'ssd_vgg_300', 'Model name on the server.')
    flag_set.integer('model_version', None, 'Version to query (default: the newest served).')
    flag_set.enum('signature', 'serving_default', SIGNATURES,
                  'serving_default sends the encoded image; detected_model sends the '
                  'preprocessed tensor and post-processes here.')
    flag_set.float('timeout', protocols.DEFAULT_TIMEOUT, 'Seconds to wait for one answer.')
    flag_set.group('Input')
    flag_set.string('image_path', None, 'An image file, or a folder whose images (%s) are all '
                    'processed.' % ', '.join(detection_io.IMAGE_EXTENSIONS))
    flag_set.group('Class names')
    flag_set.string('model_info', None, 'model_info.json, or the export version folder '
                    '(its assets.extra/model_info.json) or checkpoint folder holding it.')
    flag_set.string('labels_file', None, 'Class names, one per line (line 1 = id 1).')
    flag_set.group('Post-processing (detected_model only; serving_default has them baked in)')
    flag_set.postprocessing(select_threshold=0.5)
    flag_set.group('Evaluation through the server')
    flag_set.integer('num_tests', 0, 'Run this many records of a TFRecords split through the '
                     'server and print the mAP (instead of --image_path).')
    flag_set.string('dataset_dir', None, 'Folder of the TFRecord shards (--num_tests).')
    flag_set.string('dataset_name', 'vehicle', 'Dataset name of the shards (--num_tests).')
    flag_set.string('split', 'test', 'Split of the shards (--num_tests).')
    flag_set.deprecated_alias('dataset_split', 'split')
    return flag_set


def _run_images(client, options, class_names):
    images, others = detection_io.list_images(options.image_path)
    for path in others:
        print('error: %s: %s, skipped' % (path, detection_io.unsupported_reason(path)),
              file=sys.stderr)
    for path in images:
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except OSError as e:
            raise ClientError('--image_path %s: %s' % (path, e.strerror or e))
        height, width = decode_image(data, path).shape[:2]
        detections = client.detect(data, path)
        unnamed = sorted(set(int(label) for label in detections.classes
                             if class_names is not None and label > len(class_names)))
        if unnamed:
            raise ClientError('--labels_file %s names %d classes but the model detected class id '
                              '%d in %s: give the labels file of this model'
                              % (options.labels_file or options.model_info, len(class_names),
                                 unnamed[-1], path))
        print('\n'.join(detection_io.format_detections(
            os.path.basename(path), height, width, detections.boxes, detections.scores,
            detections.classes, class_names)))


def _run_evaluation(client, options, class_names):
    if not options.dataset_dir:
        raise ClientError('--num_tests needs --dataset_dir (folder of the TFRecord shards)')
    from datasets import dataset_factory
    try:
        spec = dataset_factory.get_dataset(options.dataset_name, options.split,
                                           options.dataset_dir)
    except ValueError as e:
        raise ClientError(str(e).splitlines()[0])
    class_names = class_names or list(spec.class_names)
    results = evaluate(client, read_records(spec.data_sources, options.num_tests), class_names)
    print('%d images of %s/%s through %s %s (%s)' % (
        results['num_images'], options.dataset_name, options.split, options.protocol,
        options.server, client.signature))
    for name, entry in results['classes'].items():
        if entry['ap_voc07'] is not None:
            print('  %-20s AP07 %.4f  AP10+ %.4f' % (name, entry['ap_voc07'], entry['ap_voc2010']))
    print('mAP VOC07 %.4f  VOC10+ %.4f'
          % (results['map_voc07'] or 0., results['map_voc2010'] or 0.))


def _detect(options):
    if not options.image_path and not options.num_tests:
        raise cli.UsageError('give --image_path (or --num_tests with --dataset_dir)')
    cli.check_postprocessing(options)
    class_names = load_class_names(options.model_info, options.labels_file)
    try:
        with protocols.make_transport(options.protocol, options.server,
                                      options.timeout) as transport:
            client = DetectionClient(transport, options.model_name, options.signature,
                                     options.model_version, options.select_threshold,
                                     options.nms_threshold, options.top_k, options.keep_top_k)
            if options.num_tests:
                _run_evaluation(client, options, class_names)
            else:
                _run_images(client, options, class_names)
    except protocols.ServingError as e:  # the server's status first: "error: 404: ..."
        raise ClientError(e.message if e.code is None else '%s: %s' % (e.code, e.message))
    return 0


main = cli.make_main(__doc__, define_flags, _detect)
