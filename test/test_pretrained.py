"""Initialisation from SSD-Tensorflow-format and slim vgg_16 checkpoints the tests create, and
the names and shapes of both public formats written down independently of this repository."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model import checkpoints, pretrained
from nets import nets_factory
from utils import slim_compat

slim = slim_compat.import_slim()
tf.disable_eager_execution()

WIDTH = 0.125   # channels: conv1 8, conv2 16, conv3 32, conv4/5 64, conv6/7 128
BOX_LAYERS = ('block10', 'block11', 'block4', 'block7', 'block8', 'block9')   # sorted


def _model(num_classes=6, scope='ssd_300_vgg'):
    """Builds a narrow SSD300 in the default graph; returns its model variables."""
    net = nets_factory.build_network('ssd_vgg_300', num_classes, WIDTH)
    with slim.arg_scope(net.arg_scope()):
        net.net(tf.placeholder(tf.float32, [1, 300, 300, 3]), scope=scope)
    return slim.get_model_variables(scope)


def _save_random_model(path, num_classes=6, scope='ssd_300_vgg', drop=()):
    """Saves a model with random values (except variables named in `drop`); returns name → value."""
    with tf.Graph().as_default():
        variables = [v for v in _model(num_classes, scope) if v.op.name not in drop]
        rng = np.random.RandomState(1)
        values = {v.op.name: rng.randn(*v.get_shape().as_list()).astype(np.float32) for v in variables}
        with tf.Session() as sess:
            for v in variables:
                v.load(values[v.op.name], sess)
            tf.train.Saver(variables).save(sess, path)
    return values


def _load(checkpoint, num_classes=6, **kwargs):
    """Fresh model, initialisers, then init_fn; returns (name → value before, name → value after)."""
    with tf.Graph().as_default():
        variables = _model(num_classes)
        init_fn = pretrained.init_fn_from_checkpoint(checkpoint, **kwargs)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            before = dict(zip([v.op.name for v in variables], sess.run(variables)))
            init_fn(sess)
            after = dict(zip([v.op.name for v in variables], sess.run(variables)))
    return before, after


def test_ssd_checkpoint_loads_every_variable(tmp_path):
    saved = _save_random_model(str(tmp_path / 'model.ckpt'))
    _, after = _load(str(tmp_path))     # a directory means its newest checkpoint
    assert set(after) == set(saved) and 'ssd_300_vgg/block4_box/L2Normalization/gamma' in after
    for name, value in saved.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_checkpoint_model_scope(tmp_path):
    saved = _save_random_model(str(tmp_path / 'model.ckpt'), scope='other_net')
    with tf.Graph().as_default(), pytest.raises(checkpoints.CheckpointError, match='other_net'):
        pretrained.init_fn_from_checkpoint(str(tmp_path / 'model.ckpt'))   # scope detection comes first
    _, after = _load(str(tmp_path / 'model.ckpt'), checkpoint_model_scope='other_net')
    np.testing.assert_array_equal(after['ssd_300_vgg/block8/conv3x3/weights'],
                                  saved['other_net/block8/conv3x3/weights'])


def test_class_count_mismatch_and_exclude_scopes(tmp_path):
    saved = _save_random_model(str(tmp_path / 'model.ckpt'), num_classes=21)
    with pytest.raises(checkpoints.CheckpointError) as error:
        _load(str(tmp_path / 'model.ckpt'), num_classes=6)
    message = str(error.value)
    assert 'ssd_300_vgg/block4_box/conv_cls/weights' in message
    assert '[3, 3, 64, 84]' in message and '[3, 3, 64, 24]' in message
    assert 'trained with num_classes=21, the model has num_classes=6' in message
    assert '--checkpoint_exclude_scopes=%s' % ','.join(
        'ssd_300_vgg/%s_box/conv_cls' % b for b in BOX_LAYERS) in message

    heads = ['ssd_300_vgg/%s_box/conv_cls' % b for b in BOX_LAYERS]
    before, after = _load(str(tmp_path / 'model.ckpt'), num_classes=6, exclude_scopes=','.join(heads))
    for name in after:
        if '/conv_cls/' in name:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)   # initialiser kept
        else:
            np.testing.assert_array_equal(after[name], saved[name], err_msg=name)


def test_missing_variables(tmp_path):
    missing = 'ssd_300_vgg/block11/conv3x3/biases'
    saved = _save_random_model(str(tmp_path / 'model.ckpt'), drop=(missing,))
    with pytest.raises(checkpoints.CheckpointError, match=missing):
        _load(str(tmp_path / 'model.ckpt'))
    before, after = _load(str(tmp_path / 'model.ckpt'), ignore_missing_vars=True)
    np.testing.assert_array_equal(after[missing], before[missing])
    np.testing.assert_array_equal(after['ssd_300_vgg/block11/conv3x3/weights'],
                                  saved['ssd_300_vgg/block11/conv3x3/weights'])


def _save_vgg16(path, conv6_channels=128):
    """A slim-style vgg_16 checkpoint whose conv widths match the narrow model; returns name → value."""
    rng = np.random.RandomState(2)
    shapes = {}
    previous = 3
    for block, (repeats, channels) in enumerate(((2, 8), (2, 16), (3, 32), (3, 64), (3, 64)), 1):
        for i in range(1, repeats + 1):
            shapes['vgg_16/conv%d/conv%d_%d/weights' % (block, block, i)] = (3, 3, previous, channels)
            shapes['vgg_16/conv%d/conv%d_%d/biases' % (block, block, i)] = (channels,)
            previous = channels
    fc = 4 * conv6_channels
    shapes.update({'vgg_16/fc6/weights': (7, 7, 64, fc), 'vgg_16/fc6/biases': (fc,),
                   'vgg_16/fc7/weights': (1, 1, fc, fc), 'vgg_16/fc7/biases': (fc,),
                   'vgg_16/fc8/weights': (1, 1, fc, 1000), 'vgg_16/fc8/biases': (1000,)})
    values = {name: rng.randn(*shape).astype(np.float32) for name, shape in shapes.items()}
    with tf.Graph().as_default():
        variables = [tf.Variable(value, name=name) for name, value in values.items()]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(variables).save(sess, path)
    return values


def test_vgg16_checkpoint_with_fc6_fc7_subsampling(tmp_path):
    vgg = _save_vgg16(str(tmp_path / 'vgg_16.ckpt'))
    before, after = _load(str(tmp_path / 'vgg_16.ckpt'))
    for name in ('conv1/conv1_1/weights', 'conv3/conv3_2/biases', 'conv5/conv5_3/weights'):
        np.testing.assert_array_equal(after['ssd_300_vgg/' + name], vgg['vgg_16/' + name])
    taps, every4 = [0, 3, 6], np.arange(0, 512, 4)
    np.testing.assert_array_equal(after['ssd_300_vgg/conv6/weights'],
                                  vgg['vgg_16/fc6/weights'][taps][:, taps][:, :, :, every4])
    np.testing.assert_array_equal(after['ssd_300_vgg/conv6/biases'], vgg['vgg_16/fc6/biases'][every4])
    np.testing.assert_array_equal(after['ssd_300_vgg/conv7/weights'],
                                  vgg['vgg_16/fc7/weights'][:, :, every4][:, :, :, every4])
    np.testing.assert_array_equal(after['ssd_300_vgg/conv7/biases'], vgg['vgg_16/fc7/biases'][every4])
    for name in ('ssd_300_vgg/block8/conv1x1/weights', 'ssd_300_vgg/block4_box/conv_cls/weights',
                 'ssd_300_vgg/block4_box/L2Normalization/gamma'):
        np.testing.assert_array_equal(after[name], before[name])   # not in VGG-16: initialiser kept


def test_vgg16_width_mismatch_names_both_shapes(tmp_path):
    _save_vgg16(str(tmp_path / 'vgg_16.ckpt'), conv6_channels=64)
    with pytest.raises(checkpoints.CheckpointError) as error:
        _load(str(tmp_path / 'vgg_16.ckpt'))
    message = str(error.value)
    assert 'ssd_300_vgg/conv6/weights' in message and 'vgg_16/fc6/weights' in message
    assert '[7, 7, 64, 256]' in message and '[3, 3, 64, 64]' in message and '[3, 3, 64, 128]' in message


def test_bad_paths(tmp_path):
    (tmp_path / 'broken.ckpt.index').write_bytes(b'not a checkpoint')
    expectations = [('nothing.ckpt', 'no checkpoint at'), ('', 'no checkpoint in directory'),
                    ('broken.ckpt', 'broken.ckpt cannot be used: its .data file is missing')]
    for name, message in expectations:
        with tf.Graph().as_default(), pytest.raises(checkpoints.CheckpointError, match=message):
            pretrained.init_fn_from_checkpoint(str(tmp_path / name))


# Names and shapes written down from the public code, not read from this repository's graph:
# slim's nets/vgg.py (vgg_16: conv1..conv5 as slim.repeat of 3x3 convs, fc6 a 7x7 conv, fc7 and
# fc8 1x1 convs). The SSD-Tensorflow names (nets/ssd_vgg_300.py: conv6 a 3x3 conv of rate 6,
# conv7 1x1, block8..block11, `<layer>_box/conv_loc|conv_cls` and
# `block4_box/L2Normalization/gamma`) are checked against their own literal table in
# test_ssd_vgg_300.py; an SSD-format checkpoint loads under the same names.
VGG16_CONVS = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))  # block, convs, depth
SLIM_VGG16_SPOT_CHECKS = {
    'vgg_16/conv1/conv1_1/weights': [3, 3, 3, 64],
    'vgg_16/conv1/conv1_2/weights': [3, 3, 64, 64],
    'vgg_16/conv3/conv3_3/biases': [256],
    'vgg_16/conv4/conv4_1/weights': [3, 3, 256, 512],
    'vgg_16/conv5/conv5_3/biases': [512],
    'vgg_16/fc6/weights': [7, 7, 512, 4096],
    'vgg_16/fc6/biases': [4096],
    'vgg_16/fc7/weights': [1, 1, 4096, 4096],
    'vgg_16/fc8/weights': [1, 1, 4096, 1000],
}


def _slim_vgg16_shapes(with_fc=True):
    """{name: shape} of slim's vgg_16 checkpoint (VGG-16 of the paper, ImageNet's 1000 classes)."""
    shapes, depth_in = {}, 3
    for block, convs, depth in VGG16_CONVS:
        for i in range(1, convs + 1):
            shapes['vgg_16/conv%d/conv%d_%d/weights' % (block, block, i)] = [3, 3, depth_in, depth]
            shapes['vgg_16/conv%d/conv%d_%d/biases' % (block, block, i)] = [depth]
            depth_in = depth
    if with_fc:
        for name, shape in (('fc6', [7, 7, 512, 4096]), ('fc7', [1, 1, 4096, 4096]),
                            ('fc8', [1, 1, 4096, 1000])):
            shapes['vgg_16/%s/weights' % name] = shape
            shapes['vgg_16/%s/biases' % name] = shape[-1:]
    return shapes


def _full_width_model(num_classes=21):
    with tf.Graph().as_default():
        net = nets_factory.build_network('ssd_vgg_300', num_classes)
        with slim.arg_scope(net.arg_scope()):
            net.net(tf.placeholder(tf.float32, [1, 300, 300, 3]))
        return slim.get_model_variables('ssd_300_vgg')


@pytest.mark.parametrize('with_fc', [True, False])
def test_slim_vgg16_names_and_shapes_map_onto_the_full_width_model(with_fc):
    shapes = _slim_vgg16_shapes(with_fc)
    if with_fc:
        for name, shape in SLIM_VGG16_SPOT_CHECKS.items():
            assert shapes[name] == shape, name
    variables = _full_width_model()
    pairs = pretrained.checkpoint_pairs(variables, 'ssd_300_vgg', 'vgg_16', is_vgg=True)
    # The loader's checks against the checkpoint's shape map alone (no 500 MB file needed).
    plan = checkpoints.match_variables('vgg_16.ckpt', shapes, pairs)
    loaded = {variable.op.name: name for variable, name, _ in plan}
    assert len(loaded) == 26 + (4 if with_fc else 0)
    assert loaded['ssd_300_vgg/conv4/conv4_3/weights'] == 'vgg_16/conv4/conv4_3/weights'
    if with_fc:   # subsampled as in the SSD paper: every 3rd tap of 7x7, every 4th channel
        assert loaded['ssd_300_vgg/conv6/weights'] == 'vgg_16/fc6/weights'
        assert loaded['ssd_300_vgg/conv7/biases'] == 'vgg_16/fc7/biases'
