"""SSD post-processing in the TensorFlow graph (standard ops only, so it exports to TF Serving).

Per image: decode every anchor's offsets, clip the boxes to `bbox_img` and re-express them in its
frame; per class (background excluded) keep the scores > `select_threshold`, take the `top_k`
best, run NMS (a box is dropped when its IoU with a kept box of the same class is
> `nms_threshold`); finally keep the `keep_top_k` best detections over all classes, sorted by score.
nets/np_postprocess.py is the same computation in NumPy.
"""
import tensorflow.compat.v1 as tf

from nets import box_coding
from utils import boxes as boxes_lib
from utils.ssd_defaults import KEEP_TOP_K, NMS_THRESHOLD, TOP_K


def _flatten(tensors, batch, depth):
    return tf.concat([tf.reshape(t, [batch, -1, depth]) for t in tensors], axis=1)


def detected_bboxes(predictions, localisations, anchors, prior_scaling, select_threshold=0.01,
                    nms_threshold=NMS_THRESHOLD, top_k=TOP_K, keep_top_k=KEEP_TOP_K, bbox_img=None,
                    scope='ssd_detections'):
    """Final detections of a batch.

    Args:
      predictions: list per layer of float [B, H, W, A, C] class probabilities (class 0 = background).
      localisations: list per layer of float [B, H, W, A, 4] offsets `[dx, dy, dw, dh]`.
      anchors: list per layer of NumPy (y, x, h, w) (nets/anchors.py).
      bbox_img: None (= [0, 0, 1, 1]), [4] or [B, 4] `[ymin, xmin, ymax, xmax]` normalised: the
        part of the network input that is the image.
    Returns:
      dict: `detection_boxes` float32 [B, K, 4] normalised relative to `bbox_img`,
      `detection_scores` float32 [B, K], `detection_classes` int64 [B, K], `num_detections`
      int32 [B], K = keep_top_k; rows past num_detections are zero; sorted by score, descending.
    """
    with tf.name_scope(scope):
        num_classes = predictions[0].get_shape().as_list()[-1]
        batch = tf.shape(predictions[0])[0]
        boxes = _flatten(box_coding.decode_all(localisations, anchors, prior_scaling), batch, 4)
        scores = _flatten(predictions, batch, num_classes)[:, :, 1:]            # [B, M, C-1]
        num_anchors = sum(y.size * h.size for y, _, h, _ in anchors)   # y is [H, W, 1], h is [A]

        window = tf.constant([0., 0., 1., 1.]) if bbox_img is None else tf.cast(bbox_img, tf.float32)
        window = tf.broadcast_to(tf.reshape(window, [-1, 1, 4]), [batch, 1, 4])
        boxes = boxes_lib.clip_to_window(boxes, window, xp=tf)
        boxes = boxes_lib.relative_to_window(boxes, window, xp=tf)

        scores = tf.where(scores > select_threshold, scores, tf.zeros_like(scores))
        k = min(top_k, num_anchors)
        top_scores, top_index = tf.nn.top_k(tf.transpose(scores, [0, 2, 1]), k=k)  # [B, C-1, k]
        top_boxes = tf.gather(boxes, top_index, batch_dims=1)                       # [B, C-1, k, 4]
        nms_boxes, nms_scores, nms_classes, count = tf.image.combined_non_max_suppression(
            tf.transpose(top_boxes, [0, 2, 1, 3]), tf.transpose(top_scores, [0, 2, 1]),
            max_output_size_per_class=k, max_total_size=keep_top_k, iou_threshold=nms_threshold,
            score_threshold=select_threshold, pad_per_class=False, clip_boxes=False)
        filled = tf.range(keep_top_k)[None, :] < count[:, None]
        # combined NMS counts classes from 0 and pads with class 0: shift past background, re-zero padding.
        classes = tf.where(filled, tf.cast(nms_classes, tf.int64) + 1, tf.zeros_like(filled, tf.int64))
        return {
            'detection_boxes': tf.identity(nms_boxes, name='detection_boxes'),
            'detection_scores': tf.identity(nms_scores, name='detection_scores'),
            'detection_classes': tf.identity(classes, name='detection_classes'),
            'num_detections': tf.identity(count, name='num_detections'),
        }
