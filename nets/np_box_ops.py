"""Box arithmetic written once for NumPy and TensorFlow (NumPy only is imported here).

Boxes are corners `[ymin, xmin, ymax, xmax]`, normalised. The formulas take an array module
`xp` (``numpy`` by default; ``tensorflow.compat.v1`` works too, see nets/box_coding.py) so the
graph used for export and the NumPy code used by clients cannot drift apart.

Encoded offsets follow the public SSD-Tensorflow layout (so its checkpoints' box heads fit):
`[dx, dy, dw, dh]` with dx = (cx - x_a) / w_a / prior_scaling[1], dy = (cy - y_a) / h_a / prior_scaling[0],
dw = log(w / w_a) / prior_scaling[3], dh = log(h / h_a) / prior_scaling[2].
"""
import numpy as np

_EPS = 1e-12


def encode(boxes, anchor_grid, prior_scaling, xp=np):
    """Corner boxes [..., 4] → offsets [..., 4] relative to anchors.

    `anchor_grid` is (y, x, h, w) broadcastable to `boxes[..., 0]` (e.g. anchors.anchor_grid).
    Boxes must have positive height and width.
    """
    ya, xa, ha, wa = anchor_grid
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + h / 2.
    cx = boxes[..., 1] + w / 2.
    return xp.stack([(cx - xa) / wa / prior_scaling[1],
                     (cy - ya) / ha / prior_scaling[0],
                     xp.log(w / wa) / prior_scaling[3],
                     xp.log(h / ha) / prior_scaling[2]], axis=-1)


def decode(offsets, anchor_grid, prior_scaling, xp=np):
    """Offsets [..., 4] (`[dx, dy, dw, dh]`) → corner boxes [..., 4], the inverse of `encode`."""
    ya, xa, ha, wa = anchor_grid
    cx = offsets[..., 0] * wa * prior_scaling[1] + xa
    cy = offsets[..., 1] * ha * prior_scaling[0] + ya
    w = wa * xp.exp(offsets[..., 2] * prior_scaling[3])
    h = ha * xp.exp(offsets[..., 3] * prior_scaling[2])
    return xp.stack([cy - h / 2., cx - w / 2., cy + h / 2., cx + w / 2.], axis=-1)


def area(boxes, xp=np):
    """Areas [...] of corner boxes [..., 4] (0 for inverted boxes)."""
    return (xp.maximum(boxes[..., 2] - boxes[..., 0], 0.) *
            xp.maximum(boxes[..., 3] - boxes[..., 1], 0.))


def iou(boxes_a, boxes_b, xp=np):
    """Pairwise intersection over union: [N, 4] x [M, 4] → [N, M] (0 where the union is empty)."""
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    inter_h = xp.maximum(xp.minimum(a[..., 2], b[..., 2]) - xp.maximum(a[..., 0], b[..., 0]), 0.)
    inter_w = xp.maximum(xp.minimum(a[..., 3], b[..., 3]) - xp.maximum(a[..., 1], b[..., 1]), 0.)
    inter = inter_h * inter_w
    union = area(a, xp) + area(b, xp) - inter
    return inter / xp.maximum(union, _EPS)


def clip_to_window(boxes, window, xp=np):
    """Clips corner boxes [..., 4] to `window` `[ymin, xmin, ymax, xmax]` (broadcastable to [..., 4])."""
    lower = xp.stack([window[..., 0], window[..., 1], window[..., 0], window[..., 1]], axis=-1)
    upper = xp.stack([window[..., 2], window[..., 3], window[..., 2], window[..., 3]], axis=-1)
    return xp.minimum(xp.maximum(boxes, lower), upper)


def relative_to_window(boxes, window, xp=np):
    """Re-expresses boxes [..., 4] in the frame of `window` (its corners become 0 and 1)."""
    origin = xp.stack([window[..., 0], window[..., 1], window[..., 0], window[..., 1]], axis=-1)
    height = window[..., 2] - window[..., 0]
    width = window[..., 3] - window[..., 1]
    scale = xp.stack([height, width, height, width], axis=-1)
    return (boxes - origin) / scale


def nms(boxes, scores, iou_threshold, max_output):
    """Greedy non-maximum suppression (NumPy) as tf.image.non_max_suppression does it.

    Boxes [N, 4], scores [N]; a box is dropped when its IoU with a kept, higher-scoring box is
    strictly greater than `iou_threshold`. Returns the kept indices, by decreasing score.
    """
    order = np.argsort(-scores, kind='stable')
    # later[i, j]: box j comes after box i and overlaps it too much. Only rows with such a j can
    # suppress anything, so the greedy pass visits those rows alone.
    later = np.triu(iou(boxes[order], boxes[order]) > iou_threshold, k=1)
    suppressed = np.zeros(len(order), dtype=bool)
    for i in np.nonzero(later.any(axis=1))[0]:
        if not suppressed[i]:
            suppressed |= later[i]
    return order[~suppressed][:max_output].astype(np.int64)
