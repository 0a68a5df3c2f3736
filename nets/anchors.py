"""SSD anchor (default box) generation, NumPy only.

Per feature layer an anchor set is `(y, x, h, w)` in normalised image coordinates:
`y`, `x` of shape [H, W, 1] are the cell centres, `h`, `w` of shape [A] the anchor sizes, so that
broadcasting gives the [H, W, A] anchors in the same order as the network's [B, H, W, A, ...] outputs.
"""
import math

import numpy as np

from nets import ssd_params
from utils import boxes as boxes_lib


def anchors_one_layer(img_shape, feat_shape, sizes, ratios, step, offset=0.5, dtype=np.float32):
    """Anchors of one feature layer.

    Args:
      img_shape: (height, width) of the network input, pixels.
      feat_shape: (H, W) cells of the layer.
      sizes: (s_k, s_k+1) pixels; gives square anchors s_k and sqrt(s_k * s_k+1).
      ratios: aspect ratios r = w / h of extra anchors of area s_k^2.
      step: pixels between neighbouring centres.
      offset: centre position inside a cell, in cells.
    Returns:
      (y [H, W, 1], x [H, W, 1], h [A], w [A]) normalised to [0, 1] by `img_shape`.
    """
    y, x = np.mgrid[0:feat_shape[0], 0:feat_shape[1]]
    y = ((y.astype(dtype) + offset) * step / img_shape[0])[..., None]
    x = ((x.astype(dtype) + offset) * step / img_shape[1])[..., None]
    h = [sizes[0] / img_shape[0], math.sqrt(sizes[0] * sizes[1]) / img_shape[0]]
    w = [sizes[0] / img_shape[1], math.sqrt(sizes[0] * sizes[1]) / img_shape[1]]
    for ratio in ratios:
        h.append(sizes[0] / img_shape[0] / math.sqrt(ratio))
        w.append(sizes[0] / img_shape[1] * math.sqrt(ratio))
    return y.astype(dtype), x.astype(dtype), np.asarray(h, dtype), np.asarray(w, dtype)


def anchors_all_layers(params, img_shape=None, dtype=np.float32):
    """Anchors of every feature layer of `params` (an SSDParams), as a list of (y, x, h, w)."""
    img_shape = params.img_shape if img_shape is None else img_shape
    return [anchors_one_layer(img_shape, params.feat_shapes[i], params.anchor_sizes[i],
                              params.anchor_ratios[i], params.anchor_steps[i],
                              params.anchor_offset, dtype)
            for i in range(len(params.feat_layers))]


def anchor_grid(anchor_layer):
    """Broadcasts one layer's (y, x, h, w) to four [H, W, A] arrays (centres and sizes per anchor)."""
    y, x, h, w = anchor_layer
    shape = (y.shape[0], y.shape[1], h.shape[0])
    return tuple(np.broadcast_to(a, shape) for a in (y, x, h, w))


def flat_anchor_grid(anchors):
    """All layers' anchors as four [sum(H*W*A)] arrays (y, x, h, w): layer by layer, each in
    (H, W, A) order, as the flattened network outputs."""
    grids = [anchor_grid(layer) for layer in anchors]
    return tuple(np.concatenate([grid[k].reshape(-1) for grid in grids]) for k in range(4))


def flat_anchor_boxes(anchors):
    """All layers' anchors as corner boxes [sum(H*W*A), 4] `[ymin, xmin, ymax, xmax]`, normalised,
    in the order of `flat_anchor_grid`."""
    y, x, h, w = flat_anchor_grid(anchors)
    return boxes_lib.from_centres(y, x, h, w)


def total_anchors(params):
    """Number of anchors over all layers (8732 for SSD300)."""
    return sum(h * w * ssd_params.num_anchors_per_cell(params, i)
               for i, (h, w) in enumerate(params.feat_shapes))
