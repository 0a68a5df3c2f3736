"""nets/box_coding.py: the graph wrappers around utils/boxes.py's formulas (checked by
test_boxes.py): NumPy anchors become constants, leading batch dimensions broadcast, one list per
feature layer."""
import numpy as np
import tensorflow.compat.v1 as tf

from nets import box_coding
from test.test_boxes import SCALING, grid_layer_and_boxes
from utils import boxes


def test_numpy_anchors_encode_and_decode_over_a_batch_as_utils_boxes_does():
    layer, corners = grid_layer_and_boxes()
    offsets = boxes.encode(corners, layer, SCALING)
    with tf.Graph().as_default(), tf.Session() as sess:
        encoded = sess.run(box_coding.encode(tf.constant(corners), layer, SCALING))
        batched = tf.constant(np.stack([offsets, offsets]))            # [2, H, W, A, 4]
        decoded, = sess.run(box_coding.decode_all([batched], [layer], SCALING))
    np.testing.assert_allclose(encoded, offsets, atol=1e-5)
    np.testing.assert_allclose(decoded, np.stack([corners, corners]), atol=1e-6)
