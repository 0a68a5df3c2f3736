"""Distributed training on one machine: 1 parameter server + 2 workers on loopback ports, each a
``train_ssd_network.py`` process; the chief (worker 0) checkpoints the shared global step."""
import os
import re

import tensorflow.compat.v1 as tf

from test.cluster_processes import free_ports, start_trainer, stop_all

MAX_STEPS = 6
STEP_LINE = re.compile(r'^step (\d+): loss', re.M)


def _start(job_name, task, cluster_flags, train_dir, dataset_dir):
    return start_trainer(train_dir, dataset_dir, MAX_STEPS,
                         ['--job_name=%s' % job_name, '--task=%d' % task] + cluster_flags)


def test_one_ps_two_workers_share_the_global_step(sample_tfrecords, tmp_path):
    ps_port, worker0_port, worker1_port = free_ports(3)
    cluster_flags = ['--num_ps_tasks=1', '--num_replicas=2',
                     '--ps_hosts=127.0.0.1:%d' % ps_port,
                     '--worker_hosts=127.0.0.1:%d,127.0.0.1:%d' % (worker0_port, worker1_port)]
    train_dir = str(tmp_path / 'train')
    ps = _start('ps', 0, cluster_flags, train_dir, sample_tfrecords)
    workers = [_start('worker', i, cluster_flags, train_dir, sample_tfrecords) for i in (0, 1)]
    try:
        outputs = [w.communicate(timeout=240) for w in workers]
    finally:
        stop_all(workers + [ps])
    for proc, (out, err) in zip(workers, outputs):
        assert proc.returncode == 0, err[-3000:]
    steps = [[int(s) for s in STEP_LINE.findall(out)] for out, _ in outputs]

    prefix = tf.train.latest_checkpoint(train_dir)
    assert prefix is not None, 'the chief wrote no checkpoint'
    saved_step = int(tf.train.load_checkpoint(prefix).get_tensor('global_step'))
    assert prefix.endswith('model.ckpt-%d' % saved_step)
    assert saved_step >= MAX_STEPS
    # One global step for both workers: the chief's own steps alone do not reach it when the
    # other worker trained too, and no worker counted from 1 to MAX_STEPS on its own.
    all_steps = steps[0] + steps[1]
    assert steps[0], outputs[0][1][-2000:]
    assert len(all_steps) <= saved_step + 1
    if steps[1]:
        assert len(steps[0]) < MAX_STEPS
    # Only the chief writes into --train_model_dir.
    assert os.path.isfile(os.path.join(train_dir, 'model_info.json'))
