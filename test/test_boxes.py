"""utils/boxes.py against hand-worked numbers, in NumPy and (same formulas) in TensorFlow."""
import numpy as np
import tensorflow.compat.v1 as tf

from utils import boxes

tf.disable_eager_execution()

SCALING = (0.1, 0.1, 0.2, 0.2)
# One anchor centred at (y, x) = (0.5, 0.5) of size h = 0.2, w = 0.1, as a (y, x, h, w) layer.
ANCHOR = (np.full((1, 1, 1), 0.5, np.float32), np.full((1, 1, 1), 0.5, np.float32),
          np.array([0.2], np.float32), np.array([0.1], np.float32))


def _both(fn, *arrays):
    """``fn(*arrays, xp)`` in NumPy and in a TF graph: the two results, which must agree."""
    numpy_result = fn(*arrays, np)
    with tf.Graph().as_default(), tf.Session() as sess:
        tf_result = sess.run(fn(*[tf.constant(a) for a in arrays], tf))
    np.testing.assert_allclose(tf_result, numpy_result, rtol=1e-6, atol=1e-7)
    return numpy_result


def test_area_intersection_and_iou_hand_worked():
    a = np.array([[0., 0., 1., 1.], [0., 0., .5, .5]], np.float32)
    b = np.array([[.5, .5, 1.5, 1.5], [2., 2., 3., 3.], [0., 0., 0., 0.], [0., .25, .5, 1.]],
                 np.float32)
    np.testing.assert_allclose(_both(lambda x, xp: boxes.area(x, xp), b), [1., 1., 0., .375])
    # (0,0,1,1) ∩ (.5,.5,1.5,1.5) = .25; ∩ (0,.25,.5,1) = .375;
    # (0,0,.5,.5) ∩ (0,.25,.5,1) = .125.
    np.testing.assert_allclose(_both(boxes.intersection, a, b),
                               [[.25, 0., 0., .375], [0., 0., 0., .125]])
    # unions: 1.75, 2, 1, 1 | 1.25, 1.25, .25, .5 (an empty box overlaps nothing: no NaN).
    np.testing.assert_allclose(_both(boxes.iou, a, b),
                               [[1 / 7., 0., 0., .375], [0., 0., 0., .25]], rtol=1e-6)


def test_inverted_box_has_no_area():
    assert boxes.area(np.array([.5, .5, .2, .9])) == 0.


def test_clip_relative_and_absolute_window_hand_worked():
    window = np.array([.1, .2, .6, .7], np.float32)
    corners = np.array([[0., .3, .4, .9], [.2, .3, .5, .6]], np.float32)
    clipped = _both(boxes.clip_to_window, corners, window)
    np.testing.assert_allclose(clipped, [[.1, .3, .4, .7], [.2, .3, .5, .6]], atol=1e-7)
    # The window is 0.5 x 0.5: y' = (y - .1) / .5, x' = (x - .2) / .5.
    relative = _both(boxes.relative_to_window, clipped, window)
    np.testing.assert_allclose(relative, [[0., .2, .6, 1.], [.2, .2, .8, .8]], atol=1e-6)
    np.testing.assert_allclose(_both(boxes.absolute_from_window, relative, window), clipped,
                               atol=1e-6)


def test_window_per_batch_row_broadcasts():
    corners = np.array([[[.5, .5, 1., 1.]], [[.5, .5, 1., 1.]]], np.float32)   # [B=2, K=1, 4]
    windows = np.array([[0., 0., 1., 1.], [0., .5, 1., 1.]], np.float32)[:, None, :]
    np.testing.assert_allclose(boxes.relative_to_window(corners, windows)[:, 0],
                               [[.5, .5, 1., 1.], [.5, 0., 1., 1.]])


def test_pixel_window_turns_normalised_boxes_into_pixels_and_back():
    shape = np.array([200., 400.], np.float32)      # height, width
    normalised = np.array([[.1, .25, .5, 1.]], np.float32)
    window = _both(lambda s, xp: boxes.pixel_window(s, xp), shape)
    np.testing.assert_array_equal(window, [0., 0., 200., 400.])
    pixels = boxes.absolute_from_window(normalised, window)
    np.testing.assert_allclose(pixels, [[20., 100., 100., 400.]])
    np.testing.assert_allclose(boxes.relative_to_window(pixels, window), normalised)


def test_centres_hand_worked():
    np.testing.assert_allclose(boxes.to_centres(np.array([.2, .1, .6, .5])), (.4, .3, .4, .4))
    np.testing.assert_allclose(boxes.from_centres(.4, .3, .4, .4), [.2, .1, .6, .5])


def test_encode_hand_worked():
    # Box centred (0.52, 0.52), h 0.4, w 0.1: dx = 0.02/0.1/0.1 = 2, dy = 0.02/0.2/0.1 = 1,
    # dw = log(0.1/0.1)/0.2 = 0, dh = log(0.4/0.2)/0.2 = 5 ln 2.
    box = np.array([[[[0.32, 0.47, 0.72, 0.57]]]], np.float32)
    offsets = _both(lambda b, xp: boxes.encode(b, ANCHOR, SCALING, xp), box)
    np.testing.assert_allclose(offsets[0, 0, 0], [2., 1., 0., 5 * np.log(2.)], atol=1e-5)


def test_decode_hand_worked_and_round_trip():
    # dx = 1, dy = -1, dw = 5 ln 2 (w doubles), dh = 0:
    # centre (0.5 - 0.02, 0.5 + 0.01), h 0.2, w 0.2.
    offsets = np.array([[[[1., -1., 5 * np.log(2.), 0.]]]], np.float32)
    decoded = _both(lambda o, xp: boxes.decode(o, ANCHOR, SCALING, xp), offsets)
    np.testing.assert_allclose(decoded[0, 0, 0], [.38, .41, .58, .61], atol=1e-6)
    np.testing.assert_allclose(boxes.encode(decoded, ANCHOR, SCALING), offsets, atol=1e-5)


def grid_layer_and_boxes(seed=0):
    """A 3x4-cell anchor layer (y, x, h, w) with 2 anchors per cell, and one random box per anchor
    ``[3, 4, 2, 4]``."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:3, 0:4].astype(np.float32)
    layer = ((y[..., None] + .5) / 3, (x[..., None] + .5) / 4,
             np.array([.1, .3], np.float32), np.array([.2, .15], np.float32))
    lo = rng.uniform(0, .5, size=(3, 4, 2, 2))
    corners = np.concatenate([lo, lo + rng.uniform(.05, .5, size=lo.shape)], -1).astype(np.float32)
    return layer, corners


def test_decode_inverts_encode_on_a_grid():
    layer, corners = grid_layer_and_boxes()
    np.testing.assert_allclose(boxes.decode(boxes.encode(corners, layer, SCALING), layer, SCALING),
                               corners, atol=1e-6)
