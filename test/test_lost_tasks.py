"""A parameter server lost mid-run, on loopback: the chief and the worker stop within a bounded
time with one line naming it (TensorFlow's own recovery would wait for it without end), and the
restarted cluster resumes from the newest checkpoint."""
import re
import time

import tensorflow.compat.v1 as tf

from test.cluster_processes import Output, free_ports, start_trainer, stop_all

STEP_LINE = re.compile(r'^step (\d+): loss')
# Killed parameter server → the workers' exit: a failed call (at once on loopback, the peer's
# socket resets), up to 3 connection probes 1 s apart, and the process's exit.
STOP_BOUND_SECS = 30


def _cluster(train_dir, dataset_dir, max_steps, ports):
    ps_port, chief_port, worker_port = ports
    flags = ['--num_ps_tasks=1', '--num_replicas=2', '--ps_hosts=127.0.0.1:%d' % ps_port,
             '--worker_hosts=127.0.0.1:%d,127.0.0.1:%d' % (chief_port, worker_port),
             '--precision=float32', '--save_interval_secs=1']
    env = {'TF_CPP_MIN_LOG_LEVEL': '3'}  # the tools' own default: TensorFlow's C++ logs off
    return [start_trainer(train_dir, dataset_dir, max_steps, flags + job, env)
            for job in (['--job_name=ps', '--task=0'], ['--job_name=worker', '--task=0'],
                        ['--job_name=worker', '--task=1'])]


def _checkpoint_step(train_dir):
    prefix = tf.train.latest_checkpoint(train_dir)
    return int(prefix.rsplit('-', 1)[1]) if prefix else None


def test_a_lost_parameter_server_stops_the_workers_with_one_line_and_the_cluster_resumes(
        sample_tfrecords, tmp_path):
    train_dir = str(tmp_path / 'train')
    ports = free_ports(3)
    ps, chief, worker = processes = _cluster(train_dir, sample_tfrecords, 100000, ports)
    outputs = [Output(proc) for proc in processes]
    try:
        deadline = time.monotonic() + 150
        while (_checkpoint_step(train_dir) or 0) < 2:
            assert time.monotonic() < deadline and chief.poll() is None, outputs[1].stderr
            time.sleep(0.5)
        ps.kill()
        killed_at = time.monotonic()
        for proc in (chief, worker):
            proc.wait(timeout=STOP_BOUND_SECS * 2)
        stopped_after = time.monotonic() - killed_at
    finally:
        stop_all(processes)
    expected = re.compile(r'^error: lost parameter server 0 \(127\.0\.0\.1:%d\): training '
                          r'stopped; a restarted cluster resumes from model\.ckpt-\d+$' % ports[0])
    for proc, output in zip((chief, worker), outputs[1:]):
        output.finish()
        assert proc.returncode == 1
        assert len(output.stderr) == 1 and expected.match(output.stderr[0]), output.stderr[-20:]
    assert stopped_after < STOP_BOUND_SECS
    saved = _checkpoint_step(train_dir)
    assert saved >= 2

    ps, chief, worker = processes = _cluster(train_dir, sample_tfrecords, saved + 3,
                                             free_ports(3))
    try:
        out, err = chief.communicate(timeout=240)
        worker.communicate(timeout=60)
    finally:
        stop_all(processes)
    assert chief.returncode == 0, err[-2000:]
    steps = [int(m.group(1)) for m in map(STEP_LINE.match, out.splitlines()) if m]
    assert steps and steps[0] > saved, (saved, steps)  # resumed, not started over
    assert _checkpoint_step(train_dir) >= saved + 3


def _wait_for(predicate, what, timeout=150):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for %s' % what
        time.sleep(0.3)


def _steps(output):
    return [int(m.group(1)) for m in map(STEP_LINE.match, list(output.stdout)) if m]


def test_a_lost_worker_and_a_lost_chief_rejoin_the_running_cluster(sample_tfrecords, tmp_path):
    train_dir = str(tmp_path / 'train')
    ports = free_ports(3)
    ps, chief, worker = processes = _cluster(train_dir, sample_tfrecords, 100000, ports)
    outputs = [Output(proc) for proc in processes]
    try:
        _wait_for(lambda: _steps(outputs[2]), 'the worker\'s first step')
        worker.kill()
        worker.wait()
        steps_at_kill = len(_steps(outputs[1]))
        # The chief goes on alone: its session never waits for the other worker.
        _wait_for(lambda: len(_steps(outputs[1])) >= steps_at_kill + 3, 'the chief going on')
        worker = _cluster(train_dir, sample_tfrecords, 100000, ports)[2]
        processes.append(worker)
        rejoined = Output(worker)
        _wait_for(lambda: _steps(rejoined), 'the restarted worker\'s first step')
        # It joined the shared global step, not a fresh one.
        assert _steps(rejoined)[0] > max(_steps(outputs[1])[:steps_at_kill + 3])

        _wait_for(lambda: (_checkpoint_step(train_dir) or 0) >= 2, 'a checkpoint')
        chief.kill()
        chief.wait()
        saved = _checkpoint_step(train_dir)
        chief = _cluster(train_dir, sample_tfrecords, 100000, ports)[1]
        processes.append(chief)
        restarted = Output(chief)
        _wait_for(lambda: _steps(restarted), 'the restarted chief\'s first step')
        assert _steps(restarted)[0] > saved  # resumed from the newest checkpoint
        for proc in (chief, worker):
            proc.terminate()  # SIGTERM: a final checkpoint, exit 0
        assert chief.wait(timeout=60) == 0 and worker.wait(timeout=60) == 0
    finally:
        stop_all(processes)
    assert _checkpoint_step(train_dir) > saved
