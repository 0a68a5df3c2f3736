"""Box encoding/decoding, IoU, clipping and NMS against hand-worked numbers (NumPy and TF)."""
import numpy as np
import tensorflow.compat.v1 as tf

from nets import box_coding, np_box_ops

tf.disable_eager_execution()

SCALING = (0.1, 0.1, 0.2, 0.2)
# One anchor centred at (y, x) = (0.5, 0.5) of size h = 0.2, w = 0.1, as a (y, x, h, w) layer.
ANCHOR = (np.full((1, 1, 1), 0.5, np.float32), np.full((1, 1, 1), 0.5, np.float32),
          np.array([0.2], np.float32), np.array([0.1], np.float32))


def _run(tensor):
    with tf.Session() as sess:
        return sess.run(tensor)


def test_encode_hand_worked():
    # Box centred (0.52, 0.52), h 0.4, w 0.1: dx = 0.02/0.1/0.1 = 2, dy = 0.02/0.2/0.1 = 1,
    # dw = log(0.1/0.1)/0.2 = 0, dh = log(0.4/0.2)/0.2 = 5 ln 2.
    box = np.array([[[[0.32, 0.47, 0.72, 0.57]]]], np.float32)
    expected = [2., 1., 0., 5 * np.log(2.)]
    np.testing.assert_allclose(np_box_ops.encode(box, ANCHOR, SCALING)[0, 0, 0], expected, atol=1e-5)
    np.testing.assert_allclose(_run(box_coding.encode(tf.constant(box), ANCHOR, SCALING))[0, 0, 0],
                               expected, atol=1e-5)


def test_decode_inverts_encode_numpy_and_tf():
    rng = np.random.RandomState(0)
    y, x = np.mgrid[0:3, 0:4].astype(np.float32)
    layer = ((y[..., None] + .5) / 3, (x[..., None] + .5) / 4,
             np.array([.1, .3], np.float32), np.array([.2, .15], np.float32))
    lo = rng.uniform(0, .5, size=(3, 4, 2, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(.05, .5, size=lo.shape)], -1).astype(np.float32)
    offsets = np_box_ops.encode(boxes, layer, SCALING)
    np.testing.assert_allclose(np_box_ops.decode(offsets, layer, SCALING), boxes, atol=1e-6)
    tf_offsets = _run(box_coding.encode(tf.constant(boxes), layer, SCALING))
    np.testing.assert_allclose(tf_offsets, offsets, atol=1e-5)
    batched = tf.constant(np.stack([offsets, offsets]))            # [2, H, W, A, 4]
    np.testing.assert_allclose(_run(box_coding.decode(batched, layer, SCALING)),
                               np.stack([boxes, boxes]), atol=1e-6)


def test_iou_hand_worked():
    a = np.array([[0., 0., 1., 1.], [0., 0., .5, .5]], np.float32)
    b = np.array([[.5, .5, 1.5, 1.5], [2., 2., 3., 3.], [0., 0., 0., 0.]], np.float32)
    # (0,0,1,1) vs (.5,.5,1.5,1.5): inter .25, union 1.75; (0,0,.5,.5) vs it: touch only -> 0.
    expected = [[1 / 7., 0., 0.], [0., 0., 0.]]
    np.testing.assert_allclose(np_box_ops.iou(a, b), expected, atol=1e-7)
    np.testing.assert_allclose(_run(np_box_ops.iou(tf.constant(a), tf.constant(b), xp=tf)), expected,
                               atol=1e-7)


def test_clip_and_relative_to_window_hand_worked():
    window = np.array([.1, .2, .6, .7], np.float32)
    boxes = np.array([[0., .3, .4, .9], [.2, .3, .5, .6]], np.float32)
    clipped = np_box_ops.clip_to_window(boxes, window)
    np.testing.assert_allclose(clipped, [[.1, .3, .4, .7], [.2, .3, .5, .6]], atol=1e-7)
    # Window is 0.5 x 0.5: (y - .1) / .5 and (x - .2) / .5.
    np.testing.assert_allclose(np_box_ops.relative_to_window(clipped, window),
                               [[0., .2, .6, 1.], [.2, .2, .8, .8]], atol=1e-6)


def test_nms_hand_worked():
    boxes = np.array([[0, 0, 1, 1], [0, .1, 1, 1.1], [0, .6, 1, 1.6], [2, 2, 3, 3]], np.float32)
    scores = np.array([.9, .8, .7, .95], np.float32)
    # IoU(0,1) = .9/1.1 = .82 -> 1 suppressed; IoU(0,2) = .4/1.6 = .25 -> kept at threshold .45.
    assert list(np_box_ops.nms(boxes, scores, .45, 10)) == [3, 0, 2]
    assert list(np_box_ops.nms(boxes, scores, .45, 2)) == [3, 0]
    assert list(np_box_ops.nms(boxes, scores, .26, 10)) == [3, 0, 2]
    assert list(np_box_ops.nms(boxes, scores, .24, 10)) == [3, 0]
    # Only an IoU strictly above the threshold suppresses: identical boxes survive threshold 1.
    assert list(np_box_ops.nms(boxes[[0, 0]], np.array([.5, .4]), 1., 10)) == [0, 1]
    assert np_box_ops.nms(boxes[:0], scores[:0], .5, 10).shape == (0,)


def test_nms_is_greedy_a_suppressed_box_suppresses_nothing():
    # IoU(A, B) = IoU(B, C) = .7/1.3 = .54 > .45, IoU(A, C) = .25: B goes, so C stays.
    boxes = np.array([[0, 0, 1, 1], [0, .3, 1, 1.3], [0, .6, 1, 1.6]], np.float32)
    assert list(np_box_ops.nms(boxes, np.array([.9, .8, .7]), .45, 10)) == [0, 2]
    assert list(np_box_ops.nms(boxes, np.array([.8, .9, .7]), .45, 10)) == [1]
