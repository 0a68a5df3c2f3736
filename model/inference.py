"""The inference graph shared by detector.py, eval_ssd_network.py and export_saved_model.py.

Rebuilds the network a checkpoint was trained with (from its ``model_info.json``), turns
uint8 images of any size into the network input, runs the network and its post-processing, and
returns detections in pixels of each original image. Only standard TensorFlow ops, so the same
graph can be exported for TF Serving.

Boxes are ``[ymin, xmin, ymax, xmax]``; the pixel frame is continuous and 0-based, so a box
normalised to the image maps to pixels by multiplying by ``(H, W, H, W)``.
"""
import contextlib

import numpy as np
import tensorflow.compat.v1 as tf
from tensorflow.python.util import deprecation

from model import checkpoints
from model import model_info
from nets import nets_factory
from preprocessing import preprocessing_factory
from preprocessing import transform
from utils import cpu_features
from utils import slim_compat
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K

slim = slim_compat.import_slim()

DETECTION_KEYS = ('detection_boxes', 'detection_scores', 'detection_classes', 'num_detections')


def load_model(ckpt_path):
    """Resolves ``ckpt_path`` (prefix or directory → newest) and rebuilds its network.

    Returns ``(net, info, checkpoint_prefix)``: the ``SSDNet``, the ``model_info.json`` dict and
    the checkpoint prefix. Raises ``model_info.ModelInfoError`` (``checkpoints.CheckpointError``
    for the checkpoint path) with a one-line message.
    """
    prefix = checkpoints.resolve(ckpt_path)
    info = model_info.read_model_info(prefix)
    try:
        net = nets_factory.build_network(info['model_name'], info['num_classes'],
                                         info['width_multiplier'])
    except (KeyError, ValueError) as e:
        raise model_info.ModelInfoError('model_info.json beside %s: cannot build the network: %s'
                                        % (prefix, e))
    return net, info, prefix


def preprocess_for_detection(image, net, model_name='ssd_vgg_300'):
    """uint8 ``[H, W, 3]`` RGB image tensor → ``(inputs, bbox_img)``: the float32 network input
    ``[*img_shape, 3]`` of ``net`` (an SSDNet or its SSDParams) and the window ``[4]`` of it that
    shows the image, for ``detect(..., bbox_img=...)``.

    The evaluation branch of the network's pre-processing: warp-resize (so the original image
    covers the whole input, ``bbox_img = [0, 0, 1, 1]``) and VGG-mean subtraction.
    """
    preprocess = preprocessing_factory.get_preprocessing(model_name, is_training=False)
    inputs, _, _, bbox_img = preprocess(image, None, None, transform.input_shape(net))
    return inputs, bbox_img


@contextlib.contextmanager
def compute_precision(precision):
    """Variable scope in which layers compute in ``precision`` while their variables stay float32.

    Variables asked for in bfloat16 (slim creates them in the input's dtype) are made float32,
    so checkpoints of either precision are the same, and read through a cast in the graph: a
    bfloat16 graph needs no session option, which is what TF Serving runs.
    """
    if precision not in cpu_features.PRECISIONS:
        raise ValueError('precision must be one of %s, got %r'
                         % (', '.join(cpu_features.PRECISIONS), precision))
    if precision == 'float32':
        yield
        return
    cpu_features.warn_if_bfloat16_is_slow(precision)

    def float32_variables(getter, name, *args, dtype=None, **kwargs):
        variable = getter(name, *args, dtype=tf.float32, **kwargs)
        return tf.cast(variable, tf.bfloat16) if dtype == tf.bfloat16 else variable

    with tf.variable_scope(tf.get_variable_scope(), custom_getter=float32_variables,
                           auxiliary_name_scope=False):
        yield


def network_outputs(net, images, precision='float32', reuse=None):
    """``(predictions, localisations)`` of the network, float32, computed in ``precision``.

    In bfloat16 the softmax runs on float32 logits: 8 bits of mantissa would round scores.
    """
    with slim.arg_scope(net.arg_scope(data_format='NHWC')):
        with compute_precision(precision):
            predictions, localisations, logits, _ = net.net(
                tf.cast(images, tf.as_dtype(precision)), is_training=False, reuse=reuse)
    if precision == 'float32':
        return predictions, localisations
    with tf.name_scope('to_float32'):
        return ([tf.nn.softmax(tf.cast(l, tf.float32)) for l in logits],
                [tf.cast(l, tf.float32) for l in localisations])


def detect(net, images, image_shapes, select_threshold=0.5, nms_threshold=NMS_THRESHOLD,
           top_k=TOP_K, keep_top_k=KEEP_TOP_K, reuse=None, precision='float32', bbox_img=None):
    """Runs the network and post-processing on a batch of preprocessed images.

    Args:
      images: float32 ``[B, *img_shape, 3]`` from ``preprocess_for_detection``.
      image_shapes: int32 ``[B, 2]``, each original image's ``(height, width)``.
      bbox_img: ``[4]`` or ``[B, 4]`` from ``preprocess_for_detection`` (None: the whole input);
        detections are clipped to it.
      reuse: True to share the variables of an earlier ``detect`` call in the same graph.
      precision: ``float32`` or ``bfloat16`` (the network's compute; inputs, outputs and
        variables stay float32).
    Returns a dict: ``detection_boxes [B, K, 4]`` float32 in pixels of each original image,
    ``detection_scores [B, K]``, ``detection_classes [B, K]`` int64, ``num_detections [B]``
    int32 (rows past it are zero; sorted by score), and ``predictions``/``localisations``: the
    raw per-layer network outputs (``[B, H_i, W_i, A_i, C]`` / ``[B, H_i, W_i, A_i, 4]``).
    """
    predictions, localisations = network_outputs(net, images, precision, reuse)
    with tf.name_scope('detections'):
        detections = net.detected_bboxes(predictions, localisations,
                                         select_threshold=select_threshold,
                                         nms_threshold=nms_threshold, top_k=top_k,
                                         keep_top_k=keep_top_k, bbox_img=bbox_img)
        # The boxes come relative to bbox_img, i.e. normalised to each original image.
        result = {key: detections[key] for key in DETECTION_KEYS}
        result['detection_boxes'] = transform.to_pixels(detections['detection_boxes'],
                                                        tf.expand_dims(image_shapes, 1))
    result['predictions'] = list(predictions)
    result['localisations'] = list(localisations)
    return result


def restore(sess, checkpoint_prefix, var_list=None):
    """Restores the model variables (default: all global variables of the graph) from the checkpoint.

    Raises ``checkpoints.CheckpointError`` naming the checkpoint when a variable is missing, or
    when shapes differ (for the class heads the message names both class counts).
    """
    checkpoints.restore(sess, checkpoint_prefix, var_list,
                        model_info.read_model_info(checkpoint_prefix)['num_classes'],
                        remedy=': it was not written for the network model_info.json describes '
                               '(model_name, num_classes, width_multiplier)')


def restored_session(checkpoint_prefix, tensors, freeze=True, config=None):
    """A session running the default graph's model with the weights of ``checkpoint_prefix``.

    ``tensors``: a nest (dict, list, tuple) of the tensors and ops the caller feeds and fetches.
    With ``freeze`` (every inference tool) the variables are restored, then replaced by
    constants in a copy of the graph (``frozen_graph``): oneDNN then keeps each convolution's
    filter in its blocked layout from call to call instead of reordering it every run. Returns
    ``(session, tensors)``, the tensors mapped into the session's graph (the same ones without
    ``freeze``). Raises ``checkpoints.CheckpointError`` as ``restore`` does.
    """
    session = tf.Session(graph=tf.get_default_graph(), config=config)
    try:
        restore(session, checkpoint_prefix)
        if not freeze:
            return session, tensors
        graph, tensors = frozen_graph(session, tensors)
    except BaseException:
        session.close()
        raise
    session.close()
    return tf.Session(graph=graph, config=config), tensors


def frozen_graph(session, tensors):
    """``(graph, tensors)``: a new graph holding what ``tensors`` (a nest of tensors and ops of
    ``session.graph``) need, every variable read replaced by a constant of its value in
    ``session``, and ``tensors`` mapped into it by name (names are kept).

    In bfloat16 graphs the casts of the float32 weights are done here once
    (``fold_weight_casts``), so no run casts a weight again.
    """
    flat = tf.nest.flatten(tensors)
    op_names = sorted(set(item.op.name if isinstance(item, tf.Tensor) else item.name
                          for item in flat))
    graph_def = frozen_graph_def(session, op_names)
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name='')
    mapped = [graph.get_tensor_by_name(item.name) if isinstance(item, tf.Tensor)
              else graph.get_operation_by_name(item.name) for item in flat]
    return graph, tf.nest.pack_sequence_as(tensors, mapped)


def frozen_graph_def(session, output_names):
    """The GraphDef of what the ops ``output_names`` of ``session.graph`` need, every variable
    read replaced by a constant of its value in ``session`` and every weight cast folded
    (``fold_weight_casts``)."""
    with deprecation.silence():  # the TF1 API is this toolkit's graph mode
        graph_def = tf.graph_util.convert_variables_to_constants(
            session, session.graph.as_graph_def(), output_names)
    return fold_weight_casts(graph_def, output_names)


def fold_weight_casts(graph_def, output_names):
    """``graph_def`` with every floating-point ``Cast`` of a constant (through ``Identity``
    reads) replaced by a constant of the cast value, under the Cast's name; casts of the same
    constant (the networks of both export signatures) share one; constants no longer used by
    ``output_names`` are dropped.

    Without it a frozen bfloat16 graph holds float32 weights and a Cast of each, which the
    exported graph would leave to whatever graph optimisation the serving runtime applies.
    """
    nodes = {node.name: node for node in graph_def.node}

    def constant_source(name):
        node = nodes.get(name.split(':')[0])
        while node is not None and node.op == 'Identity':
            node = nodes.get(node.input[0].split(':')[0])
        return node if node is not None and node.op == 'Const' else None

    folded = {}    # (constant name, dtype) -> the Const that holds the cast value
    renamed = {}   # the name of a Cast whose value another Const holds -> that Const's name
    for node in graph_def.node:
        source = constant_source(node.input[0]) if node.op == 'Cast' and node.input else None
        if source is None:
            continue
        dtype = tf.as_dtype(node.attr['DstT'].type)
        if not (dtype.is_floating and tf.as_dtype(node.attr['SrcT'].type).is_floating):
            continue
        if (source.name, dtype) in folded:
            renamed[node.name] = folded[(source.name, dtype)]
            continue
        folded[(source.name, dtype)] = node.name
        value = tf.make_ndarray(source.attr['value'].tensor).astype(dtype.as_numpy_dtype)
        node.op = 'Const'
        del node.input[:]
        node.ClearField('attr')
        node.attr['dtype'].type = dtype.as_datatype_enum
        node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(value), dtype))
    for node in graph_def.node:
        for i, name in enumerate(node.input):
            control, base = name.startswith('^'), name.lstrip('^').split(':')[0]
            if base in renamed:
                suffix = name.lstrip('^')[len(base):]   # ':1' of an output other than the first
                node.input[i] = ('^' if control else '') + renamed[base] + suffix
    with deprecation.silence():
        return tf.graph_util.extract_sub_graph(graph_def, output_names)

