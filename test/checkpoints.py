"""Checkpoint helpers shared by the test modules (not a test file): a randomly initialised SSD
saved with its model_info.json, and copies of it with an altered model_info.json; the toy scene
a model can be trained on (``TOY_BOXES``, ``TOY_LABELS``, ``toy_scene``)."""
import os
import shutil

import numpy as np

import tensorflow.compat.v1 as tf

from nets import nets_factory
from model import inference
from model import model_info

CLASS_NAMES = ['Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck']
WIDTH = 0.125
TOY_BOXES = np.array([[.2, .3, .7, .8], [.55, .05, .9, .35]], np.float32)
TOY_LABELS = np.array([2, 3], np.int64)


def toy_scene():
    """RGB uint8 300x300 picture of two flat rectangles, the ``TOY_BOXES`` objects (classes
    ``TOY_LABELS``); ``make_checkpoint(train_on=...)`` takes it VGG-whitened."""
    image = np.full((300, 300, 3), 60, np.uint8)
    image[60:210, 90:240] = (200, 40, 40)
    image[165:270, 15:105] = (30, 160, 220)
    return image


def make_checkpoint(directory, num_classes=6, width_multiplier=WIDTH, step=1, seed=0,
                    train_on=None):
    """Saves an SSD as ``<directory>/model.ckpt-<step>`` with model_info.json (vehicle classes,
    then ``class6``...). Returns the checkpoint prefix.

    The weights are random, or with ``train_on=(image float32 [300, 300, 3] VGG-whitened,
    labels [N], boxes [N, 4] normalised)`` trained ``step`` Adam steps on that one image, so
    that it detects those boxes confidently.
    """
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        net = nets_factory.build_network('ssd_vgg_300', num_classes, width_multiplier=width_multiplier)
        image = tf.zeros([1, 300, 300, 3]) if train_on is None else tf.constant(train_on[0][None])
        with inference.slim.arg_scope(net.arg_scope()):
            _, localisations, logits, _ = net.net(image, is_training=False)
        train = None
        if train_on is not None:
            targets = net.bboxes_encode(tf.constant(train_on[1]), tf.constant(train_on[2]),
                                        net.anchors())
            loss = net.losses(logits, localisations, *[[t[None] for t in ts] for ts in targets])
            train = tf.train.AdamOptimizer(4e-3).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(step if train is not None else 0):
                sess.run(train)
            saver = tf.train.Saver(inference.slim.get_model_variables())
            prefix = saver.save(sess, os.path.join(directory, 'model.ckpt'), global_step=step)
    model_info.write_model_info(directory, model_name='ssd_vgg_300', num_classes=num_classes,
                                class_names=class_names_for(num_classes),
                                width_multiplier=width_multiplier, dataset_name='vehicle',
                                img_shape=[300, 300])
    return prefix


def class_names_for(num_classes):
    return (CLASS_NAMES + ['class%d' % i for i in range(6, num_classes)])[:num_classes - 1]


def copy_with_info(checkpoint_dir, directory, **changes):
    """Copies the checkpoint files of ``checkpoint_dir`` with a model_info.json altered by
    ``changes``; returns the copy's prefix (the ``checkpoint`` index, which holds absolute
    paths to the original, is left behind)."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(checkpoint_dir):
        if name.startswith('model.ckpt-'):
            shutil.copy(os.path.join(checkpoint_dir, name), directory)
    model_info.write_model_info(directory, **dict(model_info.read_model_info(checkpoint_dir),
                                                  **changes))
    return os.path.join(directory, 'model.ckpt-1')
