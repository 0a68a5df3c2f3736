r"""Exports an SSD checkpoint as a versioned SavedModel for TF Serving (docs/CONTRACT.md §8).

    python export_saved_model.py --ckpt_path=ckpt/fine_tuning --export_dir=export \
        --model_name=ssd_vgg_300 [--model_version=N] [--overwrite]

Writes ``<export_dir>/<model_name>/<version>/`` (tag ``serve``) with two signatures in one graph
that share the variables:
- ``detected_model``: the raw network on one preprocessed image, input ``images`` float32
  ``[300, 300, 3]`` (RGB minus the VGG means), outputs ``predict0..5`` ``[1, H_i, W_i, A_i, C]``
  and ``local0..5`` ``[1, H_i, W_i, A_i, 4]``.
- ``serving_default``: input ``encoded_image`` string ``[-1]`` (JPEG or PNG bytes, any size up
  to ``--max_image_pixels``, and ``--max_request_pixels`` for all the images of one request:
  larger ones are refused with InvalidArgument before they are decoded, from the size their
  headers declare), outputs ``detection_boxes`` float32 ``[-1, K, 4]``
  (``[ymin, xmin, ymax, xmax]`` in pixels of each input image as sent: the graph reads no EXIF
  orientation, so clients send upright pictures, as ``serving.client`` and the web page do),
  ``detection_scores`` ``[-1, K]``, ``detection_classes`` int64 ``[-1, K]``,
  ``num_detections`` int32 ``[-1]``; rows past ``num_detections`` are zero.
plus ``assets.extra/model_info.json`` (class names for clients). ``--precision=bfloat16`` makes
the graph itself compute in bfloat16 (faster on CPUs with AVX512_BF16/AMX, for TF Serving too);
the signatures are the same. The version is written into a
temporary sibling folder with a non-integer name (servers ignore those) and renamed when complete.
"""
import functools
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

PRECISION = 'float32'  # --precision's default: the serving machine may differ
tf_logging.start_tool(__name__, PRECISION)  # as a script: no TensorFlow C++ log lines

import tensorflow.compat.v1 as tf  # noqa: E402
from tensorflow.python.util import deprecation  # noqa: E402

from preprocessing import transform  # noqa: E402
from utils import cli  # noqa: E402
from utils import files  # noqa: E402
from utils import image_header  # noqa: E402
from utils import tf_errors  # noqa: E402
from model import inference  # noqa: E402
from model import model_info as model_info_lib  # noqa: E402
from model import versions  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K  # noqa: E402

DETECTED_MODEL = 'detected_model'
SERVING_DEFAULT = 'serving_default'
# Ops that run Python: TF Serving's C++ runtime cannot execute them.
FORBIDDEN_OPS = frozenset(['PyFunc', 'PyFuncStateless', 'EagerPyFunc'])
DETECTION_KEYS = inference.DETECTION_KEYS


class ExportError(ToolkitError, ValueError):
    """A flag or an export folder that makes the export impossible (exit status 1)."""


def existing_versions(model_dir):
    """Sorted versions present in ``model_dir`` (folders that are not versions are ignored)."""
    return sorted(versions.scan_versions(model_dir))


def choose_version(model_dir, requested=None, overwrite=False):
    """The version to write: ``requested`` (an int > 0) or the next after the newest existing.

    Raises ExportError when ``requested`` exists and ``overwrite`` is False.
    """
    if requested is None:
        existing = existing_versions(model_dir)
        return existing[-1] + 1 if existing else 1
    if not 1 <= requested <= versions.MAX_VERSION:
        raise ExportError('--model_version must be a positive int64, got %d' % requested)
    if os.path.exists(os.path.join(model_dir, str(requested))) and not overwrite:
        raise ExportError('version %d already exists in %s: pass --overwrite to replace it, or '
                          'omit --model_version to write version %d'
                          % (requested, model_dir, choose_version(model_dir)))
    return requested


def forbidden_ops(graph_def):
    """Names of Python-backed ops in ``graph_def`` or its function library (should be empty)."""
    ops = set(node.op for node in graph_def.node)
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    return sorted(ops & FORBIDDEN_OPS)


def _header_size(encoded):
    """int64 ``[height, width]`` an encoded image declares in its header, read without decoding
    through ``image_header.FORMATS`` (the table the server's own check reads), JPEG's through
    ``extract_jpeg_shape``; ``[0, 0]`` for other bytes (``decode_image`` then refuses them)."""
    length = image_header.HEADER_BYTES
    # Zero-padded to the bytes the table reads, so that short inputs index safely.
    padded = tf.strings.join([tf.strings.substr(encoded, 0, length), b'\0' * length])
    head = tf.cast(tf.io.decode_raw(padded, tf.uint8)[:length], tf.int64)

    def matches(pairs):
        return tf.reduce_all([tf.equal(tf.strings.substr(padded, offset, len(magic)), magic)
                              for offset, magic in pairs])

    def value(field):
        weights = [256 ** (i if field.byte_order == 'little' else field.size - 1 - i)
                   for i in range(field.size)]
        number = tf.reduce_sum(head[field.offset:field.offset + field.size] *
                               tf.constant(weights, tf.int64))
        if field.signed:
            bits = 8 * field.size
            number = tf.abs(tf.where(number >= 2 ** (bits - 1), number - 2 ** bits, number))
        number = tf.bitwise.right_shift(number, field.shift)
        if field.mask is not None:
            number = tf.bitwise.bitwise_and(number, field.mask)
        return number + field.add

    size = tf.zeros([2], tf.int64)
    # Reversed, so that the first format and layout that match win, as in the NumPy reader.
    for fmt in reversed(image_header.FORMATS):
        for layout in reversed(fmt.layouts):
            size = tf.where(matches(fmt.signature + layout.when),
                            tf.stack([value(layout.height), value(layout.width)]), size)
    return tf.cond(matches(image_header.JPEG.signature),
                   lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64),
                   lambda: size)


def _assert_pixels(size, max_image_pixels, when):
    """An Assert op (InvalidArgument) refusing ``size`` ``[height, width]`` above
    ``max_image_pixels`` pixels; ``when`` says where the size was read."""
    size = tf.cast(size, tf.int64)
    message = tf.strings.format(
        'encoded_image: image of {}x{} pixels (%s) exceeds the limit of %d pixels (%s)'
        % (when, max_image_pixels, image_header.PIXELS_FLAG), [size[1], size[0]])
    pixels = tf.cast(size[0], tf.float64) * tf.cast(size[1], tf.float64)  # no int64 overflow
    return tf.debugging.Assert(pixels <= max_image_pixels, [message])


@tf.autograph.experimental.do_not_convert
def _decode_and_preprocess(encoded, net, max_image_pixels):
    """One encoded image → (network input float32 ``[*img_shape, 3]`` of ``net``, original
    (height, width) int32, ``bbox_img`` float32 [4]).

    An image above ``max_image_pixels`` is refused from its header before it is decoded, and
    again once decoded, before it is resized (a header that understates the size).
    Built as plain graph code: autograph (map_fn's default) would rewrite the Python of the
    preprocessing module, which is written for graph mode, not for it.
    """
    header_check = _assert_pixels(_header_size(encoded), max_image_pixels, 'from its header')
    with tf.control_dependencies([header_check]):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    with tf.control_dependencies([_assert_pixels(tf.shape(image)[:2], max_image_pixels,
                                                 'decoded')]):
        image = tf.identity(image)
    inputs, bbox_img = inference.preprocess_for_detection(image, net)
    return inputs, tf.shape(image)[:2], bbox_img


def _assert_request_pixels(encoded, max_request_pixels, max_image_pixels):
    """An Assert op (InvalidArgument) refusing a batch of encoded images whose headers declare
    more than ``max_request_pixels`` pixels together, before any of them is decoded (an image
    above ``max_image_pixels`` is left to its own, more precise, refusal)."""
    sizes = tf.cast(tf.map_fn(tf.autograph.experimental.do_not_convert(_header_size), encoded,
                              back_prop=False, fn_output_signature=tf.int64), tf.float64)
    pixels = sizes[:, 0] * sizes[:, 1]
    total = tf.reduce_sum(pixels)
    message = tf.strings.format(
        'encoded_image: the images of one request hold {} pixels, more than the limit of %d (%s)'
        % (max_request_pixels, image_header.REQUEST_PIXELS_FLAG), [tf.cast(total, tf.int64)])
    return tf.debugging.Assert(tf.logical_or(total <= max_request_pixels,
                                             tf.reduce_any(pixels > max_image_pixels)), [message])


def _tensor_info(tensor):
    """The SignatureDef entry of ``tensor``, through the TF1 builder API this export is made
    with (docs/CONTRACT.md §8); TensorFlow would call it deprecated on every export."""
    with deprecation.silence():
        return tf.saved_model.utils.build_tensor_info(tensor)


def build_signatures(net, select_threshold=0.5, nms_threshold=NMS_THRESHOLD, top_k=TOP_K,
                     keep_top_k=KEEP_TOP_K, precision='float32',
                     max_image_pixels=image_header.DEFAULT_MAX_IMAGE_PIXELS,
                     max_request_pixels=image_header.DEFAULT_MAX_REQUEST_PIXELS):
    """Builds both signatures in the default graph; returns ``{name: SignatureDef}``.

    ``detected_model`` creates the variables; ``serving_default`` reuses them on the batch of
    images that ``tf.map_fn`` decoded and preprocessed one by one (each has its own size). With
    ``precision='bfloat16'`` both networks compute in bfloat16 (casts in the graph, float32
    variables), while every signature input and output keeps its float32 dtype.
    """
    info = _tensor_info
    predict = tf.saved_model.signature_constants.PREDICT_METHOD_NAME

    img_shape = transform.input_shape(net)
    image = tf.placeholder(tf.float32, img_shape + (3,), name='images')
    raw = inference.detect(net, tf.expand_dims(image, 0), tf.constant([img_shape], tf.int32),
                           precision=precision)
    raw_outputs = {}
    for i, (prediction, localisation) in enumerate(zip(raw['predictions'], raw['localisations'])):
        raw_outputs['predict%d' % i] = info(prediction)
        raw_outputs['local%d' % i] = info(localisation)
    detected_model = tf.saved_model.signature_def_utils.build_signature_def(
        inputs={'images': info(image)}, outputs=raw_outputs, method_name=predict)

    encoded = tf.placeholder(tf.string, [None], name='encoded_image')
    with tf.control_dependencies([_assert_request_pixels(encoded, max_request_pixels,
                                                         max_image_pixels)]):
        images, shapes, windows = tf.map_fn(
            functools.partial(_decode_and_preprocess, net=net, max_image_pixels=max_image_pixels),
            encoded, back_prop=False, fn_output_signature=(tf.float32, tf.int32, tf.float32))
    detections = inference.detect(net, images, shapes, select_threshold=select_threshold,
                                  nms_threshold=nms_threshold, top_k=top_k,
                                  keep_top_k=keep_top_k, reuse=True, precision=precision,
                                  bbox_img=windows)
    serving_default = tf.saved_model.signature_def_utils.build_signature_def(
        inputs={'encoded_image': info(encoded)},
        outputs={key: info(detections[key]) for key in DETECTION_KEYS}, method_name=predict)
    return {SERVING_DEFAULT: serving_default, DETECTED_MODEL: detected_model}


def _signature_tensors(graph, signatures):
    """Every input and output tensor of ``signatures`` ({name: SignatureDef}) in ``graph``."""
    return [graph.get_tensor_by_name(info.name) for signature in signatures.values()
            for infos in (signature.inputs, signature.outputs) for info in infos.values()]


def _write_model_info(version_dir, info, thresholds):
    assets = os.path.join(version_dir, model_info_lib.ASSETS_EXTRA)
    os.makedirs(assets, exist_ok=True)
    model_info_lib.write_model_info(assets, **dict(info, **thresholds))


def export(ckpt_path, export_dir, model_name, model_version=None, overwrite=False,
           select_threshold=0.5, nms_threshold=NMS_THRESHOLD, top_k=TOP_K, keep_top_k=KEEP_TOP_K,
           precision='float32', max_image_pixels=image_header.DEFAULT_MAX_IMAGE_PIXELS,
           max_request_pixels=image_header.DEFAULT_MAX_REQUEST_PIXELS, freeze_weights=True):
    """Exports the checkpoint at ``ckpt_path`` (prefix or directory); returns the version folder.

    ``freeze_weights``: the weights become constants of the graph (bfloat16 ones in a bfloat16
    export) and ``variables/`` stays empty; otherwise they are float32 variables.
    """
    if not model_name or os.sep in model_name or model_name in ('.', '..'):
        raise ExportError('--model_name must be a plain folder name, got %r' % model_name)
    model_dir = os.path.join(export_dir, model_name)
    new_folders = [folder for folder in (export_dir, model_dir) if not os.path.isdir(folder)]
    version = choose_version(model_dir, model_version, overwrite)
    final_dir = os.path.join(model_dir, str(version))
    tmp_dir = os.path.join(model_dir, '.tmp-%d-%d' % (version, os.getpid()))
    thresholds = dict(select_threshold=select_threshold, nms_threshold=nms_threshold,
                      top_k=top_k, keep_top_k=keep_top_k)
    try:
        with tf.Graph().as_default() as graph:
            net, info, prefix = inference.load_model(ckpt_path)
            signatures = build_signatures(net, precision=precision,
                                          max_image_pixels=max_image_pixels,
                                          max_request_pixels=max_request_pixels, **thresholds)
            bad = forbidden_ops(graph.as_graph_def())
            if bad:
                raise ExportError('the graph holds Python ops TF Serving cannot run: %s'
                                  % ', '.join(bad))
            sess, _ = inference.restored_session(prefix, _signature_tensors(graph, signatures),
                                                 freeze=freeze_weights)
            with sess:
                builder = tf.saved_model.builder.SavedModelBuilder(tmp_dir)
                builder.add_meta_graph_and_variables(
                    sess, [tf.saved_model.tag_constants.SERVING],
                    signature_def_map=signatures, strip_default_attrs=True)
                builder.save()
        _write_model_info(tmp_dir, dict(info, checkpoint=os.path.basename(prefix),
                                        precision=precision, max_image_pixels=max_image_pixels,
                                        max_request_pixels=max_request_pixels,
                                        freeze_weights=freeze_weights),
                          thresholds)
        if os.path.exists(final_dir):  # Only reached with --overwrite.
            old_dir = os.path.join(model_dir, '.old-%d-%d' % (version, os.getpid()))
            os.rename(final_dir, old_dir)
            os.rename(tmp_dir, final_dir)
            shutil.rmtree(old_dir)
        else:
            os.rename(tmp_dir, final_dir)
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir)
        # A failed or interrupted export leaves no folder it made (a server would watch it).
        for folder in reversed(new_folders):
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
    return final_dir


def define_flags():
    """The exporter's own flags (a ``cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('Input')
    flag_set.checkpoint_path()
    flag_set.precision(PRECISION)
    flag_set.group('Output')
    flag_set.string('export_dir', 'export', 'Base folder of exports; the model goes to '
                    '<export_dir>/<model_name>/<version>/.')
    flag_set.string('model_name', 'ssd_vgg_300', 'Model name, as the server is told it.')
    flag_set.integer('model_version', None,
                     'Integer version to write (default: next after the newest existing).')
    flag_set.boolean('overwrite', False, 'Replace --model_version when it already exists.')
    flag_set.boolean('freeze_weights', True,
                     'Store the weights as constants of the graph (in --precision), so oneDNN '
                     'keeps its reordered filters between runs and a bfloat16 export casts '
                     'nothing per call; --nofreeze_weights stores float32 variables instead.')
    flag_set.group('Post-processing and input limit baked into serving_default')
    flag_set.postprocessing(select_threshold=0.5)
    flag_set.pixel_limits()
    return flag_set


def _export(options):
    tf.logging.set_verbosity(tf.logging.WARN)
    cli.check_checkpoint_path(options)
    cli.check_postprocessing(options)
    for name in ('max_image_pixels', 'max_request_pixels'):
        if getattr(options, name) < 1:
            raise cli.UsageError('--%s must be >= 1, got %d' % (name, getattr(options, name)))
    files.check_writable_dir(options.export_dir, '--export_dir')  # before the slow part
    try:
        path = export(options.ckpt_path, options.export_dir, options.model_name,
                      options.model_version, options.overwrite, options.select_threshold,
                      options.nms_threshold, options.top_k, options.keep_top_k, options.precision,
                      options.max_image_pixels, options.max_request_pixels,
                      options.freeze_weights)
    except (tf.errors.OpError, OSError) as e:
        reason = tf_errors.one_line(e) if isinstance(e, tf.errors.OpError) else \
            '%s: %s' % (e.filename, e.strerror) if e.filename else str(e)
        if tf_errors.is_disk_full(e):  # the message names a temporary file: name the folder
            reason = 'cannot write: %s' % (tf_errors.describe(e).cause
                                           if isinstance(e, tf.errors.OpError) else e.strerror)
        raise ExportError('--export_dir=%s: %s (nothing was exported)'
                          % (options.export_dir, reason))
    print('exported %s' % path)
    return 0


main = cli.make_main(__doc__, define_flags, _export)


if __name__ == '__main__':
    sys.exit(main())
