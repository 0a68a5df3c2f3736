"""Ground-truth to anchor matching as in the SSD paper, vectorised over boxes and anchors.

1. Every ground-truth box takes the anchor that overlaps it best, whatever the IoU
   (when two boxes share that anchor, the one with the higher IoU keeps it).
2. Every other anchor takes the box it overlaps best when that IoU is >= `match_threshold`.
Anchors matched by neither are background (class 0). One IoU matrix [N, num_anchors] is
computed for all boxes and all anchors at once: no loop over boxes.
"""
import numpy as np
import tensorflow.compat.v1 as tf

from nets import anchors as anchors_lib
from nets import box_coding
from utils import boxes as boxes_lib
from utils.ssd_defaults import MATCH_THRESHOLD


def match(gt_boxes, valid, anchor_boxes, match_threshold=MATCH_THRESHOLD):
    """Matches N boxes to M anchors.

    Args:
      gt_boxes: float32 [N, 4] corner boxes, normalised.
      valid: bool [N], False for boxes that must not be matched (padding, background label).
      anchor_boxes: float32 [M, 4] corner anchors.
      match_threshold: IoU from which an anchor is matched without being some box's best anchor.
    Returns:
      (matched_index int32 [M], positive bool [M], iou float32 [M]): the box index each anchor is
      compared with (its match when positive, its best-overlapping box otherwise), whether it is
      matched, and its IoU with that box.
    """
    overlaps = boxes_lib.iou(gt_boxes, anchor_boxes, xp=tf)
    overlaps = overlaps * tf.cast(valid, overlaps.dtype)[:, None]   # invalid boxes overlap nothing
    # A box overlapping no anchor at all (empty, or outside the image) forces no match.
    valid = tf.logical_and(valid, tf.reduce_max(overlaps, axis=1) > 0.)
    best_anchor = tf.argmax(overlaps, axis=1, output_type=tf.int32)  # [N]
    forced = tf.logical_and(
        tf.one_hot(best_anchor, tf.shape(anchor_boxes)[0], on_value=True, off_value=False),
        valid[:, None])                                                 # [N, M]
    is_forced = tf.reduce_any(forced, axis=0)
    # Among boxes forcing an anchor, the best-overlapping one wins; otherwise the best overall.
    forced_index = tf.argmax(tf.where(forced, overlaps, -tf.ones_like(overlaps)), axis=0,
                             output_type=tf.int32)
    best_index = tf.argmax(overlaps, axis=0, output_type=tf.int32)
    matched_index = tf.where(is_forced, forced_index, best_index)
    matched_iou = tf.gather_nd(overlaps, tf.stack([matched_index, tf.range(tf.size(matched_index))], 1))
    positive = tf.logical_or(is_forced, matched_iou >= match_threshold)
    return matched_index, positive, matched_iou


def bboxes_encode(labels, bboxes, anchors, prior_scaling, match_threshold=MATCH_THRESHOLD,
                  scope='ssd_bboxes_encode'):
    """Training targets of ONE image for every anchor layer.

    Args:
      labels: int [N] class ids (0 = background, never matched).
      bboxes: float32 [N, 4] `[ymin, xmin, ymax, xmax]` normalised; N may be 0.
      anchors: list per layer of NumPy (y, x, h, w) (nets/anchors.py).
      prior_scaling: (y, x, h, w) scaling of the encoded offsets.
    Returns:
      (gclasses, glocalisations, gscores): lists per layer of int64 [H, W, A] (matched label, 0 for
      background), float32 [H, W, A, 4] (encoded matched box, 0 for background) and float32
      [H, W, A] (IoU with the matched box, or with the best-overlapping box for background).
    """
    with tf.name_scope(scope):
        labels = tf.cast(labels, tf.int64)
        bboxes = tf.cast(bboxes, tf.float32)
        anchor_boxes = tf.constant(anchors_lib.flat_anchor_boxes(anchors))
        # A zero-size, label-0 box in front keeps argmax defined when the image has no box.
        gt_boxes = tf.concat([tf.zeros([1, 4]), bboxes], axis=0)
        gt_labels = tf.concat([tf.zeros([1], tf.int64), labels], axis=0)
        matched_index, positive, matched_iou = match(gt_boxes, gt_labels > 0, anchor_boxes,
                                                     match_threshold)
        gclasses = tf.where(positive, tf.gather(gt_labels, matched_index),
                            tf.zeros_like(matched_index, tf.int64))
        # Background anchors are encoded against themselves (no log(0)), then zeroed.
        target_boxes = tf.where(positive, tf.gather(gt_boxes, matched_index), anchor_boxes)
        encoded = box_coding.encode(target_boxes, anchors_lib.flat_anchor_grid(anchors), prior_scaling)
        glocalisations = tf.where(positive, encoded, tf.zeros_like(encoded))

        shapes = [y.shape[:2] + h.shape for y, _, h, _ in anchors]   # (H, W, A) per layer
        sizes = [int(np.prod(shape)) for shape in shapes]
        split = lambda tensor, tail: [tf.reshape(t, shape + tail)
                                      for t, shape in zip(tf.split(tensor, sizes), shapes)]
        return split(gclasses, ()), split(glocalisations, (4,)), split(matched_iou, ())
