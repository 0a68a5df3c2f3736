"""Fine-tuning from the shared conv-only ImageNet VGG-16, the trainer's checkpoint errors on the
command line, and the NCHW (GPU) training graph."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import train_ssd_network
from datasets import dataset_factory
from deployment import model_deploy
from model import pretrained
from nets import nets_factory
from test.conftest import REPO_ROOT, shared_path
from training import graph as training_graph
from utils import slim_compat

slim = slim_compat.import_slim()
tf.disable_eager_execution()

SCRIPT = os.path.join(REPO_ROOT, 'train_ssd_network.py')
VGG_CONVS = [('conv%d' % b, 'conv%d_%d' % (b, i))
             for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for i in range(1, n + 1)]


def _vgg_checkpoint():
    return shared_path('pretrained', 'vgg_16_imagenet_conv.ckpt.index')[:-len('.index')]


def test_shared_conv_only_vgg16_sets_every_conv_and_leaves_conv6_conv7_fresh():
    checkpoint = _vgg_checkpoint()
    reader = tf.train.NewCheckpointReader(checkpoint)
    assert len(reader.get_variable_to_shape_map()) == 26
    lines = []
    with tf.Graph().as_default():
        net = nets_factory.build_network('ssd_vgg_300', 6)
        with slim.arg_scope(net.arg_scope()):
            net.net(tf.placeholder(tf.float32, [1, 300, 300, 3]))
        variables = {v.op.name: v for v in slim.get_model_variables('ssd_300_vgg')}
        init_fn = pretrained.init_fn_from_checkpoint(checkpoint, log=lines.append)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            fresh = ['ssd_300_vgg/conv6/weights', 'ssd_300_vgg/conv7/weights',
                     'ssd_300_vgg/conv7/biases', 'ssd_300_vgg/block8/conv1x1/weights']
            before = sess.run({name: variables[name] for name in fresh})
            init_fn(sess)
            for block, conv in VGG_CONVS:
                for kind in ('weights', 'biases'):
                    expected = reader.get_tensor('vgg_16/%s/%s/%s' % (block, conv, kind))
                    np.testing.assert_array_equal(
                        sess.run(variables['ssd_300_vgg/%s/%s/%s' % (block, conv, kind)]), expected)
            after = sess.run({name: variables[name] for name in fresh})
    for name in fresh:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert len(lines) == 1, lines
    assert lines[0].startswith('restored 26 of 71 model variables')
    assert 'conv6, conv7' in lines[0] and 'no fc6/fc7' in lines[0]


def _env():
    return dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')


def _train(train_dir, dataset_dir, *extra, timeout=600):
    command = [sys.executable, SCRIPT, '--train_model_dir=%s' % train_dir,
               '--dataset_dir=%s' % dataset_dir, '--dataset_name=vehicle', '--clone_on_cpu',
               '--batch_size=1', '--log_every_n_steps=1', '--num_preprocessing_threads=1',
               '--optimizer=adam', '--learning_rate=0.0001'] + list(extra)
    result = subprocess.run(command, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def test_two_full_width_steps_from_the_shared_vgg16(sample_tfrecords, tmp_path):
    train_dir = str(tmp_path / 'train')
    rc, out, err = _train(train_dir, sample_tfrecords, '--pre_trained_path=%s' % _vgg_checkpoint(),
                          '--max_number_of_steps=2', '--precision=bfloat16')
    assert rc == 0, err[-3000:]
    assert 'restored 26 of 71 model variables' in out and 'no fc6/fc7' in out
    assert 'training stopped at global step 2' in out
    assert tf.train.latest_checkpoint(train_dir).endswith('model.ckpt-2')


def _save_variables(path, shapes):
    with tf.Graph().as_default():
        variables = [tf.Variable(np.zeros(shape, np.float32), name=name)
                     for name, shape in shapes.items()]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver(variables).save(sess, path)
    return path


@pytest.mark.parametrize('case, expected', [
    ('missing_file', 'nothing.ckpt'),
    ('wrong_shape', "vgg_16/conv1/conv1_1/weights has shape [3, 3, 3, 64], the model's "
                    'ssd_300_vgg/conv1/conv1_1/weights needs [3, 3, 3, 8]'),
    ('missing_variable', 'lacks the variable vgg_16/conv1/conv1_1/biases'),
])
def test_checkpoint_errors_are_one_line_on_the_command_line(case, expected, sample_tfrecords,
                                                            tmp_path):
    # The narrow network (width 0.125) has 8 channels in conv1.
    path = {'missing_file': lambda: str(tmp_path / 'nothing.ckpt'),
            'wrong_shape': lambda: _save_variables(str(tmp_path / 'vgg.ckpt'), {
                'vgg_16/conv1/conv1_1/weights': [3, 3, 3, 64]}),
            'missing_variable': lambda: _save_variables(str(tmp_path / 'vgg.ckpt'), {
                'vgg_16/conv1/conv1_1/weights': [3, 3, 3, 8]})}[case]()
    train_dir = str(tmp_path / 'train')
    rc, out, err = _train(train_dir, sample_tfrecords, '--pre_trained_path=%s' % path,
                          '--width_multiplier=0.125', '--max_number_of_steps=1', timeout=300)
    assert rc == 1, out[-2000:]
    assert 'Traceback' not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith('error')]
    assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], err[-3000:]
    assert errors[0].startswith('error: --pre_trained_path=%s: ' % path) and expected in errors[0]
    assert not tf.train.latest_checkpoint(train_dir)


# Channels and cells of every conv output of SSD300, NCHW: the paper's table.
NCHW_CONV_SHAPES = dict(
    [('conv1/conv1_%d' % i, [64, 300, 300]) for i in (1, 2)] +
    [('conv2/conv2_%d' % i, [128, 150, 150]) for i in (1, 2)] +
    [('conv3/conv3_%d' % i, [256, 75, 75]) for i in (1, 2, 3)] +
    [('conv4/conv4_%d' % i, [512, 38, 38]) for i in (1, 2, 3)] +
    [('conv5/conv5_%d' % i, [512, 19, 19]) for i in (1, 2, 3)] +
    [('conv6', [1024, 19, 19]), ('conv7', [1024, 19, 19]),
     ('block8/conv1x1', [256, 19, 19]), ('block8/conv3x3', [512, 10, 10]),
     ('block9/conv1x1', [128, 10, 10]), ('block9/conv3x3', [256, 5, 5]),
     ('block10/conv1x1', [128, 5, 5]), ('block10/conv3x3', [256, 3, 3]),
     ('block11/conv1x1', [128, 3, 3]), ('block11/conv3x3', [256, 1, 1])] +
    [('%s_box/conv_loc' % layer, [anchors * 4, cells, cells]) for layer, anchors, cells in (
        ('block4', 4, 38), ('block7', 6, 19), ('block8', 6, 10), ('block9', 6, 5),
        ('block10', 4, 3), ('block11', 4, 1))] +
    [('%s_box/conv_cls' % layer, [anchors * 6, cells, cells]) for layer, anchors, cells in (
        ('block4', 4, 38), ('block7', 6, 19), ('block8', 6, 10), ('block9', 6, 5),
        ('block10', 4, 3), ('block11', 4, 1))])


def _trainer_flags(**overrides):
    """The trainer's flag defaults as a namespace."""
    flag_values = train_ssd_network.define_flags().values
    values = {name: flag_values[name].default for name in flag_values}
    values.update(overrides)
    return types.SimpleNamespace(**values)


def test_nchw_training_graph_has_every_layer_in_nchw(sample_tfrecords):
    options = _trainer_flags(data_format='NCHW', batch_size=2, train_model_dir='unused',
                             dataset_dir=sample_tfrecords, clone_on_cpu=True)
    spec = dataset_factory.get_dataset('vehicle', 'train', sample_tfrecords)
    net = nets_factory.build_network('ssd_vgg_300', spec.num_classes)
    with tf.Graph().as_default() as graph:
        global_step = tf.train.get_or_create_global_step()
        config = model_deploy.DeploymentConfig(clone_on_cpu=True)
        training_graph.build_training_graph(options, net, spec, config, global_step)
        convs = {}
        forward = [op for op in graph.get_operations() if 'gradients' not in op.name]
        for op in forward:
            if op.type in ('Conv2D', 'BiasAdd'):
                assert op.get_attr('data_format') == b'NCHW', op.name
            # A conv layer's output is its BiasAdd (the dilated conv6 runs Conv2D on
            # space-to-batch blocks, so its Conv2D has another shape).
            if op.type == 'BiasAdd':
                layer = op.name.split('ssd_300_vgg/', 1)[1].rsplit('/', 1)[0]
                convs[layer] = op.outputs[0].shape.as_list()
        pools = [op for op in forward if op.type == 'MaxPool']
    assert sorted(convs) == sorted(NCHW_CONV_SHAPES)
    for layer, (channels, height, width) in NCHW_CONV_SHAPES.items():
        assert convs[layer] == [2, channels, height, width], layer
    assert len(pools) == 5 and all(p.get_attr('data_format') == b'NCHW' for p in pools)
