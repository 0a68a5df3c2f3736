"""A loopback cluster started from TF_CONFIG alone, as Kubeflow's TFJob starts one: a chief, a
worker, a parameter server and an evaluator, each a ``train_ssd_network.py`` process given the
same flags and only its TF_CONFIG. The chief and the worker share one global step, the chief
checkpoints, the evaluator scores the run's last checkpoint (summaries, best/)."""
import json
import os
import re

import tensorflow.compat.v1 as tf

from model import model_info
from test.cluster_processes import free_ports, start_trainer, stop_all

MAX_STEPS = 6
STEP_LINE = re.compile(r'^step (\d+): loss', re.M)
EVALUATED_LINE = re.compile(r'^evaluated step (\d+) on test', re.M)


def _tf_config(cluster, task_type):
    return {'TF_CONFIG': json.dumps({'cluster': cluster, 'task': {'type': task_type, 'index': 0},
                                     'environment': 'cloud'})}


def test_cluster_from_tf_config_trains_checkpoints_and_evaluates(sample_tfrecords, tmp_path):
    chief_port, worker_port, ps_port = free_ports(3)
    cluster = {'chief': ['127.0.0.1:%d' % chief_port], 'worker': ['127.0.0.1:%d' % worker_port],
               'ps': ['127.0.0.1:%d' % ps_port]}
    train_dir = str(tmp_path / 'train')
    flags = ['--precision=float32', '--eval_split=test', '--eval_max_images=4',
             '--eval_interval_secs=1', '--eval_timeout_secs=120']
    processes = {role: start_trainer(train_dir, sample_tfrecords, MAX_STEPS, flags,
                                     _tf_config(cluster, role))
                 for role in ('ps', 'chief', 'worker', 'evaluator')}
    try:
        outputs = {role: processes[role].communicate(timeout=240)
                   for role in ('chief', 'worker', 'evaluator')}
    finally:
        stop_all(processes.values())
    for role, (_, err) in outputs.items():
        assert processes[role].returncode == 0, '%s: %s' % (role, err[-3000:])

    prefix = tf.train.latest_checkpoint(train_dir)
    assert prefix is not None, 'the chief wrote no checkpoint'
    saved_step = int(tf.train.load_checkpoint(prefix).get_tensor('global_step'))
    assert saved_step >= MAX_STEPS and prefix.endswith('model.ckpt-%d' % saved_step)
    chief_steps = [int(s) for s in STEP_LINE.findall(outputs['chief'][0])]
    worker_steps = [int(s) for s in STEP_LINE.findall(outputs['worker'][0])]
    assert chief_steps, outputs['chief'][1][-2000:]
    # One global step: the two together made no more steps than it counts.
    assert len(chief_steps) + len(worker_steps) <= saved_step + 1
    assert model_info.read_model_info(train_dir)['max_number_of_steps'] == MAX_STEPS

    evaluated = [int(s) for s in EVALUATED_LINE.findall(outputs['evaluator'][0])]
    assert evaluated and evaluated[-1] == saved_step, outputs['evaluator'][0][-2000:]
    assert not STEP_LINE.findall(outputs['evaluator'][0]), 'the evaluator trained'
    with open(os.path.join(train_dir, 'best', 'results.json')) as f:
        best = json.load(f)
    assert best['num_images'] == 4
    assert tf.io.gfile.glob(os.path.join(train_dir, 'eval_test', 'events.out.tfevents.*'))
