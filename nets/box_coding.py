"""TensorFlow encoding/decoding of boxes relative to SSD anchors (formulas in nets/np_box_ops.py).

Anchor layers are the NumPy (y, x, h, w) tuples of nets/anchors.py; offsets are `[dx, dy, dw, dh]`.
"""
import tensorflow.compat.v1 as tf

from nets import np_box_ops


def _grid(anchor_layer):
    """(y [H, W, 1], x [H, W, 1], h [A], w [A]) constants; they broadcast to [..., H, W, A]."""
    return tuple(tf.constant(a) for a in anchor_layer)


def encode_layer(boxes, anchor_layer, prior_scaling):
    """Corner boxes [H, W, A, 4] (one per anchor) → offsets [H, W, A, 4]."""
    return np_box_ops.encode(boxes, _grid(anchor_layer), prior_scaling, xp=tf)


def decode_layer(offsets, anchor_layer, prior_scaling):
    """Offsets [..., H, W, A, 4] → corner boxes [..., H, W, A, 4], normalised."""
    return np_box_ops.decode(offsets, _grid(anchor_layer), prior_scaling, xp=tf)


def decode_all(localisations, anchors, prior_scaling, scope='ssd_bboxes_decode'):
    """Per-layer offsets [..., H_i, W_i, A_i, 4] → list of per-layer corner boxes, same shapes."""
    with tf.name_scope(scope):
        return [decode_layer(loc, layer, prior_scaling) for loc, layer in zip(localisations, anchors)]
