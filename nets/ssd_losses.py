"""SSD multibox loss: softmax cross-entropy with hard-negative mining plus smooth-L1 localisation.

    L = (CE(positives) + CE(mined negatives) + alpha * SmoothL1(positives)) / max(N_pos, 1)

With class weights each anchor's cross-entropy is scaled by the weight of its target class (the
background's for the negatives), as in a weighted softmax cross-entropy; the normaliser stays
N_pos, so weights averaging 1 over the positives keep the loss's scale.

Positives are the anchors the encoder matched (gclasses > 0: each box's best anchor plus every
anchor with IoU >= the encoder's threshold; see nets/matching.py). Negative candidates are the
unmatched anchors whose best IoU is below `match_threshold`; per IMAGE the hardest of them (largest
background cross-entropy), at most `negative_ratio` x that image's positives, are kept, as in the
paper's Caffe implementation. An image without any positive (a background-only photo, kept by the
converter's ``--keep_empty_images``) keeps as many as an average image with objects of the batch
(``negative_ratio`` x the mean positives of those images, at least ``negative_ratio``): it teaches
what is not an object. N_pos counts the positives of the whole batch (at least 1: never a
division by zero).
"""
import tensorflow.compat.v1 as tf

from utils.ssd_defaults import MATCH_THRESHOLD


def _flatten(tensors, batch, tail):
    """List of [B, H_i, W_i, A_i, *tail] → [B, sum(H_i*W_i*A_i), *tail]."""
    return tf.concat([tf.reshape(t, [batch, -1] + list(tail)) for t in tensors], axis=1)


def smooth_l1(x):
    """Elementwise Huber loss with delta 1: 0.5 x^2 where |x| < 1, |x| - 0.5 elsewhere."""
    absx = tf.abs(x)
    return tf.where(absx < 1., 0.5 * tf.square(x), absx - 0.5)


def ssd_losses(logits, localisations, gclasses, glocalisations, gscores,
               match_threshold=MATCH_THRESHOLD, negative_ratio=3., alpha=1., label_smoothing=0.,
               class_weights=None, scope=None):
    """Adds the three SSD losses to the tf.losses collection and returns their sum.

    Args (lists with one entry per feature layer, batched):
      logits: float [B, H, W, A, C]; localisations: float [B, H, W, A, 4] predicted offsets.
      gclasses: int [B, H, W, A] matched labels (0 = background); glocalisations: float
      [B, H, W, A, 4] target offsets; gscores: float [B, H, W, A] IoU with the matched/best box.
      label_smoothing: epsilon mixing the one-hot targets with the uniform distribution.
      class_weights: None, or C floats: the cross-entropy weight of each target class (index 0:
      the background); hard negatives are mined on the unweighted cross-entropy.
    Returns:
      Scalar total loss. The parts are the tensors named `cross_entropy_pos`, `cross_entropy_neg`
      and `localization` (in the loss collection, under the name scope `scope`).
    """
    with tf.name_scope(scope, 'ssd_losses'):
        num_classes = logits[0].get_shape().as_list()[-1]
        batch = tf.shape(logits[0])[0]
        logits = _flatten(logits, batch, [num_classes])
        localisations = _flatten(localisations, batch, [4])
        gclasses = tf.cast(_flatten(gclasses, batch, []), tf.int64)
        glocalisations = _flatten(glocalisations, batch, [4])
        gscores = _flatten(gscores, batch, [])

        positive = gclasses > 0                                               # [B, M]
        fpositive = tf.cast(positive, tf.float32)
        positives_per_image = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)
        normaliser = tf.maximum(tf.reduce_sum(fpositive), 1.)

        targets = tf.one_hot(gclasses, num_classes) * (1. - label_smoothing) + label_smoothing / num_classes
        cross_entropy = -tf.reduce_sum(targets * tf.nn.log_softmax(logits), axis=-1)   # [B, M]

        # Hard negatives: rank the candidates of each image by their background cross-entropy.
        candidate = tf.logical_and(tf.logical_not(positive), gscores < match_threshold)
        mining = tf.where(candidate, tf.stop_gradient(cross_entropy), -tf.ones_like(cross_entropy))
        rank = tf.argsort(tf.argsort(-mining, axis=1, stable=True), axis=1, stable=True)
        has_objects = positives_per_image > 0
        mean_positives = tf.maximum(tf.reduce_sum(fpositive) / tf.maximum(
            tf.reduce_sum(tf.cast(has_objects, tf.float32)), 1.), 1.)
        mined_for = tf.where(has_objects, tf.cast(positives_per_image, tf.float32),
                             tf.fill(tf.shape(positives_per_image), mean_positives))
        max_negatives = tf.minimum(tf.cast(negative_ratio * mined_for, tf.int32),
                                   tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1))
        negative = tf.logical_and(candidate, rank < max_negatives[:, None])
        fnegative = tf.cast(negative, tf.float32)

        if class_weights is not None:
            cross_entropy *= tf.gather(tf.constant(class_weights, tf.float32), gclasses)
        cross_entropy_pos = tf.divide(tf.reduce_sum(cross_entropy * fpositive), normaliser,
                                   name='cross_entropy_pos')
        cross_entropy_neg = tf.divide(tf.reduce_sum(cross_entropy * fnegative), normaliser,
                                   name='cross_entropy_neg')
        location = tf.reduce_sum(smooth_l1(localisations - glocalisations), axis=-1)
        localization = tf.divide(alpha * tf.reduce_sum(location * fpositive), normaliser, name='localization')
        for loss in (cross_entropy_pos, cross_entropy_neg, localization):
            tf.losses.add_loss(loss)
        return tf.add_n([cross_entropy_pos, cross_entropy_neg, localization], name='total')
