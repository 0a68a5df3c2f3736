"""The input/output transform: preprocessing/np_transform.py (NumPy) and preprocessing/transform.py
(graph) against hand-worked numbers, OpenCV, and each other."""
import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import nets_factory, ssd_params
from preprocessing import np_transform, transform

tf.disable_eager_execution()

# Pixel boxes of a 150 x 200 (height x width) image and the same boxes normalised to it.
SHAPE = (150, 200)
PIXELS = np.array([[30., 50., 150., 100.], [0., 0., 15., 200.]], np.float32)
NORMALISED = np.array([[.2, .25, 1., .5], [0., 0., .1, 1.]], np.float32)


def _run(tensors):
    with tf.Session() as sess:
        return sess.run(tensors)


def test_input_shape_comes_from_the_network():
    params = ssd_params.SSD300_PARAMS._replace(img_shape=(512, 384))
    assert np_transform.input_shape(params) == (512, 384)
    assert np_transform.input_shape(nets_factory.build_network('ssd_vgg_300', 3)) == (300, 300)
    assert np_transform.input_shape({'img_shape': [320, 240]}) == (320, 240)


def test_to_network_frame_hand_worked_and_exact_inverse():
    np.testing.assert_allclose(np_transform.to_network_frame(PIXELS, SHAPE), NORMALISED, atol=1e-7)
    # An image filling the lower right quarter of the input: y' = .5 + y / 2, x' = .5 + x / 2.
    window = [.5, .5, 1., 1.]
    inside = np_transform.to_network_frame(PIXELS, SHAPE, window)
    np.testing.assert_allclose(inside, .5 + NORMALISED / 2, atol=1e-7)
    # The inverse is exact up to float32 rounding (one ulp of the pixel values).
    np.testing.assert_allclose(np_transform.to_pixels(inside, SHAPE, window), PIXELS, rtol=3e-7)
    np.testing.assert_allclose(
        np_transform.to_pixels(np_transform.to_network_frame(PIXELS, SHAPE), SHAPE), PIXELS,
        rtol=3e-7)


def test_graph_inverse_matches_numpy_per_image_of_a_batch():
    shapes = np.array([[150, 200], [600, 100]], np.int32)
    boxes = np.stack([NORMALISED, NORMALISED[::-1]])                       # [B=2, K=2, 4]
    with tf.Graph().as_default():
        pixels = _run(transform.to_pixels(tf.constant(boxes), tf.constant(shapes)[:, None, :]))
        back = _run(transform.to_network_frame(tf.constant(pixels), tf.constant(shapes)[:, None]))
    np.testing.assert_allclose(pixels[0], PIXELS, rtol=3e-7)
    np.testing.assert_allclose(pixels[1], [[0., 0., 60., 100.], [120., 25., 600., 50.]], atol=1e-4)
    np.testing.assert_allclose(back, boxes, atol=1e-7)


def test_resize_bilinear_hand_worked():
    # 2x2 -> 4x4 with half-pixel centres: output centres sit at -0.25, 0.25, 0.75, 1.25 input
    # pixels, clamped to the edge, so each axis reads 0, 1/4, 3/4, 1 of the way across.
    image = np.array([[0., 4.], [8., 12.]], np.float32)[..., None]
    expected = np.array([[0, 1, 3, 4], [2, 3, 5, 6], [6, 7, 9, 10], [8, 9, 11, 12]], np.float32)
    np.testing.assert_allclose(np_transform.resize_bilinear(image, (4, 4))[..., 0], expected)
    # Downscaling 4 -> 2 samples at input 0.5 and 2.5: the means of neighbouring pairs.
    row = np.arange(4, dtype=np.float32)[None, :, None]
    np.testing.assert_allclose(np_transform.resize_bilinear(row, (1, 2))[0, :, 0], [0.5, 2.5])


@pytest.mark.parametrize('height, width, out_shape', [(375, 500, (300, 300)), (90, 120, (64, 48))])
def test_numpy_and_graph_forward_transform_agree_with_opencv(height, width, out_shape):
    image = np.random.RandomState(height).randint(0, 256, (height, width, 3)).astype(np.uint8)
    reference = cv2.resize(image.astype(np.float32), out_shape[::-1],
                           interpolation=cv2.INTER_LINEAR) - np.float32(np_transform.VGG_MEANS)
    inputs, bbox_img = np_transform.preprocess(image, out_shape)
    np.testing.assert_allclose(inputs, reference, atol=0.05)
    np.testing.assert_array_equal(bbox_img, [0, 0, 1, 1])
    with tf.Graph().as_default():
        graph = _run(transform.resize(transform.whiten_image(tf.constant(image)),
                                      transform.UNIT_WINDOW, out_shape))
    np.testing.assert_allclose(graph, inputs, atol=1e-2)
