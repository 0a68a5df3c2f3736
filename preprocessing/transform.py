"""The network's input/output transform in the graph; preprocessing/np_transform.py is its NumPy
twin (same constants, same box formulas) for clients without TensorFlow.

Forward: ``whiten_image`` (RGB minus ``VGG_MEANS``) and ``resize`` (bilinear resampling of a
window of the image to the network input ``img_shape``, read with ``input_shape`` from the
network's params or model_info.json). Inverse: ``to_pixels`` turns normalised boxes of the network
input into pixels of the original images, exactly undoing ``to_network_frame``.
"""
import tensorflow.compat.v1 as tf

from preprocessing import np_transform

VGG_MEANS = np_transform.VGG_MEANS
UNIT_WINDOW = np_transform.UNIT_WINDOW
input_shape = np_transform.input_shape


def whiten_image(image):
    """RGB in [0, 255] ``[..., H, W, 3]`` (uint8 or float) → float32 minus ``VGG_MEANS``."""
    return tf.cast(image, tf.float32) - tf.constant(VGG_MEANS, tf.float32)


def unwhiten_image(image, data_format='NHWC'):
    """Inverse of ``whiten_image``, for summaries: uint8 RGB, channels last.

    ``image`` is ``[..., H, W, 3]``, or ``[..., 3, H, W]`` with ``data_format='NCHW'``.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    if data_format == 'NCHW':
        rank = image.shape.ndims
        image = tf.transpose(image, list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3])
    image = image + tf.constant(VGG_MEANS, tf.float32)
    return tf.cast(tf.round(tf.clip_by_value(image, 0., 255.)), tf.uint8)


def resize(image, window, out_shape):
    """Bilinear resampling of ``window [4]`` (image-normalised, may exceed [0, 1]) of a float
    ``image [H, W, 3]`` to ``out_shape``; outside the image the result is 0. A window with
    xmin > xmax gives the mirrored output. With ``window = UNIT_WINDOW`` this is the warp resize
    that np_transform.resize_bilinear mirrors.

    Pixel k covers [k, k + 1) in continuous coordinates, so output sample centres map to the same
    points as ``tf.image.resize`` (half-pixel centres) would. A one-pixel edge replica keeps the
    border pixels from fading to 0 where samples fall up to half a pixel past the image.
    """
    window = tf.convert_to_tensor(window, tf.float32)
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    out = tf.constant(out_shape, tf.float32)
    extent = (window[2:] - window[:2]) * size
    first = window[:2] * size + extent * 0.5 / out - 0.5          # pixel index of sample 0
    last = window[:2] * size + extent * (out - 0.5) / out - 0.5   # ... and of the last sample
    padded = tf.pad(image, [[1, 1], [1, 1], [0, 0]], mode='SYMMETRIC')
    box = tf.concat([(first + 1.) / (size + 1.), (last + 1.) / (size + 1.)], axis=0)
    resized = tf.image.crop_and_resize(padded[None], box[None], box_indices=tf.zeros([1], tf.int32),
                                       crop_size=list(out_shape), extrapolation_value=0.)
    return resized[0]


def _float(value):
    return tf.cast(tf.convert_to_tensor(value), tf.float32)


def to_network_frame(pixel_boxes, image_shape, bbox_img=UNIT_WINDOW):
    """Graph version of ``np_transform.to_network_frame`` (any int or float tensors)."""
    return np_transform.to_network_frame(_float(pixel_boxes), _float(image_shape),
                                         _float(bbox_img), xp=tf)


def to_pixels(boxes, image_shape, bbox_img=UNIT_WINDOW):
    """Graph version of ``np_transform.to_pixels``: e.g. detections ``[B, K, 4]`` relative to
    each ``bbox_img`` with ``image_shape [B, 1, 2]`` → pixels of each original image."""
    return np_transform.to_pixels(_float(boxes), _float(image_shape), _float(bbox_img), xp=tf)
