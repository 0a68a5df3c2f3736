"""nets/box_coding.py: the graph's encoding/decoding against hand-worked numbers and NumPy."""
import numpy as np
import tensorflow.compat.v1 as tf

from nets import box_coding
from test.test_boxes import grid_layer_and_boxes
from utils import boxes

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
    np.testing.assert_allclose(_run(box_coding.encode(tf.constant(box), ANCHOR, SCALING))[0, 0, 0],
                               [2., 1., 0., 5 * np.log(2.)], atol=1e-5)


def test_graph_matches_numpy_and_decode_broadcasts_over_the_batch():
    layer, corners = grid_layer_and_boxes()
    offsets = boxes.encode(corners, layer, SCALING)
    np.testing.assert_allclose(_run(box_coding.encode(tf.constant(corners), layer, SCALING)),
                               offsets, atol=1e-5)
    batched = tf.constant(np.stack([offsets, offsets]))            # [2, H, W, A, 4]
    np.testing.assert_allclose(_run(box_coding.decode(batched, layer, SCALING)),
                               np.stack([corners, corners]), atol=1e-6)
