"""SSD-VGG300 pre-processing: the paper's training augmentation and the evaluation resize.

Input: ``image`` uint8 RGB ``[H, W, 3]`` of any (dynamic) size, ``labels`` int ``[N]``, ``bboxes``
float32 ``[N, 4]`` as ``[ymin, xmin, ymax, xmax]`` normalised to the image. Output image: float32
``[out_h, out_w, 3]`` (``[3, out_h, out_w]`` for ``data_format='NCHW'``), RGB minus ``VGG_MEANS``;
output boxes are normalised to the output image.

Training (``is_training=True``) follows SSD (Liu et al. 2016, section 3.6):
  1. photometric distortion of the original image: brightness, contrast, saturation and hue, each
     applied with probability 1/2, in a random order;
  2. zoom-out: with probability ``zoom_out_probability`` the image is placed at a random spot of a
     canvas up to ``max_zoom_out`` times its size filled with the mean colour;
  3. crop sampling: one minimum overlap is drawn from ``crop_min_overlaps`` (0 = no constraint);
     ``crop_max_trials`` windows of scale [0.3, 1] and aspect ratio [1/2, 2] (relative to the
     canvas) are drawn at once and the first one is taken in which some box both has its centre
     inside and a Jaccard overlap (IoU, computed exactly, as in the paper) of at least the minimum
     with the window; when none qualifies, the whole canvas is used. Boxes whose centre leaves
     the window are dropped and the rest are clipped to it. So an image with at least one box
     always keeps at least one: ``tf.shape(labels)[0] == 0`` only when the input had no box;
  4. VGG mean subtraction; 5. resize to ``out_shape``; 6. random horizontal flip.
The mean is subtracted before resampling so that the canvas (0 outside the image) is the mean
colour; steps 2, 3, 5 and 6 are one ``tf.image.crop_and_resize`` of the window (read right to left
for the flip), so neither the canvas nor the crop is ever materialised: the cost is that of the
output image, whatever the zoom.
``tf.image.sample_distorted_bounding_box`` is not used: its ``min_object_covered`` is the share of
a box inside the crop (intersection / box area), not the paper's IoU, and it cannot leave the image
for a zoom-out canvas; the batched trials above give the paper's criterion at similar cost.

Evaluation returns ``(image, labels, bboxes, bbox_img)``: ``bbox_img`` is where the original image
lies in the output frame (``[0, 0, 1, 1]`` for ``Resize.WARP_RESIZE``, the one mode), which the
post-processing clips detections to (``detected_bboxes(bbox_img=...)``). ``labels``/``bboxes`` may
be None (detection of an unannotated image); then they are returned as None.

Only standard TensorFlow ops are used (no py_func), so both branches run inside
``tf.data.Dataset.map``, in a plain ``tf.Graph`` and in an exported SavedModel.
"""
import enum

import tensorflow.compat.v1 as tf

from preprocessing import transform
from preprocessing.processing import tf_bboxes
from preprocessing.transform import VGG_MEANS, unwhiten_image, whiten_image  # noqa: F401

OUT_SHAPE = (300, 300)   # SSD300's input (SSDParams.img_shape); callers pass their network's

# Photometric ranges of the SSD Caffe implementation, here on images in [0, 1].
_BRIGHTNESS_DELTA = 32. / 255.
_CONTRAST_RANGE = (0.5, 1.5)
_SATURATION_RANGE = (0.5, 1.5)
_HUE_DELTA = 18. / 360.
_DISTORT_PROBABILITY = 0.5
_CROP_SCALE_RANGE = (0.3, 1.0)
_CROP_ASPECT_RANGE = (0.5, 2.0)


class Resize(enum.Enum):
    """How evaluation maps the image onto ``out_shape``."""
    WARP_RESIZE = 'warp_resize'        # stretch the whole image; bbox_img = [0, 0, 1, 1]


TRAIN_DEFAULTS = {
    'photometric_distortion': True,
    'zoom_out': True,
    'zoom_out_probability': 0.5,
    'max_zoom_out': 4.0,
    'random_crop': True,
    'crop_min_overlaps': (0.0, 0.1, 0.3, 0.5, 0.7, 0.9),
    'crop_max_trials': 50,
    'flip': True,
}
EVAL_DEFAULTS = {'resize': Resize.WARP_RESIZE}


def _options(is_training, kwargs):
    """Training or evaluation defaults updated with ``kwargs``; unknown keys are a ValueError."""
    defaults = TRAIN_DEFAULTS if is_training else EVAL_DEFAULTS
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError('unknown %s pre-processing option(s) %s; known: %s' % (
            'training' if is_training else 'evaluation', ', '.join(unknown),
            ', '.join(sorted(defaults))))
    options = dict(defaults)
    options.update(kwargs)
    return options


def _check_image(image):
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise ValueError('image must be uint8 RGB [H, W, 3], got dtype %s' % image.dtype.name)
    rank = image.shape.ndims
    if rank is not None and (rank != 3 or image.shape[-1] not in (None, 3)):
        raise ValueError('image must be uint8 RGB [H, W, 3], got shape %s' % image.shape)
    return image


def _random_apply(transform, image):
    """``transform(image)`` clipped to [0, 1], or ``image`` (probability 1/2 each)."""
    # Clipping after each step keeps the HSV-based steps on valid colours.
    return tf.cond(tf.random.uniform([]) < _DISTORT_PROBABILITY,
                   lambda: tf.clip_by_value(transform(image), 0., 1.), lambda: image)


def distort_colour(image):
    """SSD photometric distortion of a float RGB image ``[H, W, 3]`` in [0, 1]; stays in [0, 1]."""
    transforms = [
        lambda x: tf.image.random_brightness(x, _BRIGHTNESS_DELTA),
        lambda x: tf.image.random_contrast(x, *_CONTRAST_RANGE),
        lambda x: tf.image.random_saturation(x, *_SATURATION_RANGE),
        lambda x: tf.image.random_hue(x, _HUE_DELTA),
    ]
    order = tf.random.shuffle(tf.range(len(transforms)))
    for step in range(len(transforms)):
        # Only the selected branch runs: step k applies transform order[k].
        branches = [lambda t=t, x=image: _random_apply(t, x) for t in transforms]
        image = tf.switch_case(order[step], branches)
        image.set_shape([None, None, 3])
    return image


def _sample_canvas(max_zoom_out, probability):
    """Zoom-out canvas ``[4]``, image-normalised: the image, or up to ``max_zoom_out`` times larger."""
    ratio = tf.random.uniform([], 1., max_zoom_out)
    ratio = tf.where(tf.random.uniform([]) < probability, ratio, 1.)
    # Distance (in image sizes) from the canvas's top-left corner to the image's: uniform in the margin.
    offset = tf.random.uniform([2]) * (ratio - 1.)
    return tf.concat([-offset, ratio - offset], axis=0)


def _sample_crop(canvas, bboxes, min_overlaps, max_trials):
    """SSD crop window ``[4]`` in image-normalised coordinates, inside ``canvas [4]``.

    All ``max_trials`` candidates are drawn at once (no while loop); the first one that keeps the
    centre of a box overlapping it by at least the drawn minimum IoU wins, else the whole canvas.
    """
    scale = tf.random.uniform([max_trials], *_CROP_SCALE_RANGE)
    # Aspect range narrowed so that both sides stay <= 1 (fraction of the canvas).
    aspect_lo = tf.maximum(_CROP_ASPECT_RANGE[0], tf.square(scale))
    aspect_hi = tf.minimum(_CROP_ASPECT_RANGE[1], 1. / tf.square(scale))
    aspect = aspect_lo + tf.random.uniform([max_trials]) * (aspect_hi - aspect_lo)
    size = tf.stack([scale / tf.sqrt(aspect), scale * tf.sqrt(aspect)], axis=1)  # [T, (h, w)]
    corner = tf.random.uniform([max_trials, 2]) * (1. - size)
    canvas_size = canvas[2:] - canvas[:2]
    crops = tf.concat([canvas[:2] + corner * canvas_size,
                       canvas[:2] + (corner + size) * canvas_size], axis=1)

    min_overlaps = tf.constant(min_overlaps, tf.float32)
    min_iou = min_overlaps[tf.random.uniform([], 0, tf.size(min_overlaps), tf.int32)]
    good = (tf_bboxes.bboxes_intersection_over_union(crops, bboxes) >= min_iou) & \
        tf_bboxes.bboxes_centre_in(crops, bboxes)
    valid = tf.reduce_any(good, axis=1)
    first = tf.argmax(tf.cast(valid, tf.int32))  # argmax returns the first maximum
    return tf.where(tf.reduce_any(valid), crops[first], canvas)


def _finish_image(image, out_shape, data_format):
    image.set_shape(list(out_shape) + [3])
    if data_format == 'NCHW':
        image = tf.transpose(image, [2, 0, 1])
    return image


def _check_data_format(data_format):
    if data_format not in ('NHWC', 'NCHW'):
        raise ValueError("data_format must be 'NHWC' or 'NCHW', got %r" % (data_format,))


def preprocess_for_train(image, labels, bboxes, out_shape=OUT_SHAPE, data_format='NHWC', **kwargs):
    """Training branch (module docstring); returns ``(image, labels [M], bboxes [M, 4])``, M <= N."""
    options = _options(True, kwargs)
    _check_data_format(data_format)
    image = _check_image(image)
    with tf.name_scope('ssd_preprocessing_train'):
        labels = tf.convert_to_tensor(labels)
        bboxes = tf.reshape(tf.cast(bboxes, tf.float32), [-1, 4])
        pixels = image
        if options['photometric_distortion']:
            pixels = distort_colour(tf.image.convert_image_dtype(image, tf.float32)) * 255.
        # Whitened before resampling so that the zoom-out canvas (filled with 0) is the mean colour.
        pixels = whiten_image(pixels)

        canvas = tf.constant(transform.UNIT_WINDOW)
        if options['zoom_out']:
            canvas = _sample_canvas(options['max_zoom_out'], options['zoom_out_probability'])
        window = canvas
        if options['random_crop']:
            window = _sample_crop(canvas, bboxes, options['crop_min_overlaps'],
                                  options['crop_max_trials'])
        flip = tf.random.uniform([]) < 0.5 if options['flip'] else tf.constant(False)
        # Sampling the window from xmax to xmin mirrors the output: the flip costs no extra pass.
        pixels = transform.resize(pixels, tf.where(flip, tf.gather(window, [0, 3, 2, 1]), window),
                                  out_shape)

        keep = tf_bboxes.bboxes_centre_in(window[None], bboxes)[0]
        labels, bboxes = tf_bboxes.bboxes_filter(keep, labels, bboxes)
        bboxes = tf_bboxes.bboxes_relative_to_window(window, bboxes)
        bboxes = tf_bboxes.bboxes_clip(transform.UNIT_WINDOW, bboxes)
        bboxes = tf.where(flip, tf_bboxes.bboxes_flip_left_right(bboxes), bboxes)
        return _finish_image(pixels, out_shape, data_format), labels, bboxes


def preprocess_for_eval(image, labels, bboxes, out_shape=OUT_SHAPE, data_format='NHWC', **kwargs):
    """Evaluation branch; returns ``(image, labels, bboxes, bbox_img)``, boxes in the output frame."""
    options = _options(False, kwargs)
    _check_data_format(data_format)
    image = _check_image(image)
    if not isinstance(options['resize'], Resize):
        raise ValueError('resize must be a Resize member (%s), got %r' % (
            ', '.join(r.name for r in Resize), options['resize']))
    with tf.name_scope('ssd_preprocessing_eval'):
        # WARP_RESIZE: the whole image fills the output, so boxes keep their coordinates.
        pixels = transform.resize(whiten_image(image), transform.UNIT_WINDOW, out_shape)
        bbox_img = tf.constant(transform.UNIT_WINDOW)
        if bboxes is not None:
            bboxes = tf.reshape(tf.cast(bboxes, tf.float32), [-1, 4])
        return _finish_image(pixels, out_shape, data_format), labels, bboxes, bbox_img


def preprocess_image(image, labels, bboxes, out_shape=OUT_SHAPE, data_format='NHWC',
                     is_training=False, **kwargs):
    """SSD pre-processing (docs/CONTRACT.md §5); ``kwargs`` override the ``*_DEFAULTS``."""
    if is_training:
        return preprocess_for_train(image, labels, bboxes, out_shape, data_format, **kwargs)
    return preprocess_for_eval(image, labels, bboxes, out_shape, data_format, **kwargs)
