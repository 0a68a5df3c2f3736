"""SSD-VGG300 network: layer shapes, variable names, width multiplier, custom layers, factory,
and a short training run of a narrow network on a fixed image."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import custom_layers, nets_factory
from nets.nets_model import ssd_vgg_300
from utils import slim_compat

slim = slim_compat.import_slim()
tf.disable_eager_execution()

CELLS = [38, 19, 10, 5, 3, 1]
ANCHORS_PER_CELL = [4, 6, 6, 6, 4, 4]


def _build(net, batch=None, data_format='NHWC', weight_decay=0.0005):
    shape = [batch, 300, 300, 3] if data_format == 'NHWC' else [batch, 3, 300, 300]
    inputs = tf.placeholder(tf.float32, shape, name='images')
    with slim.arg_scope(net.arg_scope(weight_decay=weight_decay, data_format=data_format)):
        return inputs, net.net(inputs, is_training=False)


def _variable_shapes():
    return {v.op.name: v.get_shape().as_list() for v in tf.global_variables()}


def test_full_width_graph_has_ssd_tensorflow_names_and_shapes():
    with tf.Graph().as_default():
        _, (predictions, localisations, logits, _) = _build(nets_factory.build_network('ssd_vgg_300', 21))
        shapes = _variable_shapes()
        regularised = len(tf.losses.get_regularization_losses())
    expected = {
        'ssd_300_vgg/conv1/conv1_1/weights': [3, 3, 3, 64],
        'ssd_300_vgg/conv4/conv4_3/weights': [3, 3, 512, 512],
        'ssd_300_vgg/conv5/conv5_3/biases': [512],
        'ssd_300_vgg/conv6/weights': [3, 3, 512, 1024],
        'ssd_300_vgg/conv7/weights': [1, 1, 1024, 1024],
        'ssd_300_vgg/block8/conv1x1/weights': [1, 1, 1024, 256],
        'ssd_300_vgg/block8/conv3x3/weights': [3, 3, 256, 512],
        'ssd_300_vgg/block11/conv3x3/weights': [3, 3, 128, 256],
        'ssd_300_vgg/block4_box/L2Normalization/gamma': [512],
        'ssd_300_vgg/block4_box/conv_loc/weights': [3, 3, 512, 16],
        'ssd_300_vgg/block4_box/conv_cls/weights': [3, 3, 512, 4 * 21],
        'ssd_300_vgg/block7_box/conv_cls/weights': [3, 3, 1024, 6 * 21],
        'ssd_300_vgg/block11_box/conv_loc/biases': [16],
    }
    for name, shape in expected.items():
        assert shapes[name] == shape, name
    # 13 VGG convs + conv6/7 + 8 extra convs + 12 head convs, each weights + biases, + gamma.
    assert len(shapes) == 2 * (13 + 2 + 8 + 12) + 1
    assert regularised == 13 + 2 + 8 + 12
    # SSD300 on VOC has 26.3 M parameters.
    assert 26.2e6 < sum(np.prod(s) for s in shapes.values()) < 26.4e6
    for i, (p, l, g) in enumerate(zip(predictions, localisations, logits)):
        assert p.shape.as_list() == [None, CELLS[i], CELLS[i], ANCHORS_PER_CELL[i], 21]
        assert g.shape.as_list() == p.shape.as_list()
        assert l.shape.as_list() == [None, CELLS[i], CELLS[i], ANCHORS_PER_CELL[i], 4]


def test_width_multiplier_scales_channels_but_not_heads_and_runs():
    net = nets_factory.build_network('ssd_300_vgg', 6, width_multiplier=0.125)
    with tf.Graph().as_default():
        inputs, (predictions, localisations, logits, end_points) = _build(net)
        shapes = _variable_shapes()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(predictions + localisations,
                           {inputs: np.random.RandomState(0).randn(2, 300, 300, 3).astype(np.float32)})
    assert shapes['ssd_300_vgg/conv1/conv1_1/weights'] == [3, 3, 3, 8]
    assert shapes['ssd_300_vgg/conv4/conv4_3/weights'] == [3, 3, 64, 64]
    assert shapes['ssd_300_vgg/conv6/weights'] == [3, 3, 64, 128]
    assert shapes['ssd_300_vgg/block9/conv1x1/weights'] == [1, 1, 64, 16]
    assert shapes['ssd_300_vgg/block4_box/conv_cls/weights'] == [3, 3, 64, 4 * 6]
    for i in range(6):
        assert out[i].shape == (2, CELLS[i], CELLS[i], ANCHORS_PER_CELL[i], 6)
        np.testing.assert_allclose(out[i].sum(-1), 1., atol=1e-5)          # softmax over classes
        assert out[6 + i].shape == (2, CELLS[i], CELLS[i], ANCHORS_PER_CELL[i], 4)
    assert net.anchors()[0][0].shape == (38, 38, 1)


def test_nchw_graph_gives_channels_last_outputs():
    with tf.Graph().as_default():
        _, (predictions, localisations, _, _) = _build(
            nets_factory.build_network('ssd_vgg_300', 6, 0.125), batch=1, data_format='NCHW')
    for i in range(6):
        assert predictions[i].shape.as_list() == [1, CELLS[i], CELLS[i], ANCHORS_PER_CELL[i], 6]
        assert localisations[i].shape.as_list() == [1, CELLS[i], CELLS[i], ANCHORS_PER_CELL[i], 4]


def test_wrong_input_size_is_refused():
    net = nets_factory.build_network('ssd_vgg_300', 6, 0.125)
    with tf.Graph().as_default(), pytest.raises(ValueError, match='block4 is \\[40, 40\\] cells .* 300x300'):
        with slim.arg_scope(net.arg_scope()):
            net.net(tf.placeholder(tf.float32, [1, 320, 320, 3]))


def test_custom_layers_against_numpy():
    x = np.random.RandomState(1).randn(2, 3, 4, 5).astype(np.float32)
    with tf.Graph().as_default():
        nhwc = custom_layers.l2_normalization(tf.constant(x), scale_initializer=20., scope='a')
        nchw = custom_layers.l2_normalization(tf.constant(x.transpose(0, 3, 1, 2)), data_format='NCHW',
                                              scope='b')
        padded = custom_layers.pad2d(tf.constant(x), pad=(1, 2))
        last = custom_layers.channel_to_last(tf.constant(x.transpose(0, 3, 1, 2)), data_format='NCHW')
        gammas = [v.op.name for v in slim.get_model_variables()]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            nhwc, nchw, padded, last = sess.run([nhwc, nchw, padded, last])
    expected = 20. * x / np.sqrt((x ** 2).sum(-1, keepdims=True))
    np.testing.assert_allclose(nhwc, expected, rtol=1e-5)
    np.testing.assert_allclose(nchw.transpose(0, 2, 3, 1), expected, rtol=1e-5)
    assert gammas == ['a/gamma', 'b/gamma']
    assert padded.shape == (2, 5, 8, 5) and not padded[:, 0].any() and not padded[:, :, :2].any()
    np.testing.assert_array_equal(padded[:, 1:-1, 2:-2], x)
    np.testing.assert_array_equal(last, x)
    with pytest.raises(ValueError, match='data_format'):
        custom_layers.pad2d(tf.constant(x), data_format='HWC')


def _numpy_dilated_conv(x, w, b, rate):
    """SAME dilated convolution + bias + ReLU, NHWC, by explicit sums over the kernel taps."""
    kh, kw = w.shape[:2]
    ph, pw = rate * (kh - 1) // 2, rate * (kw - 1) // 2
    padded = np.pad(x, [(0, 0), (ph, ph), (pw, pw), (0, 0)])
    out = np.zeros(x.shape[:3] + (w.shape[-1],), np.float64)
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i * rate:i * rate + x.shape[1], j * rate:j * rate + x.shape[2]]
            out += window @ w[i, j]
    return np.maximum(out + b, 0.)


def test_dilated_conv_takes_slims_arg_scope_and_matches_slims_space_to_batch_conv():
    rng = np.random.RandomState(2)
    x = rng.randn(2, 19, 19, 3).astype(np.float32)
    with tf.Graph().as_default() as graph:
        with slim.arg_scope(ssd_vgg_300.SSDNet.arg_scope(weight_decay=0.5)):
            with slim.arg_scope([slim.conv2d], biases_initializer=tf.constant_initializer(0.3)):
                ours = custom_layers.dilated_conv2d(tf.constant(x), 4, [3, 3], rate=6,
                                                    scope='conv6')
        with slim.arg_scope(ssd_vgg_300.SSDNet.arg_scope(weight_decay=0.5)):
            slims = slim.conv2d(tf.constant(x), 4, [3, 3], rate=6, scope='slim6')
        assert [v.op.name for v in slim.get_model_variables()] == [
            'conv6/weights', 'conv6/biases', 'slim6/weights', 'slim6/biases']
        assert len(tf.losses.get_regularization_losses()) == 2   # the weights of each conv
        types = {op.type for op in graph.get_operations()
                 if op.name.startswith('conv6/') and 'Initializer' not in op.name}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            variables = {v.op.name: v for v in tf.global_variables()}
            weights, biases = sess.run([variables['conv6/weights'], variables['conv6/biases']])
            variables['slim6/weights'].load(weights, sess)
            variables['slim6/biases'].load(biases, sess)
            ours, slims = sess.run([ours, slims])
    assert 'SpaceToBatchND' not in types and 'Conv2D' in types and 'Relu' in types
    np.testing.assert_allclose(biases, 0.3)
    np.testing.assert_allclose(ours, _numpy_dilated_conv(x, weights, biases, 6), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(ours, slims, rtol=1e-4, atol=1e-5)


def test_factory():
    assert nets_factory.get_network('ssd_vgg_300') is ssd_vgg_300.SSDNet
    assert nets_factory.get_network('ssd_300_vgg') is ssd_vgg_300.SSDNet
    with pytest.raises(ValueError, match='ssd_300_vgg, ssd_vgg_300'):
        nets_factory.get_network('resnet')
    net = nets_factory.build_network('ssd_vgg_300', 6, 0.5)
    assert net.params.num_classes == 6 and net.params.no_annotation_label == 6
    assert net.width_multiplier == 0.5
    assert net.params._replace(num_classes=21, no_annotation_label=21) == ssd_vgg_300.SSDNet.default_params
    assert ssd_vgg_300.SSDNet().width_multiplier == 1.0
    with pytest.raises(ValueError, match='width_multiplier'):
        ssd_vgg_300.SSDNet(width_multiplier=0)


def test_narrow_network_learns_a_fixed_image():
    """encode → network → loss → Adam: the loss falls and the box is then detected."""
    net = nets_factory.build_network('ssd_vgg_300', 3, width_multiplier=0.0625)
    anchors = net.anchors()
    box = np.array([[.2, .3, .7, .8]], np.float32)
    image = np.zeros((1, 300, 300, 3), np.float32)
    image[0, 60:210, 90:240] = 100.
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        inputs, (predictions, localisations, logits, _) = _build(net, batch=1)
        gclasses, glocal, gscores = net.bboxes_encode(tf.constant([2]), tf.constant(box), anchors)
        expand = lambda ts: [t[None] for t in ts]
        loss = net.losses(logits, localisations, expand(gclasses), expand(glocal), expand(gscores))
        train = tf.train.AdamOptimizer(4e-3).minimize(loss)
        detections = net.detected_bboxes(predictions, localisations, select_threshold=.5, keep_top_k=5)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            first = sess.run(loss, {inputs: image})
            for _ in range(30):
                sess.run(train, {inputs: image})
            last, found = sess.run([loss, detections], {inputs: image})
    assert last < 0.15 * first
    assert found['num_detections'][0] >= 1 and found['detection_classes'][0, 0] == 2
    top = found['detection_boxes'][0, 0]
    inter = np.prod(np.clip(np.minimum(top[2:], box[0, 2:]) - np.maximum(top[:2], box[0, :2]), 0, None))
    union = np.prod(top[2:] - top[:2]) + np.prod(box[0, 2:] - box[0, :2]) - inter
    assert inter / union > 0.5
