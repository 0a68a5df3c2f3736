"""Small but real SavedModel versions with the export contract's signatures, for serving tests.

``write_model_version(base_path, version)`` writes ``<base_path>/<version>/`` (tag ``serve``) the
way the exporter does (built under a temporary name, then renamed), holding:

- ``detected_model``: input ``images`` float32 ``[300, 300, 3]`` (preprocessed image); outputs
  ``predict0..5`` ``[1, H_i, W_i, A_i, C]`` (softmax) and ``local0..5`` ``[1, H_i, W_i, A_i, 4]``
  with SSD300's feature shapes and anchors per cell. The "network" is a chain of average pools
  with one 1x1 convolution per head, so it runs in milliseconds.
- ``serving_default``: input ``encoded_image`` string ``[-1]`` (JPEG/PNG/GIF/BMP bytes, any size)
  -> decode, resize to 300x300, subtract the VGG means, the same network, then a simple top-K
  selection: ``detection_boxes`` float32 ``[-1, K, 4]`` (``[ymin, xmin, ymax, xmax]`` in pixels
  of each input image), ``detection_scores`` ``[-1, K]``, ``detection_classes`` int64 ``[-1, K]``,
  ``num_detections`` int32 ``[-1]``; rows past ``num_detections`` are zero.
- ``assets.extra/model_info.json`` (class names for clients).

The weights are drawn from ``seed`` (default: the version number), so versions answer differently
and tests can tell which one served a request. ``run_signature`` is the independent in-process
reference (TensorFlow's own loader) that server answers are compared with.
"""
import json
import os

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from datasets.dataset_config import VEHICLE_CLASSES
from nets.ssd_params import SSD300_PARAMS, num_anchors_per_cell

NUM_CLASSES = len(VEHICLE_CLASSES) + 1  # background included
KEEP_TOP_K = 20
SELECT_THRESHOLD = 0.6
VGG_MEANS = (123.68, 116.78, 103.94)
IMAGE_SIZE = 300
FEAT_SHAPES = SSD300_PARAMS.feat_shapes
ANCHORS_PER_CELL = tuple(num_anchors_per_cell(SSD300_PARAMS, i) for i in range(len(FEAT_SHAPES)))


def _feature_maps(images):
    """Average pools of ``images`` [B, 300, 300, 3] down to the six SSD300 feature shapes."""
    net = tf.nn.avg_pool2d(images, 8, 8, 'SAME')  # 300 -> 38
    maps = [net]
    for _ in range(4):  # 38 -> 19 -> 10 -> 5 -> 3
        net = tf.nn.avg_pool2d(net, 2, 2, 'SAME')
        maps.append(net)
    maps.append(tf.nn.avg_pool2d(net, 3, 3, 'VALID'))  # 3 -> 1
    return maps


def _tiny_ssd(images, rng):
    """The per-layer ``(predictions, localisations)`` lists for ``images`` [B, 300, 300, 3]."""
    predictions, localisations = [], []
    with tf.variable_scope('ssd_300_vgg', reuse=tf.AUTO_REUSE):
        for i, (feat, anchors) in enumerate(zip(_feature_maps(images), ANCHORS_PER_CELL)):
            height, width = FEAT_SHAPES[i]
            with tf.variable_scope('block%d_box' % i):
                # Inputs are mean-subtracted pixels (~ +-100): small weights keep logits near +-2.
                cls_w = tf.get_variable('conv_cls/weights', initializer=tf.constant(
                    rng.normal(0., 0.02, (1, 1, 3, anchors * NUM_CLASSES)).astype(np.float32)))
                loc_w = tf.get_variable('conv_loc/weights', initializer=tf.constant(
                    rng.normal(0., 0.02, (1, 1, 3, anchors * 4)).astype(np.float32)))
            logits = tf.reshape(tf.nn.conv2d(feat, cls_w, 1, 'SAME'),
                                [-1, height, width, anchors, NUM_CLASSES])
            predictions.append(tf.nn.softmax(logits))
            localisations.append(tf.reshape(tf.nn.conv2d(feat, loc_w, 1, 'SAME'),
                                            [-1, height, width, anchors, 4]))
    return predictions, localisations


def _decode_and_preprocess(encoded):
    """One encoded image (string scalar) -> (float32 [300, 300, 3] minus means, int32 [2] size)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    size = tf.shape(image)[:2]
    resized = tf.image.resize(tf.cast(image, tf.float32), [IMAGE_SIZE, IMAGE_SIZE])
    resized.set_shape([IMAGE_SIZE, IMAGE_SIZE, 3])
    return resized - tf.constant(VGG_MEANS), size


def _top_k_detections(predictions, localisations, image_sizes):
    """Top-K (anchor, class) pairs by score; boxes are sigmoid(localisation) scaled to pixels."""
    batch = tf.shape(image_sizes)[0]
    probs = tf.concat([tf.reshape(p, [batch, -1, NUM_CLASSES]) for p in predictions], axis=1)
    locs = tf.concat([tf.reshape(l, [batch, -1, 4]) for l in localisations], axis=1)
    scores, index = tf.nn.top_k(tf.reshape(probs[:, :, 1:], [batch, -1]), KEEP_TOP_K)
    anchor = index // (NUM_CLASSES - 1)
    classes = tf.cast(index % (NUM_CLASSES - 1) + 1, tf.int64)
    corners = tf.sigmoid(tf.gather(locs, anchor, batch_dims=1))
    boxes = tf.concat([tf.minimum(corners[..., :2], corners[..., 2:]),
                       tf.maximum(corners[..., :2], corners[..., 2:])], axis=-1)
    height_width = tf.cast(image_sizes, tf.float32)
    boxes *= tf.tile(height_width, [1, 2])[:, tf.newaxis, :]
    # Scores are sorted, so the kept rows are a prefix; zero the rest as the contract says.
    keep = tf.cast(scores > SELECT_THRESHOLD, tf.float32)
    return {
        'detection_boxes': boxes * keep[..., tf.newaxis],
        'detection_scores': scores * keep,
        'detection_classes': classes * tf.cast(keep, tf.int64),
        'num_detections': tf.reduce_sum(tf.cast(keep, tf.int32), axis=1),
    }


def _signatures(rng):
    """Builds both signatures in the default graph; returns the SignatureDef map."""
    build = tf.saved_model.signature_def_utils.predict_signature_def
    images = tf.placeholder(tf.float32, [IMAGE_SIZE, IMAGE_SIZE, 3], name='images')
    predictions, localisations = _tiny_ssd(images[tf.newaxis], rng)
    raw_outputs = {'predict%d' % i: p for i, p in enumerate(predictions)}
    raw_outputs.update({'local%d' % i: l for i, l in enumerate(localisations)})

    encoded = tf.placeholder(tf.string, [None], name='encoded_image')
    batch_images, sizes = tf.map_fn(_decode_and_preprocess, encoded,
                                    fn_output_signature=(tf.float32, tf.int32))
    detections = _top_k_detections(*_tiny_ssd(batch_images, rng), sizes)
    return {
        'detected_model': build({'images': images}, raw_outputs),
        'serving_default': build({'encoded_image': encoded}, detections),
    }


def write_model_version(base_path, version, seed=None, broken=False):
    """Writes ``<base_path>/<version>/`` atomically and returns its path.

    ``seed`` (default ``version``) draws the weights. ``broken=True`` truncates the variables
    before the version appears (a copy cut short), so loading it fails. Raises
    ``FileExistsError`` if the version exists, as the exporter never overwrites one.
    """
    final_dir = os.path.join(base_path, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError('model version already exists: %s' % final_dir)
    # A non-integer name: servers ignore it until the rename makes the version appear whole.
    temp_dir = os.path.join(base_path, 'tmp-%d-%d' % (version, os.getpid()))
    rng = np.random.RandomState(version if seed is None else seed)
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph) as sess:
        signatures = _signatures(rng)
        sess.run(tf.global_variables_initializer())
        builder = tf.saved_model.Builder(temp_dir)
        builder.add_meta_graph_and_variables(
            sess, [tf.saved_model.tag_constants.SERVING], signature_def_map=signatures)
        builder.save()
    extra_dir = os.path.join(temp_dir, 'assets.extra')
    os.makedirs(extra_dir)
    with open(os.path.join(extra_dir, 'model_info.json'), 'w') as f:
        json.dump({'model_name': 'ssd_vgg_300', 'num_classes': NUM_CLASSES,
                   'class_names': list(VEHICLE_CLASSES), 'width_multiplier': 1.0,
                   'img_shape': [IMAGE_SIZE, IMAGE_SIZE]}, f)
    if broken:
        truncate_variables(temp_dir)
    os.rename(temp_dir, final_dir)
    return final_dir


def truncate_variables(version_dir):
    """Cuts every variables data shard of a written version to half its size (a broken copy)."""
    variables_dir = os.path.join(version_dir, 'variables')
    for name in os.listdir(variables_dir):
        if '.data-' in name:
            path = os.path.join(variables_dir, name)
            with open(path, 'r+b') as f:
                f.truncate(os.path.getsize(path) // 2)


def run_signature(version_dir, signature_name, feed):
    """Loads ``version_dir`` with TensorFlow's loader and runs one signature.

    ``feed``: dict input alias -> NumPy array. Returns dict output alias -> NumPy array.
    """
    graph = tf.Graph()
    with graph.as_default(), tf.Session(graph=graph) as sess:
        meta_graph = tf.saved_model.loader.load(sess, [tf.saved_model.tag_constants.SERVING],
                                                version_dir)
        sig = meta_graph.signature_def[signature_name]
        return sess.run({alias: info.name for alias, info in sig.outputs.items()},
                        {sig.inputs[alias].name: value for alias, value in feed.items()})


def sample_jpeg(height, width, seed):
    """JPEG bytes of a seeded, blurred random picture (smooth like a photo) of the given size."""
    image = np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)
    return cv2.imencode('.jpg', cv2.GaussianBlur(image, (15, 15), 5))[1].tobytes()
