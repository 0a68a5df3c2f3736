"""TensorFlow encoding/decoding of boxes relative to SSD anchors (formulas in utils/boxes.py).

Anchors are NumPy (y, x, h, w) tuples (nets/anchors.py) that broadcast against the boxes;
offsets are `[dx, dy, dw, dh]`, boxes `[ymin, xmin, ymax, xmax]` normalised.
"""
import tensorflow.compat.v1 as tf

from utils import boxes as boxes_lib


def _grid(anchor_grid):
    """NumPy (y, x, h, w) → the same four arrays as graph constants."""
    return tuple(tf.constant(a) for a in anchor_grid)


def encode(boxes, anchor_grid, prior_scaling):
    """Corner boxes [..., 4] (one per anchor) → offsets [..., 4].

    `anchor_grid` is NumPy (y, x, h, w) broadcastable to `boxes[..., 0]`: one layer's
    (y [H, W, 1], x [H, W, 1], h [A], w [A]) for [H, W, A] boxes, or anchors.flat_anchor_grid
    for [sum(H*W*A)] boxes.
    """
    return boxes_lib.encode(boxes, _grid(anchor_grid), prior_scaling, xp=tf)


def decode(offsets, anchor_grid, prior_scaling):
    """Offsets [..., 4] → corner boxes [..., 4], normalised; e.g. one layer's [..., H, W, A, 4]
    with that layer's (y, x, h, w) (the leading batch dimensions broadcast)."""
    return boxes_lib.decode(offsets, _grid(anchor_grid), prior_scaling, xp=tf)


def decode_all(localisations, anchors, prior_scaling, scope='ssd_bboxes_decode'):
    """Per-layer offsets [..., H_i, W_i, A_i, 4] → list of per-layer corner boxes, same shapes."""
    with tf.name_scope(scope):
        return [decode(loc, layer, prior_scaling) for loc, layer in zip(localisations, anchors)]
