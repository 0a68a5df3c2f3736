"""Paper matching and target encoding against an independent NumPy reference."""
import numpy as np
import tensorflow.compat.v1 as tf

from nets import anchors as anchors_lib
from nets import nets_factory

tf.disable_eager_execution()

NET = nets_factory.build_network('ssd_vgg_300', num_classes=6)
ANCHORS = NET.anchors()
FLAT = anchors_lib.flat_anchor_boxes(ANCHORS)
# Best IoU with any SSD300 anchor 0.296 (next best 0.264): below 0.5, yet it must be matched.
THIN_BOX = [0.186, 0.292, 0.489, 0.319]


def reference_iou(box, anchors):
    """IoU of one box with every anchor, written out independently of utils.boxes."""
    ymin, xmin, ymax, xmax = box
    ih = np.clip(np.minimum(ymax, anchors[:, 2]) - np.maximum(ymin, anchors[:, 0]), 0, None)
    iw = np.clip(np.minimum(xmax, anchors[:, 3]) - np.maximum(xmin, anchors[:, 1]), 0, None)
    inter = ih * iw
    areas = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    return inter / ((ymax - ymin) * (xmax - xmin) + areas - inter)


def reference_match(labels, boxes, threshold=0.5):
    """Expected label per flattened anchor: best-anchor forcing, then IoU >= threshold."""
    iou = np.stack([reference_iou(b, FLAT) for b in boxes])          # [N, M]
    expected = np.where(iou.max(0) >= threshold, np.asarray(labels)[iou.argmax(0)], 0)
    for j in np.argsort(iou.max(1)):   # higher-IoU boxes last, so they win a shared anchor
        expected[iou[j].argmax()] = labels[j]
    return expected, iou


def encode(labels, boxes):
    with tf.Graph().as_default():
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        targets = NET.bboxes_encode(tf.constant(labels, tf.int64), tf.constant(boxes), ANCHORS)
        decoded = NET.bboxes_decode(targets[1], ANCHORS)
        with tf.Session() as sess:
            gclasses, glocal, gscores, boxes_out = sess.run(list(targets) + [decoded])
    flat = lambda layers, *tail: np.concatenate([l.reshape((-1,) + tail) for l in layers])
    return flat(gclasses), flat(glocal, 4), flat(gscores), flat(boxes_out, 4)


def test_shapes_follow_the_layers():
    with tf.Graph().as_default():
        gclasses, glocal, gscores = NET.bboxes_encode(tf.constant([1]), tf.constant([[.1, .1, .5, .5]]),
                                                      ANCHORS)
    for layer, c, l, s in zip(ANCHORS, gclasses, glocal, gscores):
        cells = layer[0].shape[:2] + layer[2].shape
        assert c.shape.as_list() == list(cells) and s.shape.as_list() == list(cells)
        assert l.shape.as_list() == list(cells) + [4]
        assert c.dtype == tf.int64


def test_low_overlap_box_gets_exactly_one_positive_anchor():
    gclasses, _, gscores, _ = encode([3], [THIN_BOX])
    iou = reference_iou(THIN_BOX, FLAT)
    assert 0.29 < iou.max() < 0.31
    positives = np.nonzero(gclasses)[0]
    assert list(positives) == [iou.argmax()]
    assert gclasses[positives[0]] == 3
    np.testing.assert_allclose(gscores[positives[0]], iou.max(), atol=1e-5)


def test_matching_and_round_trip_against_reference():
    labels = [1, 4, 2, 5]
    boxes = [[.1, .1, .45, .4], [.5, .55, .95, .9], [.3, .2, .7, .6], THIN_BOX]
    gclasses, glocal, gscores, decoded = encode(labels, boxes)
    expected, iou = reference_match(labels, boxes)
    np.testing.assert_array_equal(gclasses, expected)
    assert (expected > 0).sum() > 20          # threshold matching, not only the forced anchors
    positive = gclasses > 0
    matched = np.asarray(boxes, np.float32)[iou.argmax(0)]
    forced = [row.argmax() for row in iou]
    matched[forced] = np.asarray(boxes, np.float32)     # (no shared best anchor in this case)
    # encode -> decode gives back the matched ground-truth box of every positive anchor.
    np.testing.assert_allclose(decoded[positive], matched[positive], atol=1e-4)
    # gscores is the IoU with the matched box (forced anchors) or the best box (others).
    compared = iou.argmax(0)
    compared[forced] = np.arange(len(boxes))
    np.testing.assert_allclose(gscores, iou[compared, np.arange(len(FLAT))], atol=1e-5)
    assert np.all(glocal[~positive] == 0)


def test_shared_best_anchor_goes_to_the_better_box():
    # Two boxes around the same anchor: the tighter one (higher IoU) keeps the forced match.
    anchor = FLAT[100]
    loose = anchor + np.array([-.02, -.02, .03, .03])
    gclasses, _, _, _ = encode([1, 2], [anchor + .001, loose])
    assert gclasses[100] == 1


def test_degenerate_boxes_are_not_matched():
    # A zero-area box and a box outside the image overlap nothing: no positive, finite targets.
    gclasses, glocal, _, _ = encode([1, 2, 3], [[.5, .5, .5, .5], [2., 2., 2.5, 2.5], [.1, .1, .5, .5]])
    expected, _ = reference_match([3], [[.1, .1, .5, .5]])
    np.testing.assert_array_equal(gclasses, expected)
    assert np.isfinite(glocal).all()


def test_image_without_boxes_is_all_background():
    gclasses, glocal, gscores, _ = encode(np.zeros([0], np.int64), np.zeros([0, 4]))
    assert not gclasses.any() and not gscores.any()
    assert not glocal.any()
