"""Trains SSD-VGG300 on TFRecords: clones, parameter servers, checkpoints and TensorBoard.

    python train_ssd_network.py --train_model_dir=ckpt/fine_tuning --dataset_dir=Images/tfrecords \\
        --dataset_name=vehicle --train_or_test=train --batch_size=32 --max_number_of_steps=10000

Resumes from the newest checkpoint in --train_model_dir, else fine-tunes from --pre_trained_path,
else starts from scratch. Writes model.ckpt-<step>, TensorBoard events, model_info.json and
training_config.txt into --train_model_dir. SIGINT/SIGTERM save a final checkpoint.
"""
import sys

from absl import flags

from training import train_tools
from utils import cli
from utils.errors import ToolkitError


def define_flags(flag_values):
    """Defines the trainer's flags in ``flag_values`` (an absl ``FlagValues``) and returns it.

    Nothing is defined on import: the script and the training benchmark call this on their own
    flag set, so ``--help`` lists these flags only, grouped as ``FLAG_GROUPS``.
    """
    define = dict(flag_values=flag_values)
    # Output and checkpoints
    flags.DEFINE_string('train_model_dir', None,
                        'Directory for checkpoints, events and model_info.json.', **define)
    flags.DEFINE_integer('save_interval_secs', 600, 'Seconds between checkpoints.', **define)
    flags.DEFINE_integer('save_summaries_secs', 60,
                         'Seconds between TensorBoard summaries.', **define)
    flags.DEFINE_integer('max_to_keep', 5, 'Most recent checkpoints to keep.', **define)
    flags.DEFINE_float('keep_checkpoint_every_n_hours', 1.0,
                       'Also keep one checkpoint per this many hours of training.', **define)
    flags.DEFINE_integer('log_every_n_steps', 10, 'Steps between log lines.', **define)
    # Data
    flags.DEFINE_string('dataset_dir', None,
                        'Folder of TFRecord shards and dataset_description.json.', **define)
    flags.DEFINE_string('dataset_name', 'vehicle',
                        'Dataset: pascalvoc_2007, vehicle or a custom name.', **define)
    flags.DEFINE_string('train_or_test', 'train',
                        'Split to train on (e.g. train, trainval).', **define)
    flags.DEFINE_integer('batch_size', 32,
                         'Images per step per worker (split over the clones).', **define)
    flags.DEFINE_integer('num_preprocessing_threads', 4,
                         'Parallel calls of the pre-processing map.', **define)
    flags.DEFINE_integer('shuffle_seed', None,
                         'Seed of the input shuffling (None: random).', **define)
    flags.DEFINE_boolean('zoom_out', True,
                         'Augmentation: random zoom-out (objects shrink on a mean-coloured '
                         'canvas); off speeds learning when objects are large.', **define)
    flags.DEFINE_boolean('photometric_distortion', True,
                         'Augmentation: random brightness/contrast/saturation/hue.', **define)
    # Network
    flags.DEFINE_string('model_name', 'ssd_vgg_300',
                        'Network: ssd_vgg_300 (alias ssd_300_vgg).', **define)
    flags.DEFINE_integer('num_classes', None,
                         'Classes incl. background (default: from the dataset).', **define)
    flags.DEFINE_float('width_multiplier', 1.0,
                       'Scales every layer width (1.0 = the paper network).', **define)
    flags.DEFINE_string('data_format', 'NHWC', 'NHWC (CPU) or NCHW (GPU only).', **define)
    flags.DEFINE_float('weight_decay', 0.0005, 'L2 weight decay of the network layers.', **define)
    flags.DEFINE_string('weights_initializer', 'network',
                        'Initial conv weights of layers not restored from a checkpoint: network '
                        '(its own, Xavier) or he (variance scaling for ReLU: the deep layers of '
                        'SSD300 keep their signal, which training from scratch needs).', **define)
    flags.DEFINE_float('head_init_stddev', 0.0,
                       'When > 0, the box heads start from a truncated normal of this std instead'
                       " of the network's initialiser. Fine-tuning from VGG-16 without fc6/fc7 "
                       "wants 0.001: fresh conv7 over VGG's conv5 has features of rms ~4, on "
                       'which Xavier heads start with logits up to ~24 (confident errors the '
                       'first steps undo).', **define)
    flags.DEFINE_float('match_threshold', 0.5,
                       'IoU above which an anchor is a positive.', **define)
    flags.DEFINE_float('negative_ratio', 3.0, 'Hard negatives mined per positive.', **define)
    flags.DEFINE_float('loss_alpha', 1.0, 'Weight of the localisation loss.', **define)
    flags.DEFINE_float('label_smoothing', 0.0,
                       'Label smoothing of the classification loss.', **define)
    # Initialisation (fine-tuning)
    flags.DEFINE_string('pre_trained_path', None,
                        'Checkpoint (prefix or folder) to fine-tune from when --train_model_dir '
                        'has none.', **define)
    flags.DEFINE_string('checkpoint_exclude_scopes', None,
                        'Comma-separated variable scopes not restored from --pre_trained_path '
                        '(a scope covers the variables below it: a/b holds a/b/w, not a/b2/w).',
                        **define)
    flags.DEFINE_string('checkpoint_model_scope', None,
                        'Model scope inside --pre_trained_path when it differs (e.g. vgg_16).',
                        **define)
    flags.DEFINE_string('trainable_scopes', None,
                        'Comma-separated scopes to train (default: every trainable variable), '
                        'matched like --checkpoint_exclude_scopes.', **define)
    flags.DEFINE_boolean('ignore_missing_vars', False,
                         'Skip model variables missing from --pre_trained_path instead of '
                         'failing.', **define)
    # Optimisation
    flags.DEFINE_string('optimizer', 'rmsprop',
                        'One of %s.' % ', '.join(train_tools.OPTIMIZERS), **define)
    flags.DEFINE_float('learning_rate', 0.01, 'Initial learning rate.', **define)
    flags.DEFINE_string('learning_rate_decay_type', 'exponential',
                        'One of %s.' % ', '.join(train_tools.LEARNING_RATE_DECAY_TYPES), **define)
    flags.DEFINE_float('end_learning_rate', 0.0001,
                       'Final rate of the polynomial decay.', **define)
    flags.DEFINE_float('learning_rate_decay_factor', 0.94, 'Exponential decay factor.', **define)
    flags.DEFINE_integer('warmup_steps', 0,
                         'Steps of linear learning-rate warm-up from 0 (fine-tuning from VGG-16: '
                         "the fresh layers' first updates are large).", **define)
    flags.DEFINE_float('num_epochs_per_decay', 2.0,
                       'Epochs per exponential decay period / until the polynomial end rate; 0 '
                       'with the polynomial decay: it ends at --max_number_of_steps.', **define)
    flags.DEFINE_integer('max_number_of_steps', None,
                         'Stop at this global step (None: never).', **define)
    flags.DEFINE_float('momentum', 0.9, 'Momentum of the momentum optimizer.', **define)
    flags.DEFINE_float('rmsprop_decay', 0.9, 'Decay of RMSProp.', **define)
    flags.DEFINE_float('rmsprop_momentum', 0.9, 'Momentum of RMSProp.', **define)
    flags.DEFINE_float('opt_epsilon', None,
                       'Epsilon of adam, adadelta and rmsprop (default: 1.0 for rmsprop as in '
                       'SSD-Tensorflow, 1e-8 for adam and adadelta).', **define)
    flags.DEFINE_float('adam_beta1', 0.9, 'Adam beta1.', **define)
    flags.DEFINE_float('adam_beta2', 0.999, 'Adam beta2.', **define)
    flags.DEFINE_float('adadelta_rho', 0.95, 'Adadelta decay.', **define)
    flags.DEFINE_float('adagrad_initial_accumulator_value', 0.1,
                       'Adagrad accumulator start.', **define)
    flags.DEFINE_float('ftrl_learning_rate_power', -0.5, 'FTRL learning-rate power.', **define)
    flags.DEFINE_float('ftrl_initial_accumulator_value', 0.1, 'FTRL accumulator start.', **define)
    flags.DEFINE_float('ftrl_l1', 0.0, 'FTRL L1 strength.', **define)
    flags.DEFINE_float('ftrl_l2', 0.0, 'FTRL L2 strength.', **define)
    # Devices and session
    flags.DEFINE_integer('num_clones', 1,
                         'Model clones per worker, each on a GPU (or the CPU).', **define)
    flags.DEFINE_boolean('clone_on_cpu', False, 'Put every clone on the CPU.', **define)
    flags.DEFINE_float('gpu_memory_fraction', 0.9,
                       'Fraction of GPU memory the process may take.', **define)
    flags.DEFINE_boolean('allow_growth', False,
                         'Grow GPU memory on demand instead of reserving it.', **define)
    flags.DEFINE_boolean('log_device_placement', False, 'Log the device of every op.', **define)
    flags.DEFINE_string('precision', 'float32',
                        'float32, or bfloat16: mixed precision (oneDNN rewrites the convolutions '
                        'to bfloat16 on CPUs that support it; variables and checkpoints stay '
                        'float32).', **define)
    # Evaluation during training
    flags.DEFINE_integer('eval_every_n_steps', 0,
                         'Every N global steps (and at --max_number_of_steps), save a checkpoint '
                         'and score it on --eval_split in this process: TensorBoard summaries in '
                         '<train_model_dir>/eval_<split>/, the best checkpoint by mAP@0.5 in '
                         '<train_model_dir>/best/ (0: no evaluation).', **define)
    flags.DEFINE_string('eval_split', 'val', 'Split scored by --eval_every_n_steps.', **define)
    flags.DEFINE_string('eval_dataset_dir', None,
                        'Folder of the --eval_split records (default: --dataset_dir).', **define)
    flags.DEFINE_integer('eval_max_images', None,
                         'Score only the first N images of --eval_split (default: all).',
                         **define)
    # Distributed training (parameter servers and workers)
    flags.DEFINE_integer('num_replicas', 1, 'Worker processes (1 = not distributed).', **define)
    flags.DEFINE_integer('num_ps_tasks', 0,
                         'Parameter-server tasks holding the variables.', **define)
    flags.DEFINE_integer('task', 0,
                         'Index of this process within its job (worker 0 is the chief).', **define)
    flags.DEFINE_string('job_name', 'worker', 'Role of this process: ps or worker.', **define)
    flags.DEFINE_string('ps_hosts', '',
                        'Comma-separated host:port of the parameter servers.', **define)
    flags.DEFINE_string('worker_hosts', '', 'Comma-separated host:port of the workers.', **define)
    flags.DEFINE_boolean('help', False, 'Show this help.', short_name='h', **define)
    return flag_values


FLAG_GROUPS = (
    ('Output and checkpoints', (
        'train_model_dir', 'save_interval_secs', 'save_summaries_secs', 'max_to_keep',
        'keep_checkpoint_every_n_hours', 'log_every_n_steps')),
    ('Data', (
        'dataset_dir', 'dataset_name', 'train_or_test', 'batch_size', 'num_preprocessing_threads',
        'shuffle_seed', 'zoom_out', 'photometric_distortion')),
    ('Network', (
        'model_name', 'num_classes', 'width_multiplier', 'data_format', 'weight_decay',
        'weights_initializer', 'head_init_stddev', 'match_threshold', 'negative_ratio',
        'loss_alpha', 'label_smoothing')),
    ('Initialisation (fine-tuning)', (
        'pre_trained_path', 'checkpoint_exclude_scopes', 'checkpoint_model_scope',
        'trainable_scopes', 'ignore_missing_vars')),
    ('Optimisation', (
        'optimizer', 'learning_rate', 'learning_rate_decay_type', 'end_learning_rate',
        'learning_rate_decay_factor', 'warmup_steps', 'num_epochs_per_decay',
        'max_number_of_steps', 'momentum', 'rmsprop_decay', 'rmsprop_momentum', 'opt_epsilon',
        'adam_beta1', 'adam_beta2', 'adadelta_rho', 'adagrad_initial_accumulator_value',
        'ftrl_learning_rate_power', 'ftrl_initial_accumulator_value', 'ftrl_l1', 'ftrl_l2')),
    ('Devices and session', (
        'num_clones', 'clone_on_cpu', 'gpu_memory_fraction', 'allow_growth',
        'log_device_placement', 'precision')),
    ('Evaluation during training', (
        'eval_every_n_steps', 'eval_split', 'eval_dataset_dir', 'eval_max_images')),
    ('Distributed training (parameter servers and workers)', (
        'num_replicas', 'num_ps_tasks', 'task', 'job_name', 'ps_hosts', 'worker_hosts')),
)


def main(flag_values):
    """Trains with the parsed ``flag_values``; returns the exit status (1 with one line
    ``error: ...`` on stderr for a problem the user can fix)."""
    from training import trainer
    try:
        trainer.train(flag_values)
    except ToolkitError as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    return 0


def run(argv):
    """The command line: ``run(['train_ssd_network.py', '--train_model_dir=...', ...])`` → exit
    status (2 for an unknown or malformed flag)."""
    flag_values = define_flags(flags.FlagValues())
    return cli.run_cli(argv, flag_values, FLAG_GROUPS, __doc__, lambda: main(flag_values))


if __name__ == '__main__':
    sys.exit(run(sys.argv))
