"""Trains SSD-VGG300 on TFRecords: clones, parameter servers, checkpoints and TensorBoard.

    python train_ssd_network.py --train_model_dir=ckpt/fine_tuning --dataset_dir=Images/tfrecords \\
        --dataset_name=vehicle --train_or_test=train --batch_size=32 --max_number_of_steps=10000

Resumes from the newest checkpoint in --train_model_dir, else fine-tunes from --pre_trained_path,
else starts from scratch. Writes model.ckpt-<step>, TensorBoard events, model_info.json and
training_config.txt into --train_model_dir. SIGINT/SIGTERM save a final checkpoint.

On a cluster, each process is given its role by the distributed flags (--job_name, --task,
--ps_hosts, --worker_hosts, ...) or, without them, by a TF_CONFIG environment variable (Kubeflow's
TFJob, Vertex AI, SageMaker): chief, worker, ps, or evaluator, which scores the chief's new
checkpoints on --eval_split (see training/cluster.py).

Exit status: 0 when the run ends (last step or signal), 1 when the data, a checkpoint or the
cluster cannot be used, 2 for bad flags.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from utils import cpu_features  # noqa: E402  (imports no TensorFlow)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

PRECISION = cpu_features.AUTO  # the default of --precision

tf_logging.start_tool(__name__, PRECISION)  # as a script: no TensorFlow C++ log lines

from training import graph  # noqa: E402
from training import train_tools  # noqa: E402
from training import trainer  # noqa: E402
from utils import cli  # noqa: E402
from utils import ssd_defaults  # noqa: E402


def output_flags(flag_set):
    flag_set.group('Output and checkpoints')
    flag_set.string('train_model_dir', None, 'Directory for checkpoints, events and '
                    'model_info.json.')
    flag_set.integer('save_interval_secs', 600, 'Seconds between checkpoints.')
    flag_set.integer('save_summaries_secs', 60, 'Seconds between TensorBoard summaries.')
    flag_set.integer('max_to_keep', 5, 'Most recent checkpoints to keep.')
    flag_set.float('keep_checkpoint_every_n_hours', 1.0,
                   'Also keep one checkpoint per this many hours of training.')
    flag_set.integer('log_every_n_steps', 10, 'Steps between log lines.')


def data_flags(flag_set):
    flag_set.group('Data')
    flag_set.string('dataset_dir', None, 'Folder of TFRecord shards and '
                    'dataset_description.json.')
    flag_set.string('dataset_name', 'vehicle', 'Dataset: pascalvoc_2007, vehicle or a custom '
                    'name.')
    flag_set.string('train_or_test', 'train', 'Split to train on (e.g. train, trainval).')
    flag_set.integer('batch_size', 32, 'Images per step per worker (split over the clones).')
    flag_set.integer('num_preprocessing_threads', 4, 'Parallel calls of the pre-processing map.')
    flag_set.integer('seed', None,
                     'Fixes the initial weights, the augmentation and the shuffling, so two runs '
                     'with the same seed and flags train the same weights (None: random). Ops '
                     'run deterministically: the augmentation map runs in order, one image at '
                     'a time.')
    flag_set.boolean('skip_corrupt_records', False,
                     'Read every record once before training and train past the corrupt ones '
                     '(logged with their shards) instead of stopping at the first.')
    flag_set.boolean('zoom_out', True, 'Augmentation: random zoom-out (objects shrink on a '
                     'mean-coloured canvas); off speeds learning when objects are large.')
    flag_set.boolean('photometric_distortion', True,
                     'Augmentation: random brightness/contrast/saturation/hue.')


def network_flags(flag_set):
    flag_set.group('Network')
    flag_set.string('model_name', 'ssd_vgg_300', 'Network: ssd_vgg_300 (alias ssd_300_vgg).')
    flag_set.integer('num_classes', None, 'Classes incl. background (default: from the '
                     'dataset).')
    flag_set.float('width_multiplier', 1.0, 'Scales every layer width (1.0 = the paper '
                   'network).')
    flag_set.enum('data_format', 'NHWC', ('NHWC', 'NCHW'), 'NHWC (CPU) or NCHW (GPU only).')
    flag_set.float('weight_decay', 0.0005, 'L2 weight decay of the network layers.')
    flag_set.enum('weights_initializer', 'network', sorted(graph.WEIGHTS_INITIALIZERS),
                  'Initial conv weights of layers not restored from a checkpoint: network (its '
                  'own, Xavier) or he (variance scaling for ReLU: the deep layers of SSD300 '
                  'keep their signal, which training from scratch needs).')
    flag_set.float('head_init_stddev', 0.0,
                   'When > 0, the box heads start from a truncated normal of this std instead '
                   "of the network's initialiser. Fine-tuning from VGG-16 without fc6/fc7 wants "
                   "0.001: fresh conv7 over VGG's conv5 has features of rms ~4, on which Xavier "
                   'heads start with logits up to ~24 (confident errors the first steps undo).')
    flag_set.float('match_threshold', ssd_defaults.MATCH_THRESHOLD,
                   'IoU from which an anchor is a positive of a box (each box also keeps its best '
                   'anchor); the loss counts anchors below it as negatives.')
    flag_set.float('negative_ratio', 3.0, 'Hard negatives mined per positive.')
    flag_set.float('loss_alpha', 1.0, 'Weight of the localisation loss.')
    flag_set.float('label_smoothing', 0.0, 'Label smoothing of the classification loss.')
    flag_set.string('class_weights', '',
                    'Weights of the classes in the classification loss: "balanced" (inverse '
                    'to their object counts in the training split, averaging 1 over the '
                    'objects), or name=weight pairs such as "Truck=3,Bus=2" (others 1; '
                    'default: all 1). The background keeps 1.')


def initialisation_flags(flag_set):
    flag_set.group('Initialisation (fine-tuning)')
    flag_set.string('pre_trained_path', None, 'Checkpoint (prefix or folder) to fine-tune from '
                    'when --train_model_dir has none.')
    flag_set.string('checkpoint_exclude_scopes', None,
                    'Comma-separated variable scopes not restored from --pre_trained_path (a '
                    'scope covers the variables below it: a/b holds a/b/w, not a/b2/w).')
    flag_set.string('checkpoint_model_scope', None,
                    'Model scope inside --pre_trained_path when it differs (e.g. vgg_16).')
    flag_set.string('trainable_scopes', None,
                    'Comma-separated scopes to train (default: every trainable variable), '
                    'matched like --checkpoint_exclude_scopes.')
    flag_set.boolean('ignore_missing_vars', False,
                     'Skip model variables missing from --pre_trained_path instead of failing.')


def optimisation_flags(flag_set):
    flag_set.group('Optimisation')
    flag_set.enum('optimizer', 'rmsprop', train_tools.OPTIMIZERS, 'The optimizer.')
    flag_set.float('learning_rate', 0.01, 'Initial learning rate.')
    flag_set.enum('learning_rate_decay_type', 'exponential', train_tools.LEARNING_RATE_DECAY_TYPES,
                  'Schedule of the learning rate.')
    flag_set.float('end_learning_rate', 0.0001, 'Final rate of the polynomial decay.')
    flag_set.float('learning_rate_decay_factor', 0.94, 'Exponential decay factor.')
    flag_set.integer('warmup_steps', 0, 'Steps of linear learning-rate warm-up from 0 '
                     "(fine-tuning from VGG-16: the fresh layers' first updates are large).")
    flag_set.float('num_epochs_per_decay', 2.0,
                   'Epochs per exponential decay period / until the polynomial end rate; 0 with '
                   'the polynomial decay: it ends at --max_number_of_steps.')
    flag_set.integer('max_number_of_steps', None, 'Stop at this global step (None: never).')
    flag_set.float('momentum', 0.9, 'Momentum of the momentum optimizer.')
    flag_set.float('rmsprop_decay', 0.9, 'Decay of RMSProp.')
    flag_set.float('rmsprop_momentum', 0.9, 'Momentum of RMSProp.')
    flag_set.float('opt_epsilon', None,
                   'Epsilon of adam, adadelta and rmsprop (default: 1.0 for rmsprop as in '
                   'SSD-Tensorflow, 1e-8 for adam and adadelta).')
    flag_set.float('adam_beta1', 0.9, 'Adam beta1.')
    flag_set.float('adam_beta2', 0.999, 'Adam beta2.')
    flag_set.float('adadelta_rho', 0.95, 'Adadelta decay.')
    flag_set.float('adagrad_initial_accumulator_value', 0.1, 'Adagrad accumulator start.')
    flag_set.float('ftrl_learning_rate_power', -0.5, 'FTRL learning-rate power.')
    flag_set.float('ftrl_initial_accumulator_value', 0.1, 'FTRL accumulator start.')
    flag_set.float('ftrl_l1', 0.0, 'FTRL L1 strength.')
    flag_set.float('ftrl_l2', 0.0, 'FTRL L2 strength.')


def device_flags(flag_set):
    flag_set.group('Devices and session')
    flag_set.integer('num_clones', 1, 'Model clones per worker, each on a GPU (or the CPU).')
    flag_set.boolean('clone_on_cpu', False, 'Put every clone on the CPU.')
    flag_set.float('gpu_memory_fraction', 0.9, 'Fraction of GPU memory the process may take.')
    flag_set.boolean('allow_growth', False, 'Grow GPU memory on demand instead of reserving it.')
    flag_set.boolean('log_device_placement', False, 'Log the device of every op.')
    flag_set.precision(PRECISION, float32_when=(trainer.is_distributed, 'distributed training: '
                                                + trainer.NO_DISTRIBUTED_BFLOAT16))


def evaluation_flags(flag_set):
    flag_set.group('Evaluation during training')
    flag_set.integer('eval_every_n_steps', 0,
                     'Every N global steps (and at --max_number_of_steps), save a checkpoint and '
                     'score it on --eval_split in this process: TensorBoard summaries in '
                     '<train_model_dir>/eval_<split>/, the best checkpoint by mAP@0.5 in '
                     '<train_model_dir>/best/ (0: no evaluation).')
    flag_set.string('eval_split', 'val', 'Split scored by --eval_every_n_steps.')
    flag_set.string('eval_dataset_dir', None,
                    'Folder of the --eval_split records (default: --dataset_dir).')
    flag_set.integer('eval_max_images', None,
                     'Score only the first N images of --eval_split (default: all).')
    flag_set.integer('eval_interval_secs', 60,
                     'TF_CONFIG evaluator task: seconds between looks for a new checkpoint.')
    flag_set.integer('eval_timeout_secs', 3600,
                     'TF_CONFIG evaluator task: stop after this many seconds without a new '
                     'checkpoint (the run also ends it at its max_number_of_steps).')


def distribution_flags(flag_set):
    flag_set.group('Distributed training (parameter servers and workers; or none of these '
                   'flags and a TF_CONFIG variable: chief, worker, ps or evaluator)')
    flag_set.integer('num_replicas', 1, 'Worker processes (1 = not distributed).')
    flag_set.integer('num_ps_tasks', 0, 'Parameter-server tasks holding the variables.')
    flag_set.integer('task', 0, 'Index of this process within its job (worker 0 is the chief).')
    flag_set.enum('job_name', 'worker', ('ps', 'worker'), 'Role of this process: ps or worker.')
    flag_set.string('ps_hosts', '', 'Comma-separated host:port of the parameter servers.')
    flag_set.string('worker_hosts', '', 'Comma-separated host:port of the workers.')
    flag_set.float('cluster_timeout_secs', 300,
                   'Longest wait of a worker for one exchange with the cluster (TensorFlow\'s '
                   'operation timeout); a task lost stops the workers with one line naming it.')


# The themes of --help, in order; each defines its flags on a cli.FlagSet.
FLAG_THEMES = (output_flags, data_flags, network_flags, initialisation_flags, optimisation_flags,
               device_flags, evaluation_flags, distribution_flags)


def define_flags():
    """The trainer's own flags (a ``cli.FlagSet``), theme by theme; the training benchmark adds
    its own to the same set."""
    flag_set = cli.FlagSet()
    for define_theme in FLAG_THEMES:
        define_theme(flag_set)
    return flag_set


def _train(options):
    trainer.train(options)
    return 0


main = cli.make_main(__doc__, define_flags, _train)


if __name__ == '__main__':
    sys.exit(main())
