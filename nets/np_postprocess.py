"""SSD post-processing for one image in NumPy (clients without TensorFlow), the same computation
as nets/postprocess.py: decode, clip to `bbox_img` and re-express in its frame, per class score
threshold (strict >) → top_k → NMS (drop IoU > nms_threshold), then keep_top_k over all classes.
The box formulas are utils/boxes.py's, as in the graph.
"""
import numpy as np

from utils import boxes as boxes_lib
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K


def _per_anchor(tensors, depth):
    """Per-layer [H, W, A, depth] or [1, H, W, A, depth] arrays → [sum(H*W*A), depth]."""
    return np.concatenate([np.asarray(t).reshape(-1, depth) for t in tensors], axis=0)


def nms(boxes, scores, iou_threshold, max_output):
    """Greedy non-maximum suppression as tf.image.non_max_suppression does it.

    Boxes [N, 4], scores [N]; a box is dropped when its IoU with a kept, higher-scoring box is
    strictly greater than `iou_threshold`. Returns the kept indices int64, by decreasing score.
    """
    order = np.argsort(-scores, kind='stable')
    # later[i, j]: box j comes after box i and overlaps it too much. Only rows with such a j can
    # suppress anything, so the greedy pass visits those rows alone.
    later = np.triu(boxes_lib.iou(boxes[order], boxes[order]) > iou_threshold, k=1)
    suppressed = np.zeros(len(order), dtype=bool)
    for i in np.nonzero(later.any(axis=1))[0]:
        if not suppressed[i]:
            suppressed |= later[i]
    return order[~suppressed][:max_output].astype(np.int64)


def decode(localisations, anchors, prior_scaling):
    """Per-layer offsets ([1,] H, W, A, 4) → corner boxes [sum(H*W*A), 4] normalised."""
    return np.concatenate([
        boxes_lib.decode(np.asarray(loc).reshape(layer[0].shape[:2] + layer[2].shape + (4,)),
                          layer, prior_scaling).reshape(-1, 4)
        for loc, layer in zip(localisations, anchors)], axis=0)


def detect(predictions, localisations, anchors, prior_scaling, select_threshold=0.01,
           nms_threshold=NMS_THRESHOLD, top_k=TOP_K, keep_top_k=KEEP_TOP_K, bbox_img=None):
    """Detections of ONE image.

    Args:
      predictions: list per layer of [H, W, A, C] (or [1, H, W, A, C]) class probabilities.
      localisations: list per layer of [H, W, A, 4] (or [1, ...]) offsets `[dx, dy, dw, dh]`.
      anchors: list per layer of (y, x, h, w) (nets/anchors.py); prior_scaling: (y, x, h, w).
      bbox_img: None (= [0, 0, 1, 1]) or `[ymin, xmin, ymax, xmax]` of the image in the input.
    Returns:
      dict: `detection_boxes` float32 [K, 4] normalised relative to bbox_img, `detection_scores`
      float32 [K], `detection_classes` int64 [K], `num_detections` int; K = keep_top_k, rows past
      num_detections are zero, sorted by score descending.
    """
    num_classes = np.asarray(predictions[0]).shape[-1]
    scores = _per_anchor(predictions, num_classes).astype(np.float32)
    window = np.asarray([0., 0., 1., 1.] if bbox_img is None else bbox_img, np.float32)
    boxes = boxes_lib.clip_to_window(decode(localisations, anchors, prior_scaling), window)
    boxes = boxes_lib.relative_to_window(boxes, window).astype(np.float32)

    found_scores, found_classes, found_boxes = [], [], []
    for cls in range(1, num_classes):
        candidates = np.nonzero(scores[:, cls] > select_threshold)[0]
        candidates = candidates[np.argsort(-scores[candidates, cls], kind='stable')][:top_k]
        kept = candidates[nms(boxes[candidates], scores[candidates, cls], nms_threshold, top_k)]
        found_scores.append(scores[kept, cls])
        found_classes.append(np.full(len(kept), cls, np.int64))
        found_boxes.append(boxes[kept])
    found_scores = np.concatenate(found_scores)
    best = np.argsort(-found_scores, kind='stable')[:keep_top_k]
    count = len(best)

    out_boxes = np.zeros((keep_top_k, 4), np.float32)
    out_scores = np.zeros(keep_top_k, np.float32)
    out_classes = np.zeros(keep_top_k, np.int64)
    out_boxes[:count] = np.concatenate(found_boxes)[best]
    out_scores[:count] = found_scores[best]
    out_classes[:count] = np.concatenate(found_classes)[best]
    return {'detection_boxes': out_boxes, 'detection_scores': out_scores,
            'detection_classes': out_classes, 'num_detections': count}
