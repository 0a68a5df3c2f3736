import os

import pytest
import tensorflow.compat.v1 as tf

from model import checkpoints, model_info


def _save_checkpoint(directory, step):
    with tf.Graph().as_default():
        tf.Variable(1.0, name='v')
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return tf.train.Saver().save(sess, os.path.join(directory, 'model.ckpt'), global_step=step)


def test_round_trip_and_validation(tmp_path):
    model_info.write_model_info(str(tmp_path), model_name='ssd_vgg_300', num_classes=3,
                                class_names=['Bus', 'Car'])
    info = model_info.read_model_info(str(tmp_path / 'model.ckpt-5'))
    assert info['class_names'] == ['Bus', 'Car'] and info['width_multiplier'] == 1.0
    model_info.write_model_info(str(tmp_path), model_name='ssd_vgg_300', num_classes=4,
                                class_names=['Bus', 'Car'])
    with pytest.raises(model_info.ModelInfoError, match='2 class names for num_classes=4'):
        model_info.read_model_info(str(tmp_path))


def test_missing_info_names_the_file(tmp_path):
    with pytest.raises(model_info.ModelInfoError, match='model_info.json not found'):
        model_info.read_model_info(str(tmp_path))


def test_found_for_a_file_an_export_a_folder_and_a_prefix(tmp_path):
    export_version = tmp_path / 'export' / 'ssd' / '1'
    written = model_info.write_model_info(str(export_version / model_info.ASSETS_EXTRA),
                                          model_name='ssd_vgg_300', num_classes=2,
                                          class_names=['Car'])
    assert written == str(export_version / 'assets.extra' / 'model_info.json')
    assert model_info.find_model_info(str(export_version)) == written
    assert model_info.find_model_info(written) == written
    assert model_info.read_model_info(str(export_version))['class_names'] == ['Car']
    train_dir = tmp_path / 'train'
    written = model_info.write_model_info(str(train_dir), model_name='ssd_vgg_300',
                                          num_classes=2, class_names=['Car'])
    assert model_info.find_model_info(str(train_dir)) == written
    assert model_info.find_model_info(str(train_dir / 'model.ckpt-7')) == written


def test_client_names_the_flag_for_a_folder_without_model_info(tmp_path):
    from serving.clients import client
    with pytest.raises(client.ClientError, match='^--model_info: .*model_info.json not found'):
        client.load_class_names(str(tmp_path))


def test_resolve_checkpoint(tmp_path):
    _save_checkpoint(str(tmp_path), 3)
    newest = _save_checkpoint(str(tmp_path), 10)
    assert checkpoints.resolve(str(tmp_path)) == newest
    assert checkpoints.resolve(newest) == newest
    with pytest.raises(checkpoints.CheckpointError, match='use %s$' % newest):
        checkpoints.resolve(newest + '.index')
    with pytest.raises(checkpoints.CheckpointError, match='use %s$' % newest):
        checkpoints.resolve(newest + '.data-00000-of-00001')
    with pytest.raises(checkpoints.CheckpointError, match='no checkpoint at'):
        checkpoints.resolve(str(tmp_path / 'model.ckpt-99'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(checkpoints.CheckpointError, match='no checkpoint in directory'):
        checkpoints.resolve(str(tmp_path / 'empty'))
