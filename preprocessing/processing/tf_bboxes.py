"""Box helpers of the SSD augmentation in TensorFlow; the formulas are utils/boxes.py's.

Every box is ``[ymin, xmin, ymax, xmax]`` float32. All helpers work in normalised coordinates of
one frame (usually the image's): a *reference* box such as a crop window is expressed in the same
frame as the boxes it acts on and may extend past [0, 1] (a zoom-out canvas does). Shapes: ``[N, 4]``
for box lists, ``[4]`` for one reference box, ``[T, 4]`` for a batch of candidate crops.
"""
import tensorflow.compat.v1 as tf

from utils import boxes as boxes_lib


def bboxes_relative_to_window(window, bboxes):
    """Re-expresses ``bboxes [N, 4]`` relative to ``window [4]`` (its corners become 0 and 1).

    Used for crops (window inside the image) and zoom-out canvases (window larger than the
    image) alike; no clipping happens here.
    """
    return boxes_lib.relative_to_window(bboxes, tf.convert_to_tensor(window, tf.float32), tf)


def bboxes_clip(bbox_ref, bboxes):
    """Clips ``bboxes [N, 4]`` to ``bbox_ref [4]`` (same frame); boxes outside collapse onto its edge."""
    return boxes_lib.clip_to_window(bboxes, tf.convert_to_tensor(bbox_ref, tf.float32), tf)


def bboxes_centre_in(crops, bboxes):
    """Whether each box centre lies strictly inside each crop.

    ``crops [T, 4]``, ``bboxes [N, 4]`` → bool ``[T, N]``.
    """
    cy, cx, _, _ = boxes_lib.to_centres(bboxes[None, :, :])
    crops = crops[:, None, :]
    return (cy > crops[..., 0]) & (cy < crops[..., 2]) & (cx > crops[..., 1]) & (cx < crops[..., 3])


def bboxes_intersection_over_union(crops, bboxes):
    """IoU of each crop with each box: ``crops [T, 4]``, ``bboxes [N, 4]`` → ``[T, N]``.

    Pairs with no area at all (both boxes degenerate) get 0 rather than NaN.
    """
    return boxes_lib.iou(crops, bboxes, tf)


def bboxes_filter(keep, labels, bboxes):
    """Keeps the rows where ``keep [N]`` (bool) is true in ``labels [N]`` and ``bboxes [N, 4]`` alike."""
    return tf.boolean_mask(labels, keep), tf.boolean_mask(bboxes, keep)


def bboxes_flip_left_right(bboxes):
    """Boxes of the horizontally mirrored image: x ↦ 1 - x, with xmin/xmax swapped to stay ordered."""
    ymin, xmin, ymax, xmax = tf.unstack(bboxes, num=4, axis=-1)
    return tf.stack([ymin, 1. - xmax, ymax, 1. - xmin], axis=-1)
