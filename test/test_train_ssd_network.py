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
from test.conftest import REPO_ROOT
from training import graph, train_tools, trainer

SCRIPT = os.path.join(REPO_ROOT, 'train_ssd_network.py')
LEARNING_STEPS = 20
STEP_LINE = re.compile(r'^step (\d+): loss ([0-9.]+) \((.*)\) lr ([0-9.e-]+) \| '
                       r'([0-9.]+) s/step, ([0-9.]+) images/s$', re.M)


def _command(train_dir, dataset_dir, *extra):
    return [sys.executable, SCRIPT, '--train_model_dir=%s' % train_dir,
            '--dataset_dir=%s' % dataset_dir, '--dataset_name=vehicle', '--train_or_test=train',
            '--width_multiplier=0.125', '--batch_size=2', '--clone_on_cpu',
            '--optimizer=adam', '--learning_rate=0.002', '--learning_rate_decay_type=fixed',
            '--log_every_n_steps=1', '--save_summaries_secs=1', '--shuffle_seed=3',
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
    values = dict(train_model_dir='/tmp/x', dataset_dir=REPO_ROOT, batch_size=4, num_clones=1,
                  num_classes=None, width_multiplier=1.0, data_format='NHWC',
                  max_number_of_steps=None, weights_initializer='network', precision='float32',
                  head_init_stddev=0.0, num_epochs_per_decay=2.0,
                  learning_rate_decay_type='exponential', eval_every_n_steps=0, eval_split='val',
                  eval_max_images=None)
    values.update(overrides)
    return types.SimpleNamespace(**values)


@pytest.mark.parametrize('overrides, message', [
    (dict(train_model_dir=None), '--train_model_dir is required'),
    (dict(dataset_dir='/no/such/dir'), '--dataset_dir=/no/such/dir is not a directory'),
    (dict(batch_size=5, num_clones=2), '--batch_size=5 must be a positive multiple of --num_clones=2'),
    (dict(num_classes=1), '--num_classes=1 must be >= 2'),
    (dict(data_format='NCWH'), '--data_format=NCWH'),
    (dict(weights_initializer='glorot'), '--weights_initializer=glorot must be one of he, network'),
    (dict(num_epochs_per_decay=0), '--num_epochs_per_decay=0 must be > 0 (or 0 with'),
    (dict(num_epochs_per_decay=0, learning_rate_decay_type='polynomial'),
     '--num_epochs_per_decay=0 must be > 0'),
    (dict(head_init_stddev=-1), '--head_init_stddev=-1 must be >= 0'),
    (dict(precision='float16'), '--precision=float16 must be one of float32, bfloat16'),
])
def test_bad_flags_are_named(overrides, message):
    with pytest.raises(train_tools.TrainConfigError, match=re.escape(message)):
        trainer.check_flags(_flags(**overrides))


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


def test_help_lists_the_trainers_flags_by_theme(capsys):
    assert train_ssd_network.run(['train_ssd_network.py', '--help']) == 0
    text = capsys.readouterr().out
    flag_values = train_ssd_network.define_flags(absl_flags.FlagValues())
    grouped = [name for _, names in train_ssd_network.FLAG_GROUPS for name in names]
    assert sorted(grouped) == sorted(name for name in flag_values if len(name) > 1 and name != 'help')
    for theme, names in train_ssd_network.FLAG_GROUPS:
        assert '%s:' % theme in text
        for name in names:
            assert '  --%s (default: ' % name in text
    assert '--logtostderr' not in text and '--helpfull' not in text   # absl's own flags
    assert train_ssd_network.run(['train_ssd_network.py', '--no_such_flag']) == 2


def test_importing_the_trainer_defines_no_global_flag():
    assert 'train_model_dir' not in absl_flags.FLAGS
