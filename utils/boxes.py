"""Box formulas, each written once for NumPy and TensorFlow (only NumPy is imported here).

Boxes are corners ``[..., 4]`` = ``[ymin, xmin, ymax, xmax]``, in any one frame: normalised to
[0, 1] (relative to an image or to the network input) or pixels (0-based, continuous), as long as
every argument of a call uses the same frame. A *window* is a box ``[..., 4]`` of that frame, e.g.
the part ``bbox_img`` of the network input that shows the image, or a crop; it broadcasts
against the boxes' leading dimensions.

Every function takes ``xp``, the array namespace that runs the formula: ``numpy`` (default) or
``tensorflow.compat.v1`` (both spell ``maximum``, ``minimum``, ``log``, ``exp``, ``stack`` and
``zeros_like`` alike), so the graph that TF Serving runs and the NumPy code of clients cannot
drift apart. With ``xp=tf`` the arguments must be tensors of one float dtype.

Encoded offsets follow the public SSD-Tensorflow layout (so its checkpoints' box heads fit):
``[dx, dy, dw, dh]`` with dx = (cx - x_a) / w_a / prior_scaling[1],
dy = (cy - y_a) / h_a / prior_scaling[0], dw = log(w / w_a) / prior_scaling[3],
dh = log(h / h_a) / prior_scaling[2], for an anchor of centre (y_a, x_a) and size (h_a, w_a).
"""
import numpy as np

EPS = 1e-12   # floor of a union, so that two empty boxes overlap by 0 rather than NaN


def from_centres(cy, cx, h, w, xp=np):
    """Corner boxes ``[..., 4]`` from centres and sizes (four broadcastable arrays)."""
    return xp.stack([cy - h / 2., cx - w / 2., cy + h / 2., cx + w / 2.], axis=-1)


def to_centres(boxes):
    """``(cy, cx, h, w)`` of corner boxes ``[..., 4]``, four arrays ``[...]``."""
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + h / 2., boxes[..., 1] + w / 2., h, w


def area(boxes, xp=np):
    """Areas ``[...]`` of corner boxes ``[..., 4]`` (0 for inverted boxes)."""
    return (xp.maximum(boxes[..., 2] - boxes[..., 0], 0.) *
            xp.maximum(boxes[..., 3] - boxes[..., 1], 0.))


def intersection(boxes_a, boxes_b, xp=np):
    """Pairwise intersection areas: ``[N, 4]`` x ``[M, 4]`` → ``[N, M]``."""
    a = boxes_a[:, None, :]
    b = boxes_b[None, :, :]
    return area(xp.stack([xp.maximum(a[..., 0], b[..., 0]), xp.maximum(a[..., 1], b[..., 1]),
                          xp.minimum(a[..., 2], b[..., 2]), xp.minimum(a[..., 3], b[..., 3])],
                         axis=-1), xp)


def iou(boxes_a, boxes_b, xp=np):
    """Pairwise intersection over union: ``[N, 4]`` x ``[M, 4]`` → ``[N, M]``, continuous (no
    VOC ``+1``); 0 where the union is empty."""
    inter = intersection(boxes_a, boxes_b, xp)
    union = area(boxes_a, xp)[:, None] + area(boxes_b, xp)[None, :] - inter
    return inter / xp.maximum(union, EPS)


def _window_corners(window, xp):
    """``window [..., 4]`` → its near and far corners, each repeated to ``[y, x, y, x]``."""
    near = xp.stack([window[..., 0], window[..., 1], window[..., 0], window[..., 1]], axis=-1)
    far = xp.stack([window[..., 2], window[..., 3], window[..., 2], window[..., 3]], axis=-1)
    return near, far


def clip_to_window(boxes, window, xp=np):
    """Clips boxes ``[..., 4]`` to ``window`` (same frame); a box outside collapses onto its
    edge."""
    near, far = _window_corners(window, xp)
    return xp.minimum(xp.maximum(boxes, near), far)


def relative_to_window(boxes, window, xp=np):
    """Re-expresses boxes ``[..., 4]`` in the frame of ``window``: its corners become 0 and 1.
    No clipping: a window smaller than the boxes' extent (a crop) gives coordinates past [0, 1]."""
    near, far = _window_corners(window, xp)
    return (boxes - near) / (far - near)


def absolute_from_window(boxes, window, xp=np):
    """The inverse of ``relative_to_window``: boxes ``[..., 4]`` given in the frame of ``window``
    → the frame ``window`` is expressed in."""
    near, far = _window_corners(window, xp)
    return boxes * (far - near) + near


def pixel_window(image_shape, xp=np):
    """The window ``[..., 4]`` = ``[0, 0, height, width]`` of images of ``image_shape`` ``[..., 2]``
    (height, width): boxes normalised to an image are relative to it in pixels, so
    ``absolute_from_window(boxes, pixel_window(shape))`` gives pixels and ``relative_to_window``
    the other way back."""
    height, width = image_shape[..., 0], image_shape[..., 1]
    zero = xp.zeros_like(height)
    return xp.stack([zero, zero, height, width], axis=-1)


def encode(boxes, anchor_grid, prior_scaling, xp=np):
    """Corner boxes ``[..., 4]`` → offsets ``[dx, dy, dw, dh]`` ``[..., 4]`` relative to anchors.

    ``anchor_grid`` is ``(y, x, h, w)`` broadcastable to ``boxes[..., 0]`` (e.g. one layer of
    nets/anchors.py, or its flat grid); boxes must have positive height and width (log of sizes).
    """
    ya, xa, ha, wa = anchor_grid
    cy, cx, h, w = to_centres(boxes)
    return xp.stack([(cx - xa) / wa / prior_scaling[1],
                     (cy - ya) / ha / prior_scaling[0],
                     xp.log(w / wa) / prior_scaling[3],
                     xp.log(h / ha) / prior_scaling[2]], axis=-1)


def decode(offsets, anchor_grid, prior_scaling, xp=np):
    """Offsets ``[..., 4]`` (``[dx, dy, dw, dh]``) → corner boxes ``[..., 4]``, the inverse of
    ``encode``."""
    ya, xa, ha, wa = anchor_grid
    return from_centres(offsets[..., 1] * ha * prior_scaling[0] + ya,
                        offsets[..., 0] * wa * prior_scaling[1] + xa,
                        ha * xp.exp(offsets[..., 3] * prior_scaling[2]),
                        wa * xp.exp(offsets[..., 2] * prior_scaling[3]), xp)
