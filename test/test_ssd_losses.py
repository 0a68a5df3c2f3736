"""SSD loss on hand-built cases and against an independent NumPy reference."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import ssd_losses

tf.disable_eager_execution()


def _loss(logits, locs, gclasses, glocs, gscores, **kwargs):
    """Runs ssd_losses on per-layer NumPy arrays; returns (total, parts by name)."""
    with tf.Graph().as_default():
        const = lambda arrays: [tf.constant(a) for a in arrays]
        total = ssd_losses.ssd_losses(const(logits), const(locs), const(gclasses), const(glocs),
                                      const(gscores), **kwargs)
        parts = {t.op.name.split('/')[-1]: t for t in tf.losses.get_losses()}
        with tf.Session() as sess:
            return sess.run((total, parts))


def _hand_case():
    """Six anchors of one image over two layers ([1, 1, 2, 1, 2] and [1, 2, 2, 1, 2]), 2 classes.

    anchor 0: positive class 1, logits (0, 0); anchors 1-4: candidates with logits (0, a),
    a = 2, 1, 0, -1; anchor 5: unmatched but IoU 0.6 >= match_threshold, logits (0, 3): never a negative.
    """
    logits = np.array([[0, 0], [0, 2], [0, 1], [0, 0], [0, -1], [0, 3]], np.float32)
    gclasses = np.array([1, 0, 0, 0, 0, 0], np.int64)
    gscores = np.array([.7, .1, .1, .1, .1, .6], np.float32)
    locs = np.full((6, 4), 10., np.float32)       # background offsets must not count
    locs[0] = [.5, -2, 0, 0]
    glocs = np.zeros((6, 4), np.float32)
    split = lambda a: [a[:2].reshape((1, 1, 2, 1) + a.shape[1:]), a[2:].reshape((1, 2, 2, 1) + a.shape[1:])]
    return split(logits), split(locs), split(gclasses), split(glocs), split(gscores)


def test_hand_built_case():
    total, parts = _loss(*_hand_case(), negative_ratio=3.)
    # Positive: CE = log 2. Negatives: the 3 hardest of log(1 + e^a), a in {2, 1, 0, -1}.
    ce_pos = np.log(2.)
    ce_neg = np.log1p(np.exp(2.)) + np.log1p(np.exp(1.)) + np.log(2.)
    loc = 0.5 * 0.5 ** 2 + (2 - 0.5)              # smooth L1 of (0.5, -2, 0, 0)
    np.testing.assert_allclose(parts['cross_entropy_pos'], ce_pos, rtol=1e-6)
    np.testing.assert_allclose(parts['cross_entropy_neg'], ce_neg, rtol=1e-6)
    np.testing.assert_allclose(parts['localization'], loc, rtol=1e-6)
    np.testing.assert_allclose(total, ce_pos + ce_neg + loc, rtol=1e-6)
    assert abs(total - 6.451484) < 1e-5


def test_negatives_are_mined_per_image():
    # A second image without positives (background only) mines as many negatives as the mean
    # image with objects (here 3 x 1: the same three anchors); N_pos over the batch stays 1.
    one = _hand_case()
    two = [[np.concatenate([a, np.where(a == 1, 0, a) if a.dtype == np.int64 else a]) for a in field]
           for field in one]
    (total1, parts1), (total2, parts2) = _loss(*one), _loss(*two)
    np.testing.assert_allclose(parts2['cross_entropy_neg'], 2 * parts1['cross_entropy_neg'],
                               rtol=1e-6)
    np.testing.assert_allclose(total2, total1 + parts1['cross_entropy_neg'], rtol=1e-6)


def test_a_batch_without_positives_learns_from_its_hardest_negatives():
    logits, locs, gclasses, glocs, gscores = _hand_case()
    gclasses = [np.zeros_like(g) for g in gclasses]
    total, parts = _loss(logits, locs, gclasses, glocs, gscores, negative_ratio=2.)
    # No positive, no box to regress: the 2 x 1 hardest candidates (a = 2, 1) over N_pos = 1.
    assert parts['cross_entropy_pos'] == 0. and parts['localization'] == 0.
    np.testing.assert_allclose(total, np.log1p(np.exp(2.)) + np.log1p(np.exp(1.)), rtol=1e-6)


def test_class_weights_scale_each_target_class():
    # Class 1 weighs 3, the background 0.5: the mined negatives stay the same three anchors.
    (_, plain), (_, weighted) = _loss(*_hand_case()), _loss(*_hand_case(),
                                                             class_weights=[.5, 3.])
    np.testing.assert_allclose(weighted['cross_entropy_pos'], 3 * plain['cross_entropy_pos'],
                               rtol=1e-6)
    np.testing.assert_allclose(weighted['cross_entropy_neg'], .5 * plain['cross_entropy_neg'],
                               rtol=1e-6)
    np.testing.assert_allclose(weighted['localization'], plain['localization'], rtol=1e-6)


def reference_loss(logits, locs, gclasses, glocs, gscores, threshold, ratio, alpha, smoothing,
                   class_weights=None):
    """Plain NumPy SSD loss, one image at a time with an explicit sort."""
    batch, num_classes = logits[0].shape[0], logits[0].shape[-1]
    flat = lambda a, *tail: np.concatenate([x.reshape((batch, -1) + tail) for x in a], axis=1)
    logits, locs, glocs = flat(logits, num_classes), flat(locs, 4), flat(glocs, 4)
    gclasses, gscores = flat(gclasses), flat(gscores)
    pos_total = neg_total = loc_total = 0.
    num_pos = 0
    positives = (gclasses > 0).sum(axis=1)
    mean_positives = max(positives.sum() / max((positives > 0).sum(), 1), 1)
    for b in range(batch):
        z = logits[b] - logits[b].max(-1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
        target = np.eye(num_classes)[gclasses[b]] * (1 - smoothing) + smoothing / num_classes
        ce = -(target * log_p).sum(-1)
        hardest_first = np.argsort(-ce, kind='stable')  # mined before any weighting
        if class_weights is not None:
            ce = ce * np.asarray(class_weights)[gclasses[b]]
        pos = gclasses[b] > 0
        num_pos += pos.sum()
        pos_total += ce[pos].sum()
        diff = np.abs(locs[b] - glocs[b])
        loc_total += np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5)[pos].sum()
        candidates = np.nonzero(~pos & (gscores[b] < threshold))[0]
        candidates = hardest_first[np.isin(hardest_first, candidates)]
        hardest = candidates[:int(ratio * (pos.sum() or mean_positives))]
        neg_total += ce[hardest].sum()
    n = max(num_pos, 1)
    return (pos_total + neg_total + alpha * loc_total) / n


@pytest.mark.parametrize('class_weights, empty_image', [(None, False), ([.7, 2., .5, 1.5], False),
                                                       (None, True)])
def test_random_case_matches_numpy_reference(class_weights, empty_image):
    rng = np.random.RandomState(3)
    shapes = [(3, 4, 4, 3), (3, 2, 2, 5), (3, 1, 1, 2)]
    logits = [rng.randn(*s, 4).astype(np.float32) * 2 for s in shapes]
    locs = [rng.randn(*s, 4).astype(np.float32) for s in shapes]
    glocs = [rng.randn(*s, 4).astype(np.float32) for s in shapes]
    gclasses = [np.where(rng.rand(*s) < .1, rng.randint(1, 4, size=s), 0).astype(np.int64) for s in shapes]
    if empty_image:  # the middle image background only
        for g in gclasses:
            g[1] = 0
    gscores = [rng.rand(*s).astype(np.float32) for s in shapes]
    kwargs = dict(match_threshold=.5, negative_ratio=3., alpha=.7, label_smoothing=.1,
                  class_weights=class_weights)
    total, _ = _loss(logits, locs, gclasses, glocs, gscores, **kwargs)
    expected = reference_loss(logits, locs, gclasses, glocs, gscores, .5, 3., .7, .1,
                              class_weights)
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_gradients_reach_logits_and_localisations():
    with tf.Graph().as_default():
        logits, locs, gclasses, glocs, gscores = [[tf.constant(a) for a in f] for f in _hand_case()]
        total = ssd_losses.ssd_losses(logits, locs, gclasses, glocs, gscores)
        grads = tf.gradients(total, logits + locs)
        with tf.Session() as sess:
            values = sess.run(grads)
    assert all(g is not None for g in grads)
    assert np.abs(values[0]).sum() > 0 and np.abs(values[2]).sum() > 0
