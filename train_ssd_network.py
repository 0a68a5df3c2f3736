"""Trains SSD-VGG300 on TFRecords: clones, parameter servers, checkpoints and TensorBoard.

    python train_ssd_network.py --train_model_dir=ckpt/fine_tuning --dataset_dir=Images/tfrecords \\
        --dataset_name=vehicle --train_or_test=train --batch_size=32 --max_number_of_steps=10000

Resumes from the newest checkpoint in --train_model_dir, else fine-tunes from --pre_trained_path,
else starts from scratch. Writes model.ckpt-<step>, TensorBoard events, model_info.json and
training_config.txt into --train_model_dir. SIGINT/SIGTERM save a final checkpoint.
"""
import contextlib
import os
import sys

import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from deployment import model_deploy
from nets import custom_layers
from model import inference
from model import model_info
from utils import slim_compat
from training import train_tools
from utils.errors import ToolkitError

slim = slim_compat.import_slim()
flags = tf.app.flags
FLAGS = flags.FLAGS

# --- Output and checkpoints ---
flags.DEFINE_string('train_model_dir', None, 'Directory for checkpoints, events and model_info.json.')
flags.DEFINE_integer('save_interval_secs', 600, 'Seconds between checkpoints.')
flags.DEFINE_integer('save_summaries_secs', 60, 'Seconds between TensorBoard summaries.')
flags.DEFINE_integer('max_to_keep', 5, 'Most recent checkpoints to keep.')
flags.DEFINE_float('keep_checkpoint_every_n_hours', 1.0,
                   'Also keep one checkpoint per this many hours of training.')
flags.DEFINE_integer('log_every_n_steps', 10, 'Steps between log lines.')
# --- Data ---
flags.DEFINE_string('dataset_dir', None, 'Folder of TFRecord shards and dataset_description.json.')
flags.DEFINE_string('dataset_name', 'vehicle', 'Dataset: pascalvoc_2007, vehicle or a custom name.')
flags.DEFINE_string('train_or_test', 'train', 'Split to train on (e.g. train, trainval).')
flags.DEFINE_integer('batch_size', 32, 'Images per step per worker (split over the clones).')
flags.DEFINE_integer('num_preprocessing_threads', 4, 'Parallel calls of the pre-processing map.')
flags.DEFINE_integer('shuffle_seed', None, 'Seed of the input shuffling (None: random).')
flags.DEFINE_boolean('zoom_out', True, 'Augmentation: random zoom-out (objects shrink on a '
                     'mean-coloured canvas); off speeds learning when objects are large.')
flags.DEFINE_boolean('photometric_distortion', True,
                     'Augmentation: random brightness/contrast/saturation/hue.')
# --- Network ---
flags.DEFINE_string('model_name', 'ssd_vgg_300', 'Network: ssd_vgg_300 (alias ssd_300_vgg).')
flags.DEFINE_integer('num_classes', None, 'Classes incl. background (default: from the dataset).')
flags.DEFINE_float('width_multiplier', 1.0, 'Scales every layer width (1.0 = the paper network).')
flags.DEFINE_string('data_format', 'NHWC', 'NHWC (CPU) or NCHW (GPU only).')
flags.DEFINE_float('weight_decay', 0.0005, 'L2 weight decay of the network layers.')
flags.DEFINE_string('weights_initializer', 'network',
                    'Initial conv weights of layers not restored from a checkpoint: network (its '
                    'own, Xavier) or he (variance scaling for ReLU: the deep layers of SSD300 '
                    'keep their signal, which training from scratch needs).')
flags.DEFINE_float('head_init_stddev', 0.0,
                   'When > 0, the box heads start from a truncated normal of this std instead of '
                   'the network\'s initialiser. Fine-tuning from VGG-16 without fc6/fc7 wants '
                   '0.001: fresh conv7 over VGG\'s conv5 has features of rms ~4, on which Xavier '
                   'heads start with logits up to ~24 (confident errors the first steps undo).')
flags.DEFINE_float('match_threshold', 0.5, 'IoU above which an anchor is a positive.')
flags.DEFINE_float('negative_ratio', 3.0, 'Hard negatives mined per positive.')
flags.DEFINE_float('loss_alpha', 1.0, 'Weight of the localisation loss.')
flags.DEFINE_float('label_smoothing', 0.0, 'Label smoothing of the classification loss.')
# --- Initialisation (fine-tuning) ---
flags.DEFINE_string('pre_trained_path', None,
                    'Checkpoint (prefix or folder) to fine-tune from when --train_model_dir has none.')
flags.DEFINE_string('checkpoint_exclude_scopes', None,
                    'Comma-separated variable scopes not restored from --pre_trained_path.')
flags.DEFINE_string('checkpoint_model_scope', None,
                    'Model scope inside --pre_trained_path when it differs (e.g. vgg_16).')
flags.DEFINE_string('trainable_scopes', None,
                    'Comma-separated scopes to train (default: every trainable variable).')
flags.DEFINE_boolean('ignore_missing_vars', False,
                     'Skip model variables missing from --pre_trained_path instead of failing.')
# --- Optimisation ---
flags.DEFINE_string('optimizer', 'rmsprop', 'One of %s.' % ', '.join(train_tools.OPTIMIZERS))
flags.DEFINE_float('learning_rate', 0.01, 'Initial learning rate.')
flags.DEFINE_string('learning_rate_decay_type', 'exponential',
                    'One of %s.' % ', '.join(train_tools.LEARNING_RATE_DECAY_TYPES))
flags.DEFINE_float('end_learning_rate', 0.0001, 'Final rate of the polynomial decay.')
flags.DEFINE_float('learning_rate_decay_factor', 0.94, 'Exponential decay factor.')
flags.DEFINE_integer('warmup_steps', 0, 'Steps of linear learning-rate warm-up from 0 (fine-tuning '
                     'from VGG-16: the fresh layers\' first updates are large).')
flags.DEFINE_float('num_epochs_per_decay', 2.0,
                   'Epochs per exponential decay period / until the polynomial end rate; 0 with '
                   'the polynomial decay: it ends at --max_number_of_steps.')
flags.DEFINE_integer('max_number_of_steps', None, 'Stop at this global step (None: never).')
flags.DEFINE_float('momentum', 0.9, 'Momentum of the momentum optimizer.')
flags.DEFINE_float('rmsprop_decay', 0.9, 'Decay of RMSProp.')
flags.DEFINE_float('rmsprop_momentum', 0.9, 'Momentum of RMSProp.')
flags.DEFINE_float('opt_epsilon', None, 'Epsilon of adam, adadelta and rmsprop (default: 1.0 '
                   'for rmsprop as in SSD-Tensorflow, 1e-8 for adam and adadelta).')
flags.DEFINE_float('adam_beta1', 0.9, 'Adam beta1.')
flags.DEFINE_float('adam_beta2', 0.999, 'Adam beta2.')
flags.DEFINE_float('adadelta_rho', 0.95, 'Adadelta decay.')
flags.DEFINE_float('adagrad_initial_accumulator_value', 0.1, 'Adagrad accumulator start.')
flags.DEFINE_float('ftrl_learning_rate_power', -0.5, 'FTRL learning-rate power.')
flags.DEFINE_float('ftrl_initial_accumulator_value', 0.1, 'FTRL accumulator start.')
flags.DEFINE_float('ftrl_l1', 0.0, 'FTRL L1 strength.')
flags.DEFINE_float('ftrl_l2', 0.0, 'FTRL L2 strength.')
# --- Devices and session ---
flags.DEFINE_integer('num_clones', 1, 'Model clones per worker, each on a GPU (or the CPU).')
flags.DEFINE_boolean('clone_on_cpu', False, 'Put every clone on the CPU.')
flags.DEFINE_float('gpu_memory_fraction', 0.9, 'Fraction of GPU memory the process may take.')
flags.DEFINE_boolean('allow_growth', False, 'Grow GPU memory on demand instead of reserving it.')
flags.DEFINE_boolean('log_device_placement', False, 'Log the device of every op.')
flags.DEFINE_string('precision', 'float32', 'float32, or bfloat16: mixed precision (oneDNN '
                    'rewrites the convolutions to bfloat16 on CPUs that support it; variables and '
                    'checkpoints stay float32).')
# --- Distributed training (parameter servers and workers) ---
flags.DEFINE_integer('num_replicas', 1, 'Worker processes (1 = not distributed).')
flags.DEFINE_integer('num_ps_tasks', 0, 'Parameter-server tasks holding the variables.')
flags.DEFINE_integer('task', 0, 'Index of this process within its job (worker 0 is the chief).')
flags.DEFINE_string('job_name', 'worker', 'Role of this process: ps or worker.')
flags.DEFINE_string('ps_hosts', '', 'Comma-separated host:port of the parameter servers.')
flags.DEFINE_string('worker_hosts', '', 'Comma-separated host:port of the workers.')

NETWORK_SCOPE = 'ssd_300_vgg'
# With Xavier weights the signal of SSD300's ~25 ReLU convs shrinks ~0.7x per layer (block11
# ends ~1000x weaker than block1), so from scratch only the block4 head learns; He keeps it.
WEIGHTS_INITIALIZERS = {'network': None,
                        'he': lambda: slim.variance_scaling_initializer(factor=2.0, mode='FAN_IN')}
SUMMARY_IMAGES = 3
PRECISIONS = inference.PRECISIONS   # one list for every tool


class TrainError(ToolkitError, ValueError):
    """A flag or input that prevents training; the message names it."""


def _hosts(flag_name, value):
    hosts = [h.strip() for h in value.split(',') if h.strip()]
    for host in hosts:
        if ':' not in host:
            raise TrainError('--%s: %r is not host:port' % (flag_name, host))
    return hosts


def setup_cluster(f):
    """(DeploymentConfig, tf.distribute.Server or None) from the distributed flags.

    A ps process serves forever here (the caller never gets back); workers get a server whose
    target the session connects to.
    """
    if f.num_replicas == 1 and f.num_ps_tasks == 0:
        return _deployment_config(f), None
    ps_hosts, worker_hosts = _hosts('ps_hosts', f.ps_hosts), _hosts('worker_hosts', f.worker_hosts)
    if len(ps_hosts) != f.num_ps_tasks:
        raise TrainError('--ps_hosts lists %d hosts for --num_ps_tasks=%d'
                         % (len(ps_hosts), f.num_ps_tasks))
    if len(worker_hosts) != f.num_replicas:
        raise TrainError('--worker_hosts lists %d hosts for --num_replicas=%d'
                         % (len(worker_hosts), f.num_replicas))
    if f.job_name not in ('ps', 'worker'):
        raise TrainError('--job_name=%s must be ps or worker' % f.job_name)
    tasks = ps_hosts if f.job_name == 'ps' else worker_hosts
    if not 0 <= f.task < len(tasks):
        raise TrainError('--task=%d is out of range for %d %s tasks'
                         % (f.task, len(tasks), f.job_name))
    cluster = tf.train.ClusterSpec({'ps': ps_hosts, 'worker': worker_hosts})
    server = tf.distribute.Server(cluster, job_name=f.job_name, task_index=f.task,
                                  config=tf.ConfigProto(allow_soft_placement=True))
    if f.job_name == 'ps':
        print('parameter server %d serving on %s' % (f.task, ps_hosts[f.task]), flush=True)
        server.join()
    return _deployment_config(f, replica_id=f.task), server


def _deployment_config(f, replica_id=0):
    try:
        return model_deploy.DeploymentConfig(
            num_clones=f.num_clones, clone_on_cpu=f.clone_on_cpu, replica_id=replica_id,
            num_replicas=f.num_replicas, num_ps_tasks=f.num_ps_tasks)
    except ValueError as e:
        raise TrainError('--num_clones/--num_replicas/--num_ps_tasks/--task: %s' % e)


def check_flags(f):
    """One-line errors for flags that cannot work, before anything is built."""
    if not f.train_model_dir:
        raise TrainError('--train_model_dir is required')
    if not f.dataset_dir:
        raise TrainError('--dataset_dir is required')
    if not os.path.isdir(f.dataset_dir):
        raise TrainError('--dataset_dir=%s is not a directory' % f.dataset_dir)
    if f.batch_size < 1 or f.batch_size % f.num_clones:
        raise TrainError('--batch_size=%d must be a positive multiple of --num_clones=%d'
                         % (f.batch_size, f.num_clones))
    if f.num_classes is not None and f.num_classes < 2:
        raise TrainError('--num_classes=%d must be >= 2 (background included)' % f.num_classes)
    if f.width_multiplier <= 0:
        raise TrainError('--width_multiplier=%g must be > 0' % f.width_multiplier)
    if f.weights_initializer not in WEIGHTS_INITIALIZERS:
        raise TrainError('--weights_initializer=%s must be one of %s'
                         % (f.weights_initializer, ', '.join(sorted(WEIGHTS_INITIALIZERS))))
    if f.data_format not in ('NHWC', 'NCHW'):
        raise TrainError('--data_format=%s must be NHWC or NCHW' % f.data_format)
    if f.head_init_stddev < 0:
        raise TrainError('--head_init_stddev=%g must be >= 0' % f.head_init_stddev)
    if f.precision not in PRECISIONS:
        raise TrainError('--precision=%s must be one of %s' % (f.precision, ', '.join(PRECISIONS)))
    if f.num_epochs_per_decay < 0 or (f.num_epochs_per_decay == 0 and not (
            f.learning_rate_decay_type == 'polynomial' and f.max_number_of_steps)):
        raise TrainError('--num_epochs_per_decay=%g must be > 0 (or 0 with '
                         '--learning_rate_decay_type=polynomial and --max_number_of_steps)'
                         % f.num_epochs_per_decay)
    if f.max_number_of_steps is not None and f.max_number_of_steps < 1:
        raise TrainError('--max_number_of_steps=%d must be >= 1' % f.max_number_of_steps)


def load_dataset(f):
    """DatasetSpec of the training split; num_classes from it unless --num_classes is given."""
    from datasets import dataset_factory
    try:
        spec = dataset_factory.get_dataset(f.dataset_name, f.train_or_test, f.dataset_dir)
    except (ValueError, IOError, KeyError) as e:
        raise TrainError('--dataset_dir=%s --dataset_name=%s --train_or_test=%s: %s'
                         % (f.dataset_dir, f.dataset_name, f.train_or_test, e))
    if not spec.data_sources or not spec.num_samples:
        raise TrainError('--train_or_test=%s: no samples in %s' % (f.train_or_test, f.dataset_dir))
    if f.num_classes is not None and f.num_classes < spec.num_classes:
        raise TrainError('--num_classes=%d is smaller than the %d classes (background included) '
                         'of dataset %s: drop the flag to use the dataset\'s count'
                         % (f.num_classes, spec.num_classes, f.dataset_name))
    if f.num_classes is not None and f.num_classes > spec.num_classes:
        print('warning: --num_classes=%d exceeds the dataset\'s %d (background included)'
              % (f.num_classes, spec.num_classes), flush=True)
    return spec


def build_batches(f, spec, net, anchors, config):
    """The tf.data pipeline: decode -> training pre-processing -> per-image anchor encoding ->
    padded batch (drop_remainder) -> prefetch; returns (iterator, batch tensors).

    The batch is ``[images [B,300,300,3] ([B,3,300,300] for NCHW), labels [B,N], bboxes [B,N,4],
    gclasses(6), glocalisations(6), gscores(6)]`` with boxes normalised ``[ymin, xmin, ymax, xmax]`` and
    zero-padded to the largest object count of the batch (labels/bboxes only serve summaries).
    """
    from datasets import input_pipeline
    from preprocessing import preprocessing_factory
    preprocess = preprocessing_factory.get_preprocessing(f.model_name, is_training=True)
    num_layers = len(anchors)
    with tf.device(config.inputs_device()):
        seed = None if f.shuffle_seed is None else f.shuffle_seed + config.replica_id
        dataset = input_pipeline.make_dataset(spec, shuffle=True, seed=seed)

        def encode(example):
            image, labels, bboxes = preprocess(
                example['image'], example['labels'], example['bboxes'],
                out_shape=net.params.img_shape, data_format=f.data_format, zoom_out=f.zoom_out,
                photometric_distortion=f.photometric_distortion)
            gclasses, glocalisations, gscores = net.bboxes_encode(labels, bboxes, anchors)
            return tuple(train_tools.reshape_list(
                [image, labels, bboxes, gclasses, glocalisations, gscores]))

        dataset = dataset.map(encode, num_parallel_calls=f.num_preprocessing_threads)
        dataset = dataset.padded_batch(f.batch_size, drop_remainder=True)
        dataset = dataset.prefetch(2)
        iterator = tf.data.make_initializable_iterator(dataset)
        batch = train_tools.reshape_list(list(iterator.get_next()),
                                         [1, 1, 1, num_layers, num_layers, num_layers])
    return iterator, batch


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


def decay_steps_of(f, num_samples):
    """Steps per learning-rate decay period (exponential) or to the end rate (polynomial)."""
    if f.num_epochs_per_decay == 0:
        return f.max_number_of_steps
    return int(num_samples / f.batch_size * f.num_epochs_per_decay) or 1


def build_training_graph(f, net, spec, config, global_step):
    """Input pipeline, clones, losses, LR, optimizer and train op; returns a dict of handles."""
    anchors = net.anchors(net.params.img_shape)
    iterator, batch = build_batches(f, spec, net, anchors, config)
    clone_batches = split_for_clones(batch, config.num_clones)

    def clone_fn(clone_batches):
        images, _, _, gclasses, glocalisations, gscores = clone_batches.pop(0)
        with slim.arg_scope(net.arg_scope(weight_decay=f.weight_decay,
                                          data_format=f.data_format)):
            with initializer_scope(f.weights_initializer, f.head_init_stddev):
                _, localisations, logits, end_points = net.net(images, is_training=True)
        net.losses(logits, localisations, gclasses, glocalisations, gscores,
                   match_threshold=f.match_threshold, negative_ratio=f.negative_ratio,
                   alpha=f.loss_alpha, label_smoothing=f.label_smoothing)
        return end_points

    clones = model_deploy.create_clones(config, clone_fn, [clone_batches])
    add_image_summary(batch[0], batch[2], f.data_format)
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS, clones[0].scope)

    with tf.device(config.optimizer_device()):
        decay_steps = decay_steps_of(f, spec.num_samples)
        learning_rate = train_tools.configure_learning_rate(
            f.learning_rate_decay_type, f.learning_rate, global_step, decay_steps=decay_steps,
            decay_factor=f.learning_rate_decay_factor, end_learning_rate=f.end_learning_rate,
            warmup_steps=f.warmup_steps)
        tf.summary.scalar('learning_rate', learning_rate)
        optimizer = train_tools.configure_optimizer(
            f.optimizer, learning_rate, momentum=f.momentum, rmsprop_decay=f.rmsprop_decay,
            rmsprop_momentum=f.rmsprop_momentum, opt_epsilon=f.opt_epsilon,
            adam_beta1=f.adam_beta1, adam_beta2=f.adam_beta2, adadelta_rho=f.adadelta_rho,
            adagrad_initial_accumulator_value=f.adagrad_initial_accumulator_value,
            ftrl_learning_rate_power=f.ftrl_learning_rate_power,
            ftrl_initial_accumulator_value=f.ftrl_initial_accumulator_value,
            ftrl_l1=f.ftrl_l1, ftrl_l2=f.ftrl_l2)
    variables_to_train = train_tools.get_variables_to_train(f.trainable_scopes)
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


def class_names(spec, num_classes):
    """The dataset's class names fitted to ``num_classes`` (ids past the dataset get 'class_<id>')."""
    names = list(spec.class_names)[:num_classes - 1]
    return names + ['class_%d' % i for i in range(len(names) + 1, num_classes)]


def session_config(f):
    gpu_options = tf.GPUOptions(per_process_gpu_memory_fraction=f.gpu_memory_fraction,
                                allow_growth=f.allow_growth)
    config = tf.ConfigProto(allow_soft_placement=True, log_device_placement=f.log_device_placement,
                            gpu_options=gpu_options)
    if f.precision == 'bfloat16':
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = \
            rewriter_config_pb2.RewriterConfig.ON
        if os.environ.get('TF_ENABLE_ONEDNN_OPTS') != '1':
            print('warning: --precision=bfloat16 trains through oneDNN\'s bfloat16 rewrite: set '
                  'TF_ENABLE_ONEDNN_OPTS=1 (command.sh does), or it may run in float32', flush=True)
    return config


def build_hooks(f, handles, global_step, step_after, is_chief, scaffold, signal_hook):
    """Session hooks in the order that matters: the non-finite guard first, checkpoints last."""
    hooks = [train_tools.NonFiniteGuardHook(handles['is_finite'], handles['total_loss'],
                                            global_step),
             signal_hook,
             train_tools.LoggingHook(f.log_every_n_steps, f.batch_size, step_after,
                                     handles['total_loss'], handles['learning_rate'],
                                     handles['loss_parts'])]
    if f.max_number_of_steps:
        hooks.append(tf.train.StopAtStepHook(last_step=f.max_number_of_steps))
    if is_chief:
        hooks.append(tf.train.SummarySaverHook(save_secs=f.save_summaries_secs,
                                               output_dir=f.train_model_dir, scaffold=scaffold))
        hooks.append(tf.train.CheckpointSaverHook(f.train_model_dir,
                                                  save_secs=f.save_interval_secs,
                                                  scaffold=scaffold))
    return hooks


def _first_line(error):
    """The first informative line of a TensorFlow error (its message starts with a banner)."""
    lines = [l.strip() for l in error.message.splitlines() if l.strip()]
    useful = [l for l in lines if not l.startswith(('Graph execution error', 'Detected at node'))]
    return (useful or lines or ['unknown error'])[0]


class WorkerSessionCreator(tf.train.SessionCreator):
    """Session of a non-chief worker: waits for the chief to initialise the shared variables,
    polling every ``poll_secs`` (TensorFlow's own creator polls every 30 s)."""

    def __init__(self, scaffold, master, config, poll_secs=1):
        self._scaffold, self._master, self._config = scaffold, master, config
        self._poll_secs = poll_secs

    def create_session(self):
        self._scaffold.finalize()
        manager = tf.train.SessionManager(
            local_init_op=self._scaffold.local_init_op,
            ready_op=self._scaffold.ready_op,
            ready_for_local_init_op=self._scaffold.ready_for_local_init_op,
            graph=tf.get_default_graph(), recovery_wait_secs=self._poll_secs)
        return manager.wait_for_session(self._master, config=self._config)


def run_session(f, server, is_chief, scaffold, hooks, step_after):
    """Runs training steps until a hook stops them; returns the last global step reached.

    The chief restores the newest checkpoint of --train_model_dir (else runs the scaffold's
    init_fn); other workers wait for the chief.
    """
    master = server.target if server else ''
    if is_chief:
        creator = tf.train.ChiefSessionCreator(scaffold=scaffold, master=master,
                                               config=session_config(f),
                                               checkpoint_dir=f.train_model_dir)
    else:
        creator = WorkerSessionCreator(scaffold, master, session_config(f))
    final_step = None
    try:
        with tf.train.MonitoredSession(session_creator=creator, hooks=hooks) as sess:
            while not sess.should_stop():
                final_step = sess.run(step_after)
    except tf.errors.OutOfRangeError:
        raise TrainError('--dataset_dir=%s: the input ran out of data' % f.dataset_dir)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError) as e:
        # Typically a checkpoint in --train_model_dir written with other network flags.
        raise TrainError('--train_model_dir=%s: %s (was it trained with other --model_name/'
                         '--width_multiplier flags?)' % (f.train_model_dir, _first_line(e)))
    return final_step


def train(f):
    """Builds and runs the training; returns the final global step (a ps task never returns)."""
    config, server = setup_cluster(f)
    check_flags(f)
    spec = load_dataset(f)
    num_classes = f.num_classes or spec.num_classes
    from nets import nets_factory
    try:
        net = nets_factory.build_network(f.model_name, num_classes, f.width_multiplier)
    except (ValueError, KeyError) as e:
        raise TrainError('--model_name=%s: %s' % (f.model_name, e))
    is_chief = config.is_chief
    with tf.Graph().as_default():
        with tf.device(config.variables_device()):
            global_step = tf.train.get_or_create_global_step()
        handles = build_training_graph(f, net, spec, config, global_step)
        with tf.control_dependencies([handles['train_tensor']]):
            step_after = tf.identity(global_step.read_value())  # the step this run completed
        init_fn = train_tools.get_init_fn(
            f.pre_trained_path, f.train_model_dir, num_classes, model_scope=NETWORK_SCOPE,
            checkpoint_model_scope=f.checkpoint_model_scope,
            checkpoint_exclude_scopes=f.checkpoint_exclude_scopes,
            ignore_missing_vars=f.ignore_missing_vars) if is_chief else None
        if is_chief:
            # Written once the checkpoints are known to fit the run (a refused run leaves it).
            model_info.write_model_info(
                f.train_model_dir, model_name=f.model_name, num_classes=num_classes,
                class_names=class_names(spec, num_classes), width_multiplier=f.width_multiplier,
                dataset_name=f.dataset_name, img_shape=list(net.params.img_shape))
            train_tools.print_configuration(f.flag_values_dict(), net.params, spec.data_sources,
                                            f.train_model_dir)
        saver = tf.train.Saver(max_to_keep=f.max_to_keep,
                               keep_checkpoint_every_n_hours=f.keep_checkpoint_every_n_hours,
                               sharded=config.num_ps_tasks > 0)
        scaffold = tf.train.Scaffold(
            saver=saver, init_fn=(lambda _, sess: init_fn(sess)) if init_fn else None,
            local_init_op=tf.group(tf.local_variables_initializer(), tf.tables_initializer(),
                                   handles['iterator'].initializer))
        signal_hook = train_tools.SignalStopHook()
        hooks = build_hooks(f, handles, global_step, step_after, is_chief, scaffold, signal_hook)
        signal_hook.install()
        try:
            final_step = run_session(f, server, is_chief, scaffold, hooks, step_after)
        finally:
            signal_hook.uninstall()
    print('training stopped at global step %s%s' % (
        final_step, ' (%s)' % signal_hook.stopped_by if signal_hook.stopped_by else ''), flush=True)
    return final_step


def main(_):
    try:
        train(FLAGS)
    except ToolkitError as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(tf.app.run(main))
