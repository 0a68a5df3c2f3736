"""train_ssd_network.py end to end on the generated sample TFRecords (tiny width, small batches):
clones, logging, TensorBoard, model_info.json, class-count refusal, kill -9 resume, SIGTERM."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from absl import flags as absl_flags

import train_ssd_network
from datasets import dataset_config
from test.conftest import REPO_ROOT
from training import graph, train_tools, trainer
from utils import cli

SCRIPT = os.path.join(REPO_ROOT, 'train_ssd_network.py')
LEARNING_STEPS = 20
STEP_LINE = re.compile(r'^step (\d+): loss ([0-9.]+) \((.*)\) lr ([0-9.e-]+) \| '
                       r'([0-9.]+) s/step, ([0-9.]+) images/s$', re.M)


def _command(train_dir, dataset_dir, *extra):
    return [sys.executable, SCRIPT, '--train_model_dir=%s' % train_dir,
            '--dataset_dir=%s' % dataset_dir, '--dataset_name=vehicle', '--train_or_test=train',
            '--width_multiplier=0.125', '--batch_size=2', '--clone_on_cpu',
            '--optimizer=adam', '--learning_rate=0.002', '--learning_rate_decay_type=fixed',
            '--log_every_n_steps=1', '--save_summaries_secs=1', '--seed=3',
            '--num_preprocessing_threads=2'] + list(extra)


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
    env['PYTHONPATH'] = REPO_ROOT
    return env


def _run(command, timeout=900):
    result = subprocess.run(command, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def _latest_step(train_dir):
    prefix = tf.train.latest_checkpoint(train_dir)
    return int(prefix.rsplit('-', 1)[1]) if prefix else None


def _logged_steps(stdout):
    return [(int(m.group(1)), float(m.group(2))) for m in STEP_LINE.finditer(stdout)]


@pytest.fixture(scope='module')
def two_clone_run(sample_tfrecords, tmp_path_factory):
    """LEARNING_STEPS steps with two CPU clones of batch 2 each."""
    train_dir = str(tmp_path_factory.mktemp('two_clones'))
    rc, out, err = _run(_command(train_dir, sample_tfrecords, '--num_clones=2', '--batch_size=4',
                                 '--max_number_of_steps=%d' % LEARNING_STEPS))
    assert rc == 0, err[-3000:]
    return train_dir, out, sample_tfrecords


def test_run_writes_checkpoints_model_info_and_logs(two_clone_run):
    train_dir, out, _ = two_clone_run
    assert _latest_step(train_dir) == LEARNING_STEPS
    with open(os.path.join(train_dir, 'model_info.json')) as f:
        info = json.load(f)
    assert info == {'model_name': 'ssd_vgg_300', 'num_classes': 6, 'dataset_name': 'vehicle',
                    'class_names': ['Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck'],
                    'width_multiplier': 0.125, 'img_shape': [300, 300],
                    'max_number_of_steps': LEARNING_STEPS}
    assert os.path.isfile(os.path.join(train_dir, 'training_config.txt'))
    logged = STEP_LINE.findall(out)
    assert [int(m[0]) for m in logged] == list(range(1, LEARNING_STEPS + 1))
    parts = logged[0][2]
    for name in ('cross_entropy_pos', 'cross_entropy_neg', 'localization', 'regularization'):
        assert name in parts
    assert float(logged[0][3]) == pytest.approx(0.002)
    assert 'training stopped at global step %d' % LEARNING_STEPS in out


def test_loss_falls_by_a_third_in_the_first_steps(two_clone_run):
    losses = [loss for _, loss in _logged_steps(two_clone_run[1])]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last <= first * 2 / 3, losses


def test_tensorboard_holds_losses_learning_rate_and_boxed_images(two_clone_run):
    train_dir = two_clone_run[0]
    tags = set()
    for name in os.listdir(train_dir):
        if name.startswith('events.out.tfevents'):
            for event in tf.train.summary_iterator(os.path.join(train_dir, name)):
                tags.update(v.tag for v in event.summary.value)
    for tag in ('losses/total_loss', 'losses/cross_entropy_pos', 'losses/localization',
                'learning_rate'):
        assert tag in tags
    assert any(t.startswith('inputs_with_boxes') for t in tags)


def test_class_count_mismatch_is_one_clear_error(two_clone_run):
    train_dir, _, dataset_dir = two_clone_run
    info_before = open(os.path.join(train_dir, 'model_info.json')).read()
    rc, _, err = _run(_command(train_dir, dataset_dir, '--num_classes=8',
                               '--max_number_of_steps=%d' % (LEARNING_STEPS + 5)))
    assert rc == 1
    # TensorFlow's own warnings may precede it; the error itself is the one last line.
    assert 'Traceback' not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'num_classes=6' in last and 'num_classes=8' in last
    assert [line for line in err.splitlines() if line.startswith('error')] == [last]
    assert '--num_classes' in last
    assert open(os.path.join(train_dir, 'model_info.json')).read() == info_before


def _wait_for(predicate, timeout, proc):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    raise AssertionError('timed out')


def test_kill_9_resumes_and_sigterm_saves_a_final_checkpoint(sample_tfrecords, tmp_path):
    train_dir = str(tmp_path)
    endless = _command(train_dir, sample_tfrecords, '--save_interval_secs=1',
                       '--max_number_of_steps=100000')
    proc = subprocess.Popen(endless, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (_latest_step(train_dir) or 0) >= 2, 600, proc)
    finally:
        proc.kill()  # SIGKILL: no chance to save anything more
        proc.communicate()
    killed_at = _latest_step(train_dir)

    proc = subprocess.Popen(endless, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (_latest_step(train_dir) or 0) >= killed_at + 2, 600, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    steps = [s for s, _ in _logged_steps(out)]
    assert steps[0] == killed_at + 1  # continues the global step instead of restarting at 1
    assert 'SIGTERM received' in out
    final = int(re.search(r'training stopped at global step (\d+) \(SIGTERM\)', out).group(1))
    assert final == steps[-1] and _latest_step(train_dir) == final


def _flags(**overrides):
    """The trainer's flag defaults as a namespace, with ``overrides``."""
    flag_values = train_ssd_network.define_flags().values
    values = {name: flag_values[name].default for name in flag_values}
    values.update(train_model_dir='/tmp/x', dataset_dir=REPO_ROOT, batch_size=4)
    values.update(overrides)
    return types.SimpleNamespace(**values)


@pytest.mark.parametrize('overrides, message', [
    (dict(train_model_dir=None), '--train_model_dir is required'),
    (dict(dataset_dir='/no/such/dir'), '--dataset_dir=/no/such/dir is not a directory'),
    (dict(batch_size=5, num_clones=2), '--batch_size=5 must be a positive multiple of --num_clones=2'),
    (dict(num_classes=1), '--num_classes=1 must be >= 2'),
    (dict(num_epochs_per_decay=0), '--num_epochs_per_decay=0 must be > 0 (or 0 with'),
    (dict(num_epochs_per_decay=0, learning_rate_decay_type='polynomial'),
     '--num_epochs_per_decay=0 must be > 0'),
    (dict(head_init_stddev=-1), '--head_init_stddev=-1 must be >= 0'),
    (dict(match_threshold=0), '--match_threshold=0 must be in (0, 1]'),
    (dict(precision='bfloat16', num_replicas=2), '--precision=bfloat16 cannot train distributed'),
    (dict(match_threshold=1.5), '--match_threshold=1.5 must be in (0, 1]'),
])
def test_bad_flags_are_named(overrides, message):
    with pytest.raises(cli.UsageError, match=re.escape(message)):
        trainer.check_flags(_flags(**overrides))


@pytest.mark.parametrize('flag, value', [('precision', 'float16'), ('data_format', 'NCWH'),
                                         ('weights_initializer', 'glorot'), ('optimizer', 'lbfgs')])
def test_a_choice_outside_its_list_is_a_usage_error(flag, value, capsys):
    assert train_ssd_network.main(['train_ssd_network.py', '--%s=%s' % (flag, value)]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and '--%s' % flag in err and len(err.splitlines()) == 1


def test_auto_precision_trains_distributed_runs_in_float32(capsys):
    assert train_ssd_network.main(['train_ssd_network.py', '--num_replicas=2']) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ('precision: float32 (--precision=auto: distributed training: %s)'
                      % trainer.NO_DISTRIBUTED_BFLOAT16)
    assert err[-1] == 'error: --worker_hosts lists 0 hosts for --num_replicas=2'


def test_a_missing_flag_exits_2_with_one_line(capsys):
    assert train_ssd_network.main(['train_ssd_network.py', '--dataset_dir=%s' % REPO_ROOT]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == 'error: --train_model_dir is required'
    assert [line for line in err if line.startswith('error')] == err[-1:]


def test_cli_bad_input_is_one_line_without_traceback(tmp_path):
    rc, _, err = _run([sys.executable, SCRIPT, '--train_model_dir=%s' % tmp_path,
                       '--dataset_dir=%s' % tmp_path, '--model_name=resnet'], timeout=600)
    assert rc == 1 and 'Traceback' not in err
    assert err.strip().splitlines()[-1].startswith('error: ')


def test_num_classes_comes_from_the_dataset_and_may_not_undercut_it(sample_tfrecords):
    flags = _flags(dataset_dir=sample_tfrecords, dataset_name='vehicle', train_or_test='train')
    spec = trainer.load_dataset(flags)
    assert spec.num_classes == 6
    assert trainer.class_names(spec, 8) == [
        'Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck', 'class_6', 'class_7']
    flags.num_classes = 4
    with pytest.raises(train_tools.TrainConfigError, match='--num_classes=4 is smaller than the 6'):
        trainer.load_dataset(flags)


def test_he_initializer_keeps_relu_signal_scale():
    from utils import slim_compat
    slim = slim_compat.import_slim()
    stds = {}
    for name in ('network', 'he'):
        with tf.Graph().as_default():
            with slim.arg_scope([slim.conv2d], weights_initializer=slim.xavier_initializer()):
                with graph.initializer_scope(name):
                    slim.conv2d(tf.zeros([1, 8, 8, 64]), 64, [3, 3], scope='conv')
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                stds[name] = sess.run(tf.global_variables('conv/weights')[0]).std()
    fan_in = 3 * 3 * 64
    assert stds['he'] == pytest.approx((2.0 / fan_in) ** 0.5, rel=0.1)
    assert stds['network'] == pytest.approx((2.0 / (fan_in + 3 * 3 * 64)) ** 0.5, rel=0.1)


def test_head_init_stddev_sets_only_the_box_heads():
    from nets import nets_factory
    from utils import slim_compat
    slim = slim_compat.import_slim()
    net = nets_factory.build_network('ssd_vgg_300', 6, 0.25)
    with tf.Graph().as_default():
        with slim.arg_scope(net.arg_scope()):
            with graph.initializer_scope('he', head_init_stddev=0.001):
                net.net(tf.zeros([1, 300, 300, 3]))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            head = sess.run(tf.global_variables('ssd_300_vgg/block7_box/conv_cls/weights')[0])
            conv6 = sess.run(tf.global_variables('ssd_300_vgg/conv6/weights')[0])
    # Truncated at 2 std, the normal's std shrinks to 0.88 of its parameter.
    assert head.std() == pytest.approx(0.00088, rel=0.05) and np.abs(head).max() <= 0.002
    assert conv6.std() == pytest.approx((2.0 / (3 * 3 * 128)) ** 0.5, rel=0.1)   # He kept below


def test_polynomial_decay_over_the_whole_run():
    flags = _flags(num_epochs_per_decay=0, learning_rate_decay_type='polynomial',
                   max_number_of_steps=1600, batch_size=8)
    trainer.check_flags(flags)
    assert graph.decay_steps_of(flags, 565) == 1600
    assert graph.decay_steps_of(_flags(batch_size=8), 565) == 141   # 2 epochs


def test_help_lists_every_flag_of_the_trainer_once_by_theme(capsys):
    assert train_ssd_network.main(['train_ssd_network.py', '--help']) == 0
    text = capsys.readouterr().out
    flag_set = train_ssd_network.define_flags()
    grouped = [name for _, names in flag_set.groups for name in names]
    assert len(grouped) == len(set(grouped))
    assert sorted(grouped) == sorted(
        name for name in flag_set.values if len(name) > 1 and name != 'help')
    for theme, names in flag_set.groups:
        assert '%s:' % theme in text
        for name in names:
            assert '  --%s (default: ' % name in text
    # The flag names and defaults of docs/CONTRACT.md §6.
    for name, default in (('dataset_name', 'vehicle'), ('train_or_test', 'train'),
                          ('model_name', 'ssd_vgg_300'), ('optimizer', 'rmsprop'),
                          ('learning_rate', 0.01), ('learning_rate_decay_type', 'exponential'),
                          ('end_learning_rate', 0.0001), ('batch_size', 32), ('num_clones', 1),
                          ('log_every_n_steps', 10), ('save_summaries_secs', 60),
                          ('save_interval_secs', 600), ('precision', 'auto')):
        assert flag_set.values[name].default == default, name
    assert '--logtostderr' not in text and '--helpfull' not in text   # absl's own flags
    assert train_ssd_network.main(['train_ssd_network.py', '--no_such_flag']) == 2


def test_importing_the_trainer_defines_no_global_flag():
    assert 'train_model_dir' not in absl_flags.FLAGS


def _encoded_batch(dataset_dir, match_threshold):
    """One batch of the training pipeline's encoded targets: ``(gclasses, gscores)``, each the
    concatenation over the layers of ``[B, anchors]``, and the object count per image ``[B]``. The graph seed and one map thread make the
    images and their augmentation the same for every threshold."""
    from datasets import dataset_factory
    from deployment import model_deploy
    from nets import nets_factory
    options = _flags(dataset_dir=dataset_dir, batch_size=4, match_threshold=match_threshold,
                     num_preprocessing_threads=1, seed=1)
    spec = dataset_factory.get_dataset('vehicle', 'train', dataset_dir)
    net = nets_factory.build_network('ssd_vgg_300', spec.num_classes, 0.125)
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        iterator, batch = graph.build_batches(options, spec, net, net.anchors(net.params.img_shape),
                                              model_deploy.DeploymentConfig(clone_on_cpu=True))
        with tf.Session() as sess:
            sess.run(iterator.initializer)
            labels, gclasses, gscores = sess.run([batch[1], batch[3], batch[5]])
    flat = lambda layers: np.concatenate([t.reshape(t.shape[0], -1) for t in layers], axis=1)
    return flat(gclasses), flat(gscores), (labels > 0).sum(axis=1)


def test_match_threshold_sets_the_positives_of_the_encoded_targets(sample_tfrecords):
    classes_low, scores_low, num_boxes = _encoded_batch(sample_tfrecords, 0.3)
    classes_high, scores_high, _ = _encoded_batch(sample_tfrecords, 0.7)
    np.testing.assert_array_equal(scores_low, scores_high)   # same images, same anchors
    positive_low, positive_high = classes_low > 0, classes_high > 0
    assert positive_high.sum() < positive_low.sum()
    assert not np.any(positive_high & ~positive_low)          # raising it only removes positives
    # Every anchor at IoU >= the threshold is a positive; below it only a box's best anchor is.
    assert np.all(positive_high[scores_high >= 0.7])
    assert np.all(positive_low[scores_low >= 0.3])
    assert np.all((positive_high & (scores_high < 0.7)).sum(axis=1) <= num_boxes)


def _seeded_run(train_dir, dataset_dir, seed, *extra):
    """Three steps with ``--seed``; returns (logged losses, final variables)."""
    rc, out, err = _run(_command(train_dir, dataset_dir, '--max_number_of_steps=3',
                                 '--seed=%d' % seed) + ['--save_summaries_secs=600'] + list(extra))
    assert rc == 0, err[-3000:]
    if extra:
        assert 'evaluated step 2 on test' in out, out[-3000:]
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(train_dir))
    weights = {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}
    return [loss for _, loss in _logged_steps(out)], weights


def test_the_same_seed_trains_the_same_weights_and_another_seed_does_not(sample_tfrecords,
                                                                        tmp_path):
    losses, weights = _seeded_run(str(tmp_path / 'a'), sample_tfrecords, 5)
    same_losses, same_weights = _seeded_run(str(tmp_path / 'b'), sample_tfrecords, 5)
    # This one also evaluates in the training process: op determinism (--seed) must let the
    # evaluation graph build its input pipeline.
    other_losses, other_weights = _seeded_run(str(tmp_path / 'c'), sample_tfrecords, 6,
                                              '--eval_every_n_steps=2', '--eval_split=test',
                                              '--eval_max_images=2')
    assert len(losses) == 3 and losses == same_losses and losses != other_losses
    assert sorted(weights) == sorted(same_weights) == sorted(other_weights)
    for name in weights:
        np.testing.assert_array_equal(weights[name], same_weights[name], err_msg=name)
    conv = 'ssd_300_vgg/conv1/conv1_1/weights'
    assert not np.array_equal(weights[conv], other_weights[conv])


def _first_step_parts(stdout):
    """The loss parts of the first logged step, by name."""
    parts = STEP_LINE.search(stdout).group(3)
    return {name: float(value) for name, value in (p.split() for p in parts.split(', '))}


def test_class_weights_scale_the_classification_loss_of_their_classes(sample_tfrecords, tmp_path):
    # The same seeded first batch: every class at weight 2 doubles the positives' cross-entropy
    # and leaves the negatives and the localisation as they were.
    doubled = ','.join('%s=2' % name for name in dataset_config.VEHICLE_CLASSES)
    runs = {}
    for name, extra in (('plain', []), ('doubled', ['--class_weights=' + doubled])):
        rc, out, err = _run(_command(str(tmp_path / name), sample_tfrecords,
                                     '--max_number_of_steps=1', *extra))
        assert rc == 0, err[-3000:]
        runs[name] = (_first_step_parts(out), out)
    plain, doubled_parts = runs['plain'][0], runs['doubled'][0]
    assert doubled_parts['cross_entropy_pos'] == pytest.approx(2 * plain['cross_entropy_pos'],
                                                               rel=1e-3)
    for part in ('cross_entropy_neg', 'localization'):
        assert doubled_parts[part] == pytest.approx(plain[part], rel=1e-4)
    assert 'class weights: Ambulance 2.00, Bus 2.00, Car 2.00' in runs['doubled'][1]
    assert 'class weights' not in runs['plain'][1]


def test_an_unknown_class_in_class_weights_exits_2_naming_it(sample_tfrecords, tmp_path,
                                                              capsys):
    assert train_ssd_network.main(['train_ssd_network.py', '--train_model_dir=%s' % tmp_path,
                                   '--dataset_dir=%s' % sample_tfrecords,
                                   '--class_weights=Tram=2']) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the precision line
    assert err == ("error: --class_weights=Tram=2: unknown class 'Tram' (classes: Ambulance, "
                   'Bus, Car, Motorcycle, Truck)')
    assert not os.listdir(str(tmp_path))
