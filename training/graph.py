"""The training graph: input pipeline with anchor encoding, clones of the network with their
losses, learning rate, optimizer and train op (the trainer and the training benchmark share it)."""
import contextlib
import warnings

import tensorflow as tf_v2
import tensorflow.compat.v1 as tf

from deployment import model_deploy
from nets import custom_layers
from training import train_tools
from utils import slim_compat

slim = slim_compat.import_slim()

# With Xavier weights the signal of SSD300's ~25 ReLU convs shrinks ~0.7x per layer (block11
# ends ~1000x weaker than block1), so from scratch only the block4 head learns; He keeps it.
WEIGHTS_INITIALIZERS = {'network': None,
                        'he': lambda: slim.variance_scaling_initializer(factor=2.0, mode='FAN_IN')}
SUMMARY_IMAGES = 3


def build_batches(options, spec, net, anchors, config):
    """The tf.data pipeline: decode -> training pre-processing -> per-image anchor encoding ->
    padded batch (drop_remainder) -> prefetch; returns (iterator, batch tensors).

    The batch is ``[images [B,300,300,3] ([B,3,300,300] for NCHW), labels [B,N], bboxes [B,N,4],
    gclasses(6), glocalisations(6), gscores(6)]`` with boxes normalised ``[ymin, xmin, ymax, xmax]`` and
    zero-padded to the largest object count of the batch (labels/bboxes only serve summaries).
    """
    from datasets import input_pipeline
    from preprocessing import preprocessing_factory
    preprocess = preprocessing_factory.get_preprocessing(options.model_name, is_training=True)
    num_layers = len(anchors)
    with tf.device(config.inputs_device()):
        dataset = input_pipeline.make_dataset(spec, shuffle=True,
                                              seed=replica_seed(options, config))

        def encode(example):
            image, labels, bboxes = preprocess(
                example['image'], example['labels'], example['bboxes'],
                out_shape=net.params.img_shape, data_format=options.data_format,
                zoom_out=options.zoom_out, photometric_distortion=options.photometric_distortion)
            gclasses, glocalisations, gscores = net.bboxes_encode(
                labels, bboxes, anchors, match_threshold=options.match_threshold)
            return tuple(train_tools.reshape_list(
                [image, labels, bboxes, gclasses, glocalisations, gscores]))

        dataset = dataset.map(encode, num_parallel_calls=options.num_preprocessing_threads)
        dataset = dataset.padded_batch(options.batch_size, drop_remainder=True)
        dataset = dataset.prefetch(2)
        iterator = tf.data.make_initializable_iterator(dataset)
        batch = train_tools.reshape_list(list(iterator.get_next()),
                                         [1, 1, 1, num_layers, num_layers, num_layers])
    return iterator, batch


def replica_seed(options, config):
    """``--seed`` of this worker (None when not given): workers of one run draw different
    augmentations and orders."""
    return None if options.seed is None else options.seed + config.replica_id


def make_deterministic():
    """Makes every op of the process deterministic, as ``--seed`` needs: a parallel map whose
    function holds stateful random ops (the augmentation) then runs in order, so each image gets
    the same draws whatever the thread timing. Process-wide and irreversible."""
    tf_v2.config.experimental.enable_op_determinism()


def split_for_clones(batch, num_clones):
    """Per clone, the same structure as ``batch`` holding its slice of the batch dimension."""
    flat = train_tools.reshape_list(batch)
    pieces = [tf.split(t, num_clones, axis=0) for t in flat]
    shape = [1, 1, 1] + [len(batch[3])] * 3
    return [train_tools.reshape_list([p[i] for p in pieces], shape) for i in range(num_clones)]


def add_image_summary(images, bboxes, data_format):
    """A few input images with their ground-truth boxes drawn (TensorBoard 'inputs')."""
    from preprocessing.processing import ssd_vgg_preprocessing
    pixels = ssd_vgg_preprocessing.unwhiten_image(images[:SUMMARY_IMAGES], data_format)
    drawn = tf.image.draw_bounding_boxes(tf.image.convert_image_dtype(pixels, tf.float32),
                                         bboxes[:SUMMARY_IMAGES])
    tf.summary.image('inputs_with_boxes', drawn, max_outputs=SUMMARY_IMAGES)


@contextlib.contextmanager
def initializer_scope(name, head_init_stddev=0.0):
    """arg_scopes overriding the initial conv weights: ``name`` for every conv ('network' keeps
    the network's), and a truncated normal of ``head_init_stddev`` (when > 0) for the box heads."""
    make = WEIGHTS_INITIALIZERS[name]
    with slim.arg_scope([slim.conv2d], **({'weights_initializer': make()} if make else {})):
        head = {'weights_initializer': tf.truncated_normal_initializer(stddev=head_init_stddev)} \
            if head_init_stddev > 0 else {}
        with slim.arg_scope([custom_layers.box_head_conv], **head) as scope:
            yield scope


def decay_steps_of(options, num_samples):
    """Steps per learning-rate decay period (exponential) or to the end rate (polynomial)."""
    if options.num_epochs_per_decay == 0:
        return options.max_number_of_steps
    return int(num_samples / options.batch_size * options.num_epochs_per_decay) or 1


def build_training_graph(options, net, spec, config, global_step, class_weights=None):
    """Input pipeline, clones, losses, LR, optimizer and train op; returns a dict of handles.
    ``class_weights``: None or the loss's per-class weights (``training.class_weights``)."""
    seed = replica_seed(options, config)
    if seed is not None:
        tf.set_random_seed(seed)   # op seeds of initialisers and augmentation follow from it
        # tf.data then warns that the augmentation's unseeded ops take their seeds from the
        # graph's: exactly what --seed means, so the warning would only alarm the user.
        warnings.filterwarnings('ignore', message=r'Seed \d+ from outer graph might be getting '
                                'used by function')
    anchors = net.anchors(net.params.img_shape)
    iterator, batch = build_batches(options, spec, net, anchors, config)
    # create_clones calls build_clone once per clone, in clone order: each takes the next slice.
    next_clone_batch = iter(split_for_clones(batch, config.num_clones)).__next__

    def build_clone(take_batch):
        images, _, _, gclasses, glocalisations, gscores = take_batch()
        with slim.arg_scope(net.arg_scope(weight_decay=options.weight_decay,
                                          data_format=options.data_format)):
            with initializer_scope(options.weights_initializer, options.head_init_stddev):
                _, localisations, logits, end_points = net.net(images, is_training=True)
        net.losses(logits, localisations, gclasses, glocalisations, gscores,
                   match_threshold=options.match_threshold, negative_ratio=options.negative_ratio,
                   alpha=options.loss_alpha, label_smoothing=options.label_smoothing,
                   class_weights=class_weights)
        return end_points

    clones = model_deploy.create_clones(config, build_clone, [next_clone_batch])
    add_image_summary(batch[0], batch[2], options.data_format)
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS, clones[0].scope)

    with tf.device(config.optimizer_device()):
        decay_steps = decay_steps_of(options, spec.num_samples)
        learning_rate = train_tools.configure_learning_rate(
            options.learning_rate_decay_type, options.learning_rate, global_step,
            decay_steps=decay_steps, decay_factor=options.learning_rate_decay_factor,
            end_learning_rate=options.end_learning_rate, warmup_steps=options.warmup_steps)
        tf.summary.scalar('learning_rate', learning_rate)
        optimizer = train_tools.configure_optimizer(
            options.optimizer, learning_rate, momentum=options.momentum,
            rmsprop_decay=options.rmsprop_decay, rmsprop_momentum=options.rmsprop_momentum,
            opt_epsilon=options.opt_epsilon, adam_beta1=options.adam_beta1,
            adam_beta2=options.adam_beta2, adadelta_rho=options.adadelta_rho,
            adagrad_initial_accumulator_value=options.adagrad_initial_accumulator_value,
            ftrl_learning_rate_power=options.ftrl_learning_rate_power,
            ftrl_initial_accumulator_value=options.ftrl_initial_accumulator_value,
            ftrl_l1=options.ftrl_l1, ftrl_l2=options.ftrl_l2)
    variables_to_train = train_tools.get_variables_to_train(options.trainable_scopes)
    total_loss, grads_and_vars = train_tools.deploy_loss_summary(clones, optimizer,
                                                                 var_list=variables_to_train)
    with tf.device(config.optimizer_device()):
        train_tensor, is_finite = train_tools.get_trainop(optimizer, grads_and_vars, global_step,
                                                          total_loss, update_ops)
    loss_parts = train_tools.mean_loss_parts(clones)
    regularization = tf.losses.get_regularization_losses()
    if regularization:
        loss_parts['regularization'] = tf.add_n(regularization)
    return dict(iterator=iterator, train_tensor=train_tensor, is_finite=is_finite,
                total_loss=total_loss, learning_rate=learning_rate, loss_parts=loss_parts)
