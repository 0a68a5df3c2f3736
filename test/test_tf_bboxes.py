"""preprocessing/processing/tf_bboxes.py against hand-worked numbers and a NumPy IoU."""
import numpy as np
import tensorflow.compat.v1 as tf

from preprocessing.processing import tf_bboxes


def _run(fn, *args):
    """Builds ``fn(*args)`` in a fresh graph (as the input pipeline does) and evaluates it."""
    with tf.Graph().as_default():
        tensors = [tf.constant(a) for a in args]
        with tf.Session() as sess:
            return sess.run(fn(*tensors))


def _np_iou(a, b):
    """Independent pairwise IoU, one pair at a time."""
    out = np.zeros((len(a), len(b)), np.float32)
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            h = max(0., min(p[2], q[2]) - max(p[0], q[0]))
            w = max(0., min(p[3], q[3]) - max(p[1], q[1]))
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - h * w
            out[i, j] = h * w / union if union > 0 else 0.
    return out


def test_relative_to_crop_and_to_zoom_out_canvas():
    boxes = np.array([[0.5, 0.5, 0.75, 1.0]], np.float32)
    # Crop = bottom-right quarter: (0.5, 0.5) becomes the origin and sizes double.
    relative = tf_bboxes.bboxes_relative_to_window
    np.testing.assert_allclose(_run(relative, np.float32([0.5, 0.5, 1, 1]), boxes),
                               [[0., 0., 0.5, 1.]], atol=1e-6)
    # Canvas twice the image, image at its centre: [-0.5, 1.5] in image coordinates.
    np.testing.assert_allclose(_run(relative, np.float32([-.5, -.5, 1.5, 1.5]), boxes),
                               [[0.5, 0.5, 0.625, 0.75]], atol=1e-6)


def test_clip_to_reference():
    boxes = np.float32([[-0.2, 0.1, 0.5, 1.3], [0.3, 0.3, 0.4, 0.4]])
    np.testing.assert_allclose(_run(tf_bboxes.bboxes_clip, np.float32([0, 0, 1, 1]), boxes),
                               [[0., 0.1, 0.5, 1.], [0.3, 0.3, 0.4, 0.4]])
    np.testing.assert_allclose(_run(tf_bboxes.bboxes_clip, np.float32([0.35, 0, 1, 0.8]), boxes),
                               [[0.35, 0.1, 0.5, 0.8], [0.35, 0.3, 0.4, 0.4]])


def test_centre_in_is_strict_and_per_crop():
    crops = np.float32([[0, 0, 0.5, 0.5], [0, 0, 1, 1]])
    boxes = np.float32([[0.1, 0.1, 0.3, 0.3],   # centre (0.2, 0.2)
                        [0.4, 0.4, 0.6, 0.6],   # centre (0.5, 0.5): on the first crop's corner
                        [0.6, 0.0, 1.0, 0.2]])  # centre (0.8, 0.1)
    np.testing.assert_array_equal(_run(tf_bboxes.bboxes_centre_in, crops, boxes),
                                  [[True, False, False], [True, True, True]])


def test_iou_hand_worked_and_against_numpy():
    crops = np.float32([[0, 0, 0.5, 0.5]])
    boxes = np.float32([[0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75], [0.6, 0.6, 1, 1], [0, 0, 0.5, 1]])
    # Identical: 1; quarter overlap: 1/16 / (1/4 + 1/4 - 1/16) = 1/7; disjoint: 0; contained: 1/2.
    np.testing.assert_allclose(_run(tf_bboxes.bboxes_intersection_over_union, crops, boxes),
                               [[1., 1. / 7., 0., 0.5]], atol=1e-6)
    rng = np.random.RandomState(0)
    a = np.sort(rng.rand(7, 2, 2), axis=1).reshape(7, 4)[:, [0, 2, 1, 3]].astype(np.float32)
    b = np.sort(rng.rand(5, 2, 2), axis=1).reshape(5, 4)[:, [0, 2, 1, 3]].astype(np.float32)
    np.testing.assert_allclose(_run(tf_bboxes.bboxes_intersection_over_union, a, b), _np_iou(a, b),
                               atol=1e-5)


def test_iou_of_degenerate_pair_is_zero_not_nan():
    point = np.float32([[0.5, 0.5, 0.5, 0.5]])
    assert _run(tf_bboxes.bboxes_intersection_over_union, point, point).tolist() == [[0.]]


def test_filter_keeps_labels_with_their_boxes():
    labels = np.int64([3, 1, 4, 2])
    boxes = np.float32([[0, 0, .3, .3], [.1, .1, .2, .2], [.5, .5, .9, .9], [.2, .6, .4, .8]])
    kept_labels, kept_boxes = _run(tf_bboxes.bboxes_filter, np.bool_([True, False, True, False]),
                                   labels, boxes)
    assert kept_labels.tolist() == [3, 4]
    np.testing.assert_array_equal(kept_boxes, boxes[[0, 2]])


def test_flip_left_right_hand_computed():
    boxes = np.float32([[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 1.0, 0.25]])
    flipped = _run(tf_bboxes.bboxes_flip_left_right, boxes)
    np.testing.assert_allclose(flipped, [[0.1, 0.6, 0.5, 0.8], [0.0, 0.75, 1.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(_run(tf_bboxes.bboxes_flip_left_right, flipped), boxes, atol=1e-6)
