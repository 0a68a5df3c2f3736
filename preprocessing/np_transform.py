"""The network's input/output transform, NumPy only (clients import it without TensorFlow).

Forward: an RGB uint8 image ``[H, W, 3]`` of any size is warp-resized (bilinear) to the network
input ``img_shape`` and the VGG means are subtracted; the image then covers the window
``bbox_img`` of the input (``[0, 0, 1, 1]`` for the warp resize), so a box normalised to the
image lands at ``absolute_from_window(box, bbox_img)`` of the input. Inverse: boxes of the
network input frame → pixels of the original image, exactly (``to_pixels(to_network_frame(b))``
is ``b``). preprocessing/transform.py is the graph side; both share these constants and the box
formulas (``xp`` as in utils/boxes.py).

The input size is the network's: ``input_shape(params | net | model_info)``, never a literal.
"""
import numpy as np

from utils import boxes as boxes_lib

VGG_MEANS = (123.68, 116.78, 103.94)   # RGB, pixel scale [0, 255]
UNIT_WINDOW = (0., 0., 1., 1.)         # bbox_img of the warp resize: the image fills the input


def input_shape(source):
    """``(height, width)`` of the network input: ``img_shape`` of an SSDParams, of an SSDNet's
    ``params``, or of a model_info.json dict."""
    if isinstance(source, dict):
        shape = source['img_shape']
    else:
        shape = getattr(source, 'params', source).img_shape
    return tuple(int(size) for size in shape)


def to_network_frame(pixel_boxes, image_shape, bbox_img=UNIT_WINDOW, xp=np):
    """Boxes ``[..., 4]`` in pixels of images of ``image_shape`` ``[..., 2]`` (height, width)
    → normalised boxes of the network input, where the forward transform puts them.

    ``image_shape`` and ``bbox_img`` broadcast against the boxes' leading dimensions (for boxes
    ``[B, K, 4]`` give ``[B, 1, 2]`` and ``[B, 1, 4]``); with ``xp=tf`` all are float tensors.
    """
    image_window = boxes_lib.pixel_window(_array(image_shape, xp), xp)
    normalised = boxes_lib.relative_to_window(_array(pixel_boxes, xp), image_window, xp)
    return boxes_lib.absolute_from_window(normalised, _array(bbox_img, xp), xp)


def to_pixels(boxes, image_shape, bbox_img=UNIT_WINDOW, xp=np):
    """The exact inverse of ``to_network_frame``: normalised boxes of the network input → pixels
    of the original image. Detections that post-processing already re-expressed relative to
    ``bbox_img`` (``detected_bboxes(bbox_img=...)`` does) take the default ``UNIT_WINDOW``."""
    normalised = boxes_lib.relative_to_window(_array(boxes, xp), _array(bbox_img, xp), xp)
    image_window = boxes_lib.pixel_window(_array(image_shape, xp), xp)
    return boxes_lib.absolute_from_window(normalised, image_window, xp)


def _array(value, xp):
    """NumPy float32 array of ``value`` (lists and tuples welcome); tensors pass through."""
    return np.asarray(value, np.float32) if xp is np else value


def resize_bilinear(image, size):
    """Bilinear resize of ``image [H, W, C]`` to ``size = (height, width)`` → float32.

    Half-pixel centres without antialiasing, the sampling of ``tf.image.resize`` (bilinear) and of
    preprocessing/transform.py's ``resize`` on the whole image, so the NumPy and graph
    preprocessing agree to float rounding.
    """
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]

    def axis(out_size, in_size):
        centres = (np.arange(out_size, dtype=np.float64) + 0.5) * in_size / out_size - 0.5
        centres = np.clip(centres, 0., in_size - 1.)
        low = np.floor(centres).astype(np.int64)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, (centres - low).astype(np.float32)

    y0, y1, fy = axis(size[0], height)
    x0, x1, fx = axis(size[1], width)
    top = image[y0][:, x0] * (1. - fx)[None, :, None] + image[y0][:, x1] * fx[None, :, None]
    bottom = image[y1][:, x0] * (1. - fx)[None, :, None] + image[y1][:, x1] * fx[None, :, None]
    return top * (1. - fy)[:, None, None] + bottom * fy[:, None, None]


def preprocess(image, img_shape):
    """RGB uint8 ``[H, W, 3]`` → ``(network input float32 [*img_shape, 3], bbox_img [4])``:
    warp resize to ``img_shape`` (see ``input_shape``), minus the VGG means."""
    pixels = resize_bilinear(image, img_shape) - np.asarray(VGG_MEANS, np.float32)
    return pixels, np.asarray(UNIT_WINDOW, np.float32)
