"""Trainer processes on loopback for the cluster tests: free ports, and ``train_ssd_network.py``
started with the small, quick settings every cluster test shares."""
import os
import socket
import subprocess
import sys

from test.conftest import REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, 'train_ssd_network.py')


def free_ports(count):
    """Ports the OS reports free right now (sockets held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(('127.0.0.1', 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_trainer(train_dir, dataset_dir, max_steps, flags=(), env=None):
    """A ``train_ssd_network.py`` process (stdout and stderr piped, text) at width 0.0625,
    batch 2, plain SGD, a log line per step; ``env`` adds to the environment."""
    command = [sys.executable, SCRIPT, '--train_model_dir=%s' % train_dir,
               '--dataset_dir=%s' % dataset_dir, '--dataset_name=vehicle',
               '--width_multiplier=0.0625', '--batch_size=2', '--clone_on_cpu',
               '--optimizer=sgd', '--learning_rate=0.001', '--learning_rate_decay_type=fixed',
               '--log_every_n_steps=1', '--max_number_of_steps=%d' % max_steps,
               '--num_preprocessing_threads=1'] + list(flags)
    environment = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2',
                       PYTHONPATH=REPO_ROOT)
    environment.pop('TF_CONFIG', None)
    environment.update(env or {})
    return subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop_all(processes):
    """Kills those still running and reaps them."""
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


class Output(object):
    """The stdout and stderr lines of a process, read in the background as they come (a full
    pipe would stall the process)."""

    def __init__(self, proc):
        import threading
        self.stdout, self.stderr = [], []
        self._threads = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                         for stream, lines in ((proc.stdout, self.stdout),
                                               (proc.stderr, self.stderr))]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip('\n'))

    def finish(self, timeout=10):
        for thread in self._threads:
            thread.join(timeout)
        return self
