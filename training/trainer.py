"""The training run: checks the flags, reads the dataset, builds the network and its training
graph, initialises it (resume, fine-tune or scratch), writes model_info.json and runs the
session. ``train(f)`` takes the parsed flags of train_ssd_network.py (any object with their
attributes and ``flag_values_dict()``)."""
import os

import tensorflow.compat.v1 as tf

from model import inference
from model import model_info
from nets.nets_model import ssd_vgg_300
from training import graph
from training import evaluation
from training import hooks
from training import session
from training import train_tools
from training.train_tools import TrainConfigError

PRECISIONS = inference.PRECISIONS   # one list for every tool


def check_flags(f):
    """One-line errors for flags that cannot work, before anything is built."""
    if not f.train_model_dir:
        raise TrainConfigError('--train_model_dir is required')
    if not f.dataset_dir:
        raise TrainConfigError('--dataset_dir is required')
    if not os.path.isdir(f.dataset_dir):
        raise TrainConfigError('--dataset_dir=%s is not a directory' % f.dataset_dir)
    if f.batch_size < 1 or f.batch_size % f.num_clones:
        raise TrainConfigError('--batch_size=%d must be a positive multiple of --num_clones=%d'
                               % (f.batch_size, f.num_clones))
    if f.num_classes is not None and f.num_classes < 2:
        raise TrainConfigError('--num_classes=%d must be >= 2 (background included)'
                               % f.num_classes)
    if f.width_multiplier <= 0:
        raise TrainConfigError('--width_multiplier=%g must be > 0' % f.width_multiplier)
    if f.weights_initializer not in graph.WEIGHTS_INITIALIZERS:
        raise TrainConfigError('--weights_initializer=%s must be one of %s'
                               % (f.weights_initializer,
                                  ', '.join(sorted(graph.WEIGHTS_INITIALIZERS))))
    if f.data_format not in ('NHWC', 'NCHW'):
        raise TrainConfigError('--data_format=%s must be NHWC or NCHW' % f.data_format)
    if f.head_init_stddev < 0:
        raise TrainConfigError('--head_init_stddev=%g must be >= 0' % f.head_init_stddev)
    if f.precision not in PRECISIONS:
        raise TrainConfigError('--precision=%s must be one of %s'
                               % (f.precision, ', '.join(PRECISIONS)))
    if f.num_epochs_per_decay < 0 or (f.num_epochs_per_decay == 0 and not (
            f.learning_rate_decay_type == 'polynomial' and f.max_number_of_steps)):
        raise TrainConfigError('--num_epochs_per_decay=%g must be > 0 (or 0 with '
                               '--learning_rate_decay_type=polynomial and --max_number_of_steps)'
                         % f.num_epochs_per_decay)
    if f.max_number_of_steps is not None and f.max_number_of_steps < 1:
        raise TrainConfigError('--max_number_of_steps=%d must be >= 1' % f.max_number_of_steps)
    evaluation.check_flags(f)


def load_dataset(f):
    """DatasetSpec of the training split; num_classes from it unless --num_classes is given."""
    from datasets import dataset_factory
    try:
        spec = dataset_factory.get_dataset(f.dataset_name, f.train_or_test, f.dataset_dir)
    except (ValueError, IOError, KeyError) as e:
        raise TrainConfigError('--dataset_dir=%s --dataset_name=%s --train_or_test=%s: %s'
                               % (f.dataset_dir, f.dataset_name, f.train_or_test, e))
    if not spec.data_sources or not spec.num_samples:
        raise TrainConfigError('--train_or_test=%s: no samples in %s'
                               % (f.train_or_test, f.dataset_dir))
    if f.num_classes is not None and f.num_classes < spec.num_classes:
        raise TrainConfigError('--num_classes=%d is smaller than the %d classes (background included) '
                               'of dataset %s: drop the flag to use the dataset\'s count'
                         % (f.num_classes, spec.num_classes, f.dataset_name))
    if f.num_classes is not None and f.num_classes > spec.num_classes:
        print('warning: --num_classes=%d exceeds the dataset\'s %d (background included)'
              % (f.num_classes, spec.num_classes), flush=True)
    return spec


def class_names(spec, num_classes):
    """The dataset's class names fitted to ``num_classes`` (ids past the dataset get 'class_<id>')."""
    names = list(spec.class_names)[:num_classes - 1]
    return names + ['class_%d' % i for i in range(len(names) + 1, num_classes)]


def train(f):
    """Builds and runs the training; returns the final global step (a ps task never returns)."""
    config, server = session.setup_cluster(f)
    check_flags(f)
    spec = load_dataset(f)
    num_classes = f.num_classes or spec.num_classes
    from nets import nets_factory
    try:
        net = nets_factory.build_network(f.model_name, num_classes, f.width_multiplier)
    except (ValueError, KeyError) as e:
        raise TrainConfigError('--model_name=%s: %s' % (f.model_name, e))
    is_chief = config.is_chief
    with tf.Graph().as_default():
        with tf.device(config.variables_device()):
            global_step = tf.train.get_or_create_global_step()
        handles = graph.build_training_graph(f, net, spec, config, global_step)
        with tf.control_dependencies([handles['train_tensor']]):
            step_after = tf.identity(global_step.read_value())  # the step this run completed
        init_fn = train_tools.get_init_fn(
            f.pre_trained_path, f.train_model_dir, num_classes, model_scope=ssd_vgg_300.SCOPE,
            checkpoint_model_scope=f.checkpoint_model_scope,
            checkpoint_exclude_scopes=f.checkpoint_exclude_scopes,
            ignore_missing_vars=f.ignore_missing_vars) if is_chief else None
        if is_chief:
            # Written once the checkpoints are known to fit the run (a refused run leaves it).
            model_info.write_model_info(
                f.train_model_dir, model_name=f.model_name, num_classes=num_classes,
                class_names=class_names(spec, num_classes), width_multiplier=f.width_multiplier,
                dataset_name=f.dataset_name, img_shape=list(net.params.img_shape),
                max_number_of_steps=f.max_number_of_steps)
            train_tools.print_configuration(f.flag_values_dict(), net.params, spec.data_sources,
                                            f.train_model_dir)
        saver = tf.train.Saver(max_to_keep=f.max_to_keep,
                               keep_checkpoint_every_n_hours=f.keep_checkpoint_every_n_hours,
                               sharded=config.num_ps_tasks > 0)
        scaffold = tf.train.Scaffold(
            saver=saver, init_fn=(lambda _, sess: init_fn(sess)) if init_fn else None,
            local_init_op=tf.group(tf.local_variables_initializer(), tf.tables_initializer(),
                                   handles['iterator'].initializer))
        signal_hook = hooks.SignalStopHook()
        session_hooks = hooks.build_hooks(f, handles, global_step, step_after, is_chief, scaffold,
                                          signal_hook)
        signal_hook.install()
        try:
            final_step = session.run_session(f, server, is_chief, scaffold, session_hooks,
                                             step_after)
        finally:
            signal_hook.uninstall()
    print('training stopped at global step %s%s' % (
        final_step, ' (%s)' % signal_hook.stopped_by if signal_hook.stopped_by else ''), flush=True)
    return final_step
