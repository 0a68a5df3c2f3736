"""The training run: checks the flags, reads the dataset, builds the network and its training
graph, initialises it (resume, fine-tune or scratch), writes model_info.json and runs the
session. ``train(options)`` takes the parsed flags of train_ssd_network.py (any object with their
attributes and ``flag_values_dict()``)."""
import os

import tensorflow.compat.v1 as tf

from datasets import record_check
from model import model_info
from nets.nets_model import ssd_vgg_300
from training import class_weights
from training import cluster
from training import graph
from training import evaluation
from training import evaluator_task
from training import hooks
from training import run_folder
from training import session
from training import train_tools
from training.train_tools import TrainConfigError
from utils import cli
from utils import files

# Seen with TensorFlow 2.21: oneDNN's bfloat16 rewrite leaves a bfloat16 _FusedConv2D, which only
# the local runtime turns into a oneDNN kernel.
NO_DISTRIBUTED_BFLOAT16 = ("TensorFlow's distributed runtime has no kernel for the bfloat16 "
                           'convolutions of oneDNN\'s rewrite')


def is_distributed(options):
    """Whether the run goes through TensorFlow's distributed runtime (workers, parameter
    servers), from the flags or a TF_CONFIG."""
    cluster.resolve(options)
    return options.num_replicas > 1 or options.num_ps_tasks > 0


def check_flags(options):
    """``cli.UsageError`` (one line naming the flag) for flag values that cannot work, before
    anything is built. Choices (--optimizer, --precision, ...) are checked by the flag parser."""
    if not options.train_model_dir:
        raise cli.UsageError('--train_model_dir is required')
    if not options.dataset_dir:
        raise cli.UsageError('--dataset_dir is required')
    if not os.path.isdir(options.dataset_dir):
        raise cli.UsageError('--dataset_dir=%s is not a directory' % options.dataset_dir)
    if options.batch_size < 1 or options.batch_size % options.num_clones:
        raise cli.UsageError('--batch_size=%d must be a positive multiple of --num_clones=%d'
                             % (options.batch_size, options.num_clones))
    if options.num_classes is not None and options.num_classes < 2:
        raise cli.UsageError('--num_classes=%d must be >= 2 (background included)'
                             % options.num_classes)
    if options.width_multiplier <= 0:
        raise cli.UsageError('--width_multiplier=%g must be > 0' % options.width_multiplier)
    if options.head_init_stddev < 0:
        raise cli.UsageError('--head_init_stddev=%g must be >= 0' % options.head_init_stddev)
    if options.precision == 'bfloat16' and is_distributed(options):
        raise cli.UsageError('--precision=bfloat16 cannot train distributed (--num_replicas, '
                             '--num_ps_tasks): %s; give --precision=float32'
                             % NO_DISTRIBUTED_BFLOAT16)
    if not 0 < options.match_threshold <= 1:
        raise cli.UsageError('--match_threshold=%g must be in (0, 1]' % options.match_threshold)
    if options.num_epochs_per_decay < 0 or (options.num_epochs_per_decay == 0 and not (
            options.learning_rate_decay_type == 'polynomial' and options.max_number_of_steps)):
        raise cli.UsageError('--num_epochs_per_decay=%g must be > 0 (or 0 with '
                             '--learning_rate_decay_type=polynomial and --max_number_of_steps)'
                             % options.num_epochs_per_decay)
    if options.max_number_of_steps is not None and options.max_number_of_steps < 1:
        raise cli.UsageError('--max_number_of_steps=%d must be >= 1'
                             % options.max_number_of_steps)
    evaluation.check_flags(options)


def load_dataset(options):
    """DatasetSpec of the training split; num_classes from it unless --num_classes is given."""
    from datasets import dataset_factory
    try:
        spec = dataset_factory.get_dataset(options.dataset_name, options.train_or_test,
                                           options.dataset_dir)
    except (ValueError, IOError, KeyError) as e:
        raise TrainConfigError('--dataset_dir=%s --dataset_name=%s --train_or_test=%s: %s' % (
            options.dataset_dir, options.dataset_name, options.train_or_test, e))
    if not spec.data_sources or not spec.num_samples:
        raise TrainConfigError('--train_or_test=%s: no samples in %s'
                               % (options.train_or_test, options.dataset_dir))
    if options.num_classes is not None and options.num_classes < spec.num_classes:
        raise TrainConfigError('--num_classes=%d is smaller than the %d classes (background '
                               'included) of dataset %s: drop the flag to use the dataset\'s '
                               'count' % (options.num_classes, spec.num_classes,
                                          options.dataset_name))
    if options.num_classes is not None and options.num_classes > spec.num_classes:
        print('warning: --num_classes=%d exceeds the dataset\'s %d (background included)'
              % (options.num_classes, spec.num_classes), flush=True)
    return spec


def class_names(spec, num_classes):
    """The dataset's class names fitted to ``num_classes`` (ids past the dataset get 'class_<id>')."""
    names = list(spec.class_names)[:num_classes - 1]
    return names + ['class_%d' % i for i in range(len(names) + 1, num_classes)]


def train(options):
    """Builds and runs the training; returns the final global step (a ps task never returns;
    a TF_CONFIG evaluator task scores the chief's checkpoints instead and returns the last step
    it scored)."""
    if cluster.resolve(options).role == 'evaluator':
        return evaluator_task.run(options)
    config, server = cluster.setup_cluster(options)
    check_flags(options)
    spec = load_dataset(options)
    if options.skip_corrupt_records:
        spec, _ = record_check.skip_corrupt(spec)
    num_classes = options.num_classes or spec.num_classes
    loss_class_weights, weights_line = class_weights.resolve(options.class_weights, spec,
                                                             num_classes)
    if weights_line:
        print(weights_line, flush=True)
    from nets import nets_factory
    try:
        net = nets_factory.build_network(options.model_name, num_classes,
                                         options.width_multiplier)
    except (ValueError, KeyError) as e:
        raise TrainConfigError('--model_name=%s: %s' % (options.model_name, e))
    is_chief = config.is_chief
    if is_chief:
        files.check_writable_dir(options.train_model_dir, '--train_model_dir')
    resume_from = run_folder.resume_checkpoint(options.train_model_dir) if is_chief else None
    names = class_names(spec, num_classes)
    if options.seed is not None:
        graph.make_deterministic()
    with tf.Graph().as_default():
        with tf.device(config.variables_device()):
            global_step = tf.train.get_or_create_global_step()
        handles = graph.build_training_graph(options, net, spec, config, global_step,
                                             loss_class_weights)
        with tf.control_dependencies([handles['train_tensor']]):
            step_after = tf.identity(global_step.read_value())  # the step this run completed
        init_fn = train_tools.get_init_fn(
            options.pre_trained_path, resume_from, num_classes,
            model_scope=ssd_vgg_300.SCOPE,
            checkpoint_model_scope=options.checkpoint_model_scope,
            checkpoint_exclude_scopes=options.checkpoint_exclude_scopes,
            ignore_missing_vars=options.ignore_missing_vars) if is_chief else None
        # Relative paths in the state file: a copy of the folder is a run of its own.
        saver = tf.train.Saver(max_to_keep=options.max_to_keep,
                               keep_checkpoint_every_n_hours=options.keep_checkpoint_every_n_hours,
                               sharded=config.num_ps_tasks > 0, save_relative_paths=True)
        scaffold = tf.train.Scaffold(
            saver=saver, init_fn=(lambda _, sess: init_fn(sess)) if init_fn else None,
            local_init_op=tf.group(tf.local_variables_initializer(), tf.tables_initializer(),
                                   handles['iterator'].initializer))
        signal_hook = hooks.SignalStopHook()
        session_hooks = hooks.build_hooks(options, handles, global_step, step_after, is_chief,
                                          scaffold, signal_hook, names)
        if is_chief:
            # Written only now that every check passed: a refused run leaves the folder as it
            # was (a follow-mode evaluator reads max_number_of_steps from model_info.json).
            run_folder.adopt_checkpoints(options.train_model_dir)
            files.read_json_if_intact(os.path.join(options.train_model_dir,
                                                   model_info.MODEL_INFO_FILENAME),
                                      print, 'rewritten')
            model_info.write_model_info(
                options.train_model_dir, model_name=options.model_name, num_classes=num_classes,
                class_names=names, width_multiplier=options.width_multiplier,
                dataset_name=options.dataset_name, img_shape=list(net.params.img_shape),
                max_number_of_steps=options.max_number_of_steps)
            train_tools.print_configuration(options.flag_values_dict(), net.params,
                                            spec.data_sources, options.train_model_dir)
        signal_hook.install()
        try:
            final_step = session.run_session(options, server, is_chief, scaffold, session_hooks,
                                             step_after, spec.data_sources)
        finally:
            signal_hook.uninstall()
    print('training stopped at global step %s%s' % (
        final_step, ' (%s)' % signal_hook.stopped_by if signal_hook.stopped_by else ''), flush=True)
    return final_step
