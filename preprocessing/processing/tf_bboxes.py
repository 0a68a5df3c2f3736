"""Small, pure TensorFlow helpers on boxes that the SSD augmentation needs.

Every box is ``[ymin, xmin, ymax, xmax]`` float32. All helpers work in normalised coordinates of
one frame (usually the image's): a *reference* box such as a crop window is expressed in the same
frame as the boxes it acts on and may extend past [0, 1] (a zoom-out canvas does). Shapes: ``[N, 4]``
for box lists, ``[4]`` for one reference box, ``[T, 4]`` for a batch of candidate crops.
"""
import tensorflow.compat.v1 as tf


def _split(boxes):
    """Unstacks the last axis into ymin, xmin, ymax, xmax."""
    return tf.unstack(boxes, num=4, axis=-1)


def bboxes_resize(bbox_ref, bboxes):
    """Re-expresses ``bboxes [N, 4]`` relative to ``bbox_ref [4]`` (its corners become 0 and 1).

    Used for crops (reference inside the image) and zoom-out canvases (reference larger than the
    image) alike; no clipping happens here.
    """
    bbox_ref = tf.convert_to_tensor(bbox_ref, tf.float32)
    origin = tf.tile(bbox_ref[:2], [2])
    size = tf.tile(bbox_ref[2:] - bbox_ref[:2], [2])
    return (bboxes - origin) / size


def bboxes_clip(bbox_ref, bboxes):
    """Clips ``bboxes [N, 4]`` to ``bbox_ref [4]`` (same frame); boxes outside collapse onto its edge."""
    bbox_ref = tf.convert_to_tensor(bbox_ref, tf.float32)
    lower = tf.tile(bbox_ref[:2], [2])
    upper = tf.tile(bbox_ref[2:], [2])
    return tf.minimum(tf.maximum(bboxes, lower), upper)


def bboxes_centre_in(crops, bboxes):
    """Whether each box centre lies strictly inside each crop.

    ``crops [T, 4]``, ``bboxes [N, 4]`` → bool ``[T, N]``.
    """
    cymin, cxmin, cymax, cxmax = [c[:, None] for c in _split(crops)]
    bymin, bxmin, bymax, bxmax = [b[None, :] for b in _split(bboxes)]
    cy = 0.5 * (bymin + bymax)
    cx = 0.5 * (bxmin + bxmax)
    return (cy > cymin) & (cy < cymax) & (cx > cxmin) & (cx < cxmax)


def bboxes_intersection_over_union(crops, bboxes):
    """IoU of each crop with each box: ``crops [T, 4]``, ``bboxes [N, 4]`` → ``[T, N]``.

    Pairs with no area at all (both boxes degenerate) get 0 rather than NaN.
    """
    cymin, cxmin, cymax, cxmax = [c[:, None] for c in _split(crops)]
    bymin, bxmin, bymax, bxmax = [b[None, :] for b in _split(bboxes)]
    inter_h = tf.maximum(tf.minimum(cymax, bymax) - tf.maximum(cymin, bymin), 0.)
    inter_w = tf.maximum(tf.minimum(cxmax, bxmax) - tf.maximum(cxmin, bxmin), 0.)
    inter = inter_h * inter_w
    union = (cymax - cymin) * (cxmax - cxmin) + (bymax - bymin) * (bxmax - bxmin) - inter
    return tf.math.divide_no_nan(inter, union)


def bboxes_filter(keep, labels, bboxes):
    """Keeps the rows where ``keep [N]`` (bool) is true in ``labels [N]`` and ``bboxes [N, 4]`` alike."""
    return tf.boolean_mask(labels, keep), tf.boolean_mask(bboxes, keep)


def bboxes_flip_left_right(bboxes):
    """Boxes of the horizontally mirrored image: x ↦ 1 - x, with xmin/xmax swapped to stay ordered."""
    ymin, xmin, ymax, xmax = _split(bboxes)
    return tf.stack([ymin, 1. - xmax, ymax, 1. - xmin], axis=-1)
