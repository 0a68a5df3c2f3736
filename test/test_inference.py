"""The shared inference graph: pixel boxes equal the NumPy post-processing reference, restore errors."""
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import nets_factory
from nets import np_postprocess
from test.checkpoints import CLASS_NAMES, class_names_for, copy_with_info, make_checkpoint
from model import inference
from model.checkpoints import CheckpointError
from model.model_info import ModelInfoError

VGG_MEANS = np.array([123.68, 116.78, 103.94])


@pytest.fixture(scope='module')
def checkpoint_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('inference_ckpt'))
    make_checkpoint(directory)
    return directory


def test_load_model_resolves_newest_and_builds_from_info(checkpoint_dir):
    with tf.Graph().as_default():
        net, info, prefix = inference.load_model(checkpoint_dir)
    assert prefix == os.path.join(checkpoint_dir, 'model.ckpt-1')
    assert info['class_names'] == CLASS_NAMES
    assert net.params.num_classes == 6


def test_preprocess_uniform_image_is_colour_minus_means():
    with tf.Graph().as_default(), tf.Session() as sess:
        image = tf.constant(np.full((37, 81, 3), [200, 100, 50], np.uint8))
        net = nets_factory.build_network('ssd_vgg_300', 6)
        out, bbox_img = sess.run(inference.preprocess_for_detection(image, net))
    assert out.shape == (300, 300, 3) and out.dtype == np.float32
    assert bbox_img.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(out, np.broadcast_to([200, 100, 50] - VGG_MEANS, out.shape),
                               atol=1e-3)


@pytest.mark.parametrize('windows', [None, [[0., 0., 1., 1.], [.1, .2, .6, .9]]])
def test_detect_pixel_boxes_match_numpy_postprocessing(checkpoint_dir, windows):
    """Batch of two images of different sizes; reference: nets.np_postprocess on the raw outputs.
    With ``windows`` (bbox_img per image) detections are clipped to them and relative to them."""
    shapes = [(120, 300), (240, 160)]
    rng = np.random.RandomState(1)
    with tf.Graph().as_default():
        net, _, prefix = inference.load_model(checkpoint_dir)
        images = tf.placeholder(tf.float32, [None, 300, 300, 3])
        detections = inference.detect(net, images, tf.constant(shapes, tf.int32),
                                      select_threshold=0.3, nms_threshold=0.45, keep_top_k=20,
                                      bbox_img=windows)
        assert len(detections['predictions']) == 6 and len(detections['localisations']) == 6
        with tf.Session() as sess:
            inference.restore(sess, prefix)
            out = sess.run(detections, {images: rng.uniform(-120, 120, (2, 300, 300, 3))})
    for i, (height, width) in enumerate(shapes):
        reference = np_postprocess.detect(
            [p[i] for p in out['predictions']], [loc[i] for loc in out['localisations']],
            net.anchors(), net.params.prior_scaling, select_threshold=0.3, nms_threshold=0.45,
            keep_top_k=20, bbox_img=None if windows is None else windows[i])
        count = reference['num_detections']
        assert count > 0 and out['num_detections'][i] == count
        np.testing.assert_allclose(out['detection_boxes'][i],
                                   reference['detection_boxes'] * [height, width, height, width],
                                   atol=1e-3)
        np.testing.assert_allclose(out['detection_scores'][i], reference['detection_scores'],
                                   atol=1e-6)
        np.testing.assert_array_equal(out['detection_classes'][i], reference['detection_classes'])


def test_detect_reuse_shares_variables(checkpoint_dir):
    with tf.Graph().as_default():
        net, _, _ = inference.load_model(checkpoint_dir)
        inference.detect(net, tf.zeros([1, 300, 300, 3]), [[300, 300]])
        count = len(tf.global_variables())
        inference.detect(net, tf.zeros([2, 300, 300, 3]), [[10, 20], [30, 40]], reuse=True)
        assert len(tf.global_variables()) == count


def test_restore_names_both_class_counts(checkpoint_dir, tmp_path):
    copy = copy_with_info(checkpoint_dir, str(tmp_path), num_classes=21,
                          class_names=class_names_for(21))
    with tf.Graph().as_default():
        net, _, prefix = inference.load_model(copy)
        inference.detect(net, tf.zeros([1, 300, 300, 3]), [[300, 300]])
        with tf.Session() as sess:
            with pytest.raises(CheckpointError, match='trained with num_classes=6, the model has '
                                                      'num_classes=21'):
                inference.restore(sess, prefix)


def test_restore_reports_other_shape_mismatch(checkpoint_dir, tmp_path):
    copy = copy_with_info(checkpoint_dir, str(tmp_path), width_multiplier=0.25)
    with tf.Graph().as_default():
        net, _, prefix = inference.load_model(copy)
        inference.detect(net, tf.zeros([1, 300, 300, 3]), [[300, 300]])
        with tf.Session() as sess:
            # Class heads are compared first: same class count, other width.
            with pytest.raises(CheckpointError, match=r'block4_box/conv_cls/weights has shape '
                                                      r'\[3, 3, 64, 24\], the model needs '
                                                      r'\[3, 3, 128, 24\]: it was not written'):
                inference.restore(sess, prefix)


def test_unknown_model_name_is_a_model_info_error(checkpoint_dir, tmp_path):
    copy = copy_with_info(checkpoint_dir, str(tmp_path), model_name='resnet_9000')
    with tf.Graph().as_default():
        with pytest.raises(ModelInfoError, match="cannot build the network: unknown network 'resnet_9000'"):
            inference.load_model(copy)
