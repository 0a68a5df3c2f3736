"""Ctrl-C, signals and folders that cannot be written: one line, a non-zero exit, nothing
half-written left looking complete.

The signal cases run the tools as a user does (a subprocess, interrupted mid-run); the
read-only cases use a read-only tmpfs (``test_faults.small_disk``), which refuses root too.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import eval_ssd_network
import export_saved_model
import export_tflite
import train_ssd_network
from model import evaluation
from test.checkpoints import make_checkpoint
from test.test_faults import error_lines, small_disk
from utils import cli
from utils import detection_io
from utils.errors import ToolkitError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(script, *args):
    env = dict(os.environ, MPLBACKEND='Agg', PYTHONUNBUFFERED='1')
    env.pop('DISPLAY', None)
    # A job started in the background inherits SIGINT ignored, and Python then installs no
    # Ctrl-C handler: give the tool the disposition a terminal gives it.
    return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, script)] + list(args),
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_line(process, start, timeout=300):
    """Reads stdout until a line starts with ``start``; returns what was read."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(start):
            return lines
    process.kill()
    pytest.fail('no line starting with %r: %s%s' % (start, ''.join(lines),
                                                     process.stderr.read()[-2000:]))


def test_cli_turns_ctrl_c_into_one_line_and_exit_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert cli.run_cli(['tool.py'], cli.FlagSet().values, [], 'doc', interrupted) == 130
    assert capsys.readouterr().err == 'error: interrupted\n'


def test_two_sigterms_stop_the_trainer_at_once_in_one_line(sample_tfrecords, tmp_path):
    train_dir = str(tmp_path / 'run')
    trainer = _start('train_ssd_network.py', '--train_model_dir=%s' % train_dir,
                     '--dataset_dir=%s' % sample_tfrecords, '--train_or_test=train',
                     '--width_multiplier=0.125', '--batch_size=2', '--precision=float32',
                     '--max_number_of_steps=100000', '--log_every_n_steps=1',
                     '--num_preprocessing_threads=2', '--eval_every_n_steps=1',
                     '--eval_split=test')
    _wait_for_line(trainer, 'step ')
    # A supervisor's retry, or Ctrl-C twice: the second signal stops at once. (Signals sent
    # back to back merge into one; the evaluation after each step keeps the run going meanwhile.)
    trainer.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    trainer.send_signal(signal.SIGTERM)
    _, stderr = trainer.communicate(timeout=300)
    assert trainer.returncode == 130, stderr[-3000:]
    assert 'Traceback' not in stderr
    assert error_lines(stderr)[-1] == (
        'error: interrupted: a second signal (SIGTERM after SIGTERM): stopped at once, without a '
        'final checkpoint; the newest one saved is kept')
    assert os.path.isfile(os.path.join(train_dir, 'model.ckpt-0.index'))   # nothing lost


def test_ctrl_c_in_the_detector_leaves_only_whole_pictures(tmp_path):
    prefix = make_checkpoint(str(tmp_path / 'ckpt'))
    images = tmp_path / 'images'
    images.mkdir()
    picture = np.random.RandomState(0).randint(0, 256, (240, 320, 3)).astype(np.uint8)
    import cv2
    for index in range(60):
        cv2.imwrite(str(images / ('%03d.jpg' % index)), picture)
    out = tmp_path / 'out'
    detector = _start('detector.py', '--ckpt_path=%s' % prefix, '--image_path=%s' % images,
                      '--output_dir=%s' % out, '--noshow', '--precision=float32')
    _wait_for_line(detector, '001.jpg')
    detector.send_signal(signal.SIGINT)
    _, stderr = detector.communicate(timeout=120)
    assert detector.returncode == 130, stderr[-3000:]
    assert 'Traceback' not in stderr and error_lines(stderr)[-1] == 'error: interrupted'
    written = sorted(os.listdir(str(out)))
    assert written and all(name.endswith('.png') and '.tmp-' not in name for name in written)
    for name in written:   # every picture left is whole
        assert cv2.imread(str(out / name)) is not None, name


def test_ctrl_c_in_the_exporter_leaves_no_model_folder(tmp_path, capsys, monkeypatch):
    prefix = make_checkpoint(str(tmp_path / 'ckpt'))
    from tensorflow.python.saved_model import builder_impl

    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder_impl._SavedModelBuilder, 'save', interrupted)
    export_dir = tmp_path / 'export'
    assert export_saved_model.main(['export_saved_model.py', '--ckpt_path=%s' % prefix,
                                    '--export_dir=%s' % export_dir]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == 'error: interrupted'
    assert not export_dir.exists()


def test_ctrl_c_in_the_evaluator_removes_its_partial_output(sample_tfrecords, tmp_path, capsys,
                                                          monkeypatch):
    prefix = make_checkpoint(str(tmp_path / 'ckpt'))
    out = tmp_path / 'eval'
    out.mkdir()
    (out / 'earlier.txt').write_text('kept')
    time.sleep(1.1)   # file times may be rounded to the second

    def interrupted(*_, **__):
        (out / 'results.json').write_text('{')   # half-written when the Ctrl-C came
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation.DetectionMetrics, 'evaluate', interrupted)
    assert eval_ssd_network.main(['eval_ssd_network.py', '--ckpt_path=%s' % prefix,
                                  '--dataset_dir=%s' % sample_tfrecords, '--split=test',
                                  '--precision=float32', '--output_dir=%s' % out]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == 'error: interrupted'
    assert sorted(os.listdir(str(out))) == ['earlier.txt']


def test_unwritable_training_folders_are_one_line(sample_tfrecords, tmp_path, capsys):
    def train(train_dir):
        status = train_ssd_network.main([
            'train_ssd_network.py', '--train_model_dir=%s' % train_dir,
            '--dataset_dir=%s' % sample_tfrecords, '--width_multiplier=0.125',
            '--batch_size=2', '--max_number_of_steps=1', '--precision=float32'])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 1 and len(err) == 1, err
        return err[0]

    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    assert train(a_file) == 'error: --train_model_dir=%s: it is a file, not a folder' % a_file
    assert train(a_file / 'run') == ('error: --train_model_dir=%s: %s is a file, not a folder'
                                     % (a_file / 'run', a_file))
    with small_disk(str(tmp_path / 'ro'), '1m', read_only=True) as read_only:
        assert train(read_only) == ('error: --train_model_dir=%s cannot be written: Read-only '
                                    'file system' % read_only)
        run = os.path.join(read_only, 'run')
        assert train(run) == ('error: --train_model_dir=%s cannot be created: Read-only file '
                              'system' % run)


def test_exporters_into_a_read_only_folder_are_one_line(tmp_path, capsys):
    prefix = make_checkpoint(str(tmp_path / 'ckpt'))
    with small_disk(str(tmp_path / 'ro'), '1m', read_only=True) as read_only:
        for tool in (export_tflite, export_saved_model):
            assert tool.main(['tool.py', '--ckpt_path=%s' % prefix,
                              '--export_dir=%s' % read_only]) == 1
            assert capsys.readouterr().err.strip().splitlines() == [
                'error: --export_dir=%s cannot be written: Read-only file system' % read_only]


def test_a_folder_that_cannot_be_listed_is_one_line(tmp_path, monkeypatch):
    # Root lists any folder, so the refusal is the operating system's answer played back.
    def refused(path):
        raise PermissionError(13, 'Permission denied', path)

    monkeypatch.setattr(detection_io.os, 'listdir', refused)
    with pytest.raises(ToolkitError) as error:
        detection_io.list_images(str(tmp_path))
    assert str(error.value) == ('--image_path %s: cannot list this folder: Permission denied'
                                % tmp_path)


def test_an_output_dir_that_is_a_file_is_exit_1_for_every_tool(sample_tfrecords, tmp_path,
                                                               capsys):
    import detector
    prefix = make_checkpoint(str(tmp_path / 'ckpt'))
    a_file = tmp_path / 'a_file'
    a_file.write_text('')
    image = tmp_path / 'image.jpg'
    import cv2
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    for tool, args in (
            (detector, ['--noshow', '--image_path=%s' % image]),
            (eval_ssd_network, ['--dataset_dir=%s' % sample_tfrecords, '--split=test'])):
        status = tool.main(['tool.py', '--ckpt_path=%s' % prefix, '--precision=float32',
                            '--output_dir=%s' % a_file] + args)
        err = error_lines(capsys.readouterr().err)
        assert status == 1 and err == ['error: --output_dir=%s: it is a file, not a folder'
                                       % a_file], err
