"""model/checkpoints: one meaning of a scope flag (scope boundaries) and one checkpoint error."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model import checkpoints, model_info, pretrained
from training import hooks, train_tools
from utils import slim_compat
from utils.errors import ToolkitError

slim = slim_compat.import_slim()
tf.disable_eager_execution()


def test_scopes_match_at_scope_boundaries():
    name = 'ssd_300_vgg/block4_box/conv_cls/weights'
    for scopes in ('ssd_300_vgg/block4_box', 'ssd_300_vgg/block4_box/',
                   ' x, ssd_300_vgg/block4_box', ['ssd_300_vgg/block4_box/conv_cls'], [name]):
        assert checkpoints.in_scopes(name, scopes), scopes
    for scopes in ('ssd_300_vgg/block4', 'ssd_300_vgg/block4_box/conv', '', None, ' , '):
        assert not checkpoints.in_scopes(name, scopes), scopes
    assert not checkpoints.in_scopes('ssd_300_vgg/block4_box2/conv_cls/weights',
                                     'ssd_300_vgg/block4_box')


def test_exclude_and_trainable_scopes_share_that_meaning(tmp_path):
    names = ['ssd_300_vgg/block4_box/w', 'ssd_300_vgg/block4_box2/w']
    with tf.Graph().as_default():
        variables = [tf.Variable(np.ones([2], np.float32), name=n) for n in names]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver(variables).save(sess, str(tmp_path / 'model.ckpt'))
    with tf.Graph().as_default():
        variables = [slim.model_variable(n, [2], initializer=tf.zeros_initializer()) for n in names]
        init_fn = pretrained.init_fn_from_checkpoint(
            prefix, exclude_scopes='ssd_300_vgg/block4_box', log=lambda _: None)
        assert train_tools.get_variables_to_train('ssd_300_vgg/block4_box') == variables[:1]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            init_fn(sess)
            excluded, loaded = sess.run(variables)
    np.testing.assert_array_equal(excluded, [0, 0])
    np.testing.assert_array_equal(loaded, [1, 1])


def test_one_checkpoint_error_class(tmp_path):
    assert issubclass(checkpoints.CheckpointError, ToolkitError)
    assert issubclass(checkpoints.CheckpointError, ValueError)
    # The inference tools catch a trained model's problems as ModelInfoError: checkpoints too.
    assert issubclass(checkpoints.CheckpointError, model_info.ModelInfoError)
    for error in (train_tools.TrainConfigError, hooks.NonFiniteLossError,
                  model_info.ModelInfoError):
        assert issubclass(error, ToolkitError), error
    with pytest.raises(checkpoints.CheckpointError, match='no checkpoint in directory'):
        checkpoints.resolve(str(tmp_path))
    with tf.Graph().as_default(), pytest.raises(checkpoints.CheckpointError,
                                                match='no checkpoint at'):
        pretrained.init_fn_from_checkpoint(str(tmp_path / 'nothing.ckpt'))
    with tf.Graph().as_default(), pytest.raises(checkpoints.CheckpointError,
                                                match='--pre_trained_path=.*no checkpoint at'):
        train_tools.get_init_fn(str(tmp_path / 'nothing.ckpt'), None, 6)


def test_trained_num_classes():
    assert checkpoints.trained_num_classes([3, 3, 8, 84], [3, 3, 8, 24], 6) == 21
    assert checkpoints.trained_num_classes([3, 3, 8, 85], [3, 3, 8, 24], 6) is None
