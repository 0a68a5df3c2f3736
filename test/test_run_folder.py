"""Training folders that can be copied and moved, and every older checkpoint a fallback.

End to end: train, copy or move the folder, train the copy, then detect with the original and
the copy. Then each reader (detector, evaluator, SavedModel and TFLite exporters, follow mode,
trainer) given a folder whose newest checkpoint is damaged: it uses the newest complete one and
names the one it passed over; given the damaged checkpoint itself, it names it as the cause.
"""
import json
import os
import shutil

import pytest

import detector
import eval_ssd_network
import export_saved_model
import export_tflite
import train_ssd_network
from model import checkpoints
from test.checkpoints import make_checkpoint
from training import best_checkpoint
from training import evaluation as training_evaluation
from training import run_folder
from training.train_tools import TrainConfigError

TRAIN_FLAGS = ['--width_multiplier=0.125', '--batch_size=2', '--optimizer=adam',
               '--learning_rate=0.002', '--learning_rate_decay_type=fixed',
               '--num_preprocessing_threads=2', '--precision=float32', '--train_or_test=train']


def _train(capsys, train_dir, dataset_dir, steps, *extra):
    status = train_ssd_network.main(['train_ssd_network.py', '--train_model_dir=%s' % train_dir,
                                     '--dataset_dir=%s' % dataset_dir,
                                     '--max_number_of_steps=%d' % steps] + TRAIN_FLAGS
                                    + list(extra))
    captured = capsys.readouterr()
    assert status == 0, captured.err[-3000:]
    return captured


def _detect(capsys, ckpt_path, image, out):
    status = detector.main(['detector.py', '--noshow', '--precision=float32',
                            '--ckpt_path=%s' % ckpt_path, '--image_path=%s' % image,
                            '--output_dir=%s' % out, '--select_threshold=0.01'])
    captured = capsys.readouterr()
    assert status == 0, captured.err[-3000:]
    return captured


def _steps(train_dir):
    return sorted(checkpoints.checkpoint_step(p) for p in checkpoints.list_checkpoints(train_dir))


def _state_lines(train_dir):
    with open(os.path.join(train_dir, checkpoints.STATE_FILENAME)) as f:
        return f.read().splitlines()


def _no_foreign_lines(captured):
    text = captured.out + captured.err
    assert 'Traceback' not in text and 'ERROR:' not in text, text[-3000:]


@pytest.fixture(scope='module')
def sample_image(sample_voc_dir):
    folder = os.path.join(sample_voc_dir, 'JPEGImages')
    return os.path.join(folder, sorted(os.listdir(folder))[0])


def test_a_copied_or_moved_folder_is_a_run_of_its_own(sample_tfrecords, sample_image, tmp_path,
                                                      capsys):
    run1, run2 = str(tmp_path / 'run1'), str(tmp_path / 'run2')
    _train(capsys, run1, sample_tfrecords, 2)
    assert _steps(run1) == [0, 2]   # the session's first save and its last step
    # The state file names the folder's own files, relative to it.
    assert _state_lines(run1) == ['model_checkpoint_path: "model.ckpt-2"',
                                  'all_model_checkpoint_paths: "model.ckpt-0"',
                                  'all_model_checkpoint_paths: "model.ckpt-2"']
    # A folder of an earlier version holds absolute paths; copying it is the everyday case that
    # used to delete the original's checkpoints.
    with open(os.path.join(run1, checkpoints.STATE_FILENAME), 'w') as f:
        f.write('model_checkpoint_path: "%s/model.ckpt-2"\n' % run1 + ''.join(
            'all_model_checkpoint_paths: "%s/model.ckpt-%d"\n' % (run1, step) for step in (0, 2)))
    original = sorted(os.listdir(run1))
    shutil.copytree(run1, run2, symlinks=True)

    captured = _train(capsys, run2, sample_tfrecords, 3, '--max_to_keep=2')
    _no_foreign_lines(captured)
    assert _steps(run2) == [2, 3]                  # --max_to_keep applied to the copy only
    assert sorted(os.listdir(run1)) == original    # the original untouched, every checkpoint
    assert _state_lines(run2)[0] == 'model_checkpoint_path: "model.ckpt-3"'

    # A moved folder whose newest checkpoint lost its index: the trainer names it, resumes
    # from the one before, without a word from TensorFlow.
    moved = str(tmp_path / 'moved')
    shutil.move(run2, moved)
    os.remove(os.path.join(moved, 'model.ckpt-3.index'))
    info = os.path.join(moved, 'model_info.json')
    with open(info, 'r+') as f:   # and its model_info.json was cut short
        f.truncate(10)
    captured = _train(capsys, moved, sample_tfrecords, 4, '--max_to_keep=2')
    _no_foreign_lines(captured)
    assert 'warning: %s is damaged (' % info in captured.out
    with open(info) as f:
        assert json.load(f)['max_number_of_steps'] == 4
    assert ('warning: checkpoint %s passed over: its .index file is missing; using model.ckpt-2'
            % os.path.join(moved, 'model.ckpt-3')) in captured.out
    assert 'training stopped at global step 4' in captured.out
    assert _steps(moved)[-1] == 4 and not os.path.exists(run2)

    # Both detect, each with its own newest checkpoint.
    for train_dir, step in ((run1, 2), (moved, 4)):
        captured = _detect(capsys, train_dir, sample_image, str(tmp_path / ('out%d' % step)))
        _no_foreign_lines(captured)
        assert os.listdir(str(tmp_path / ('out%d' % step)))
    assert _steps(run1) == [0, 2]


@pytest.fixture
def damaged_run(tmp_path):
    """A folder with checkpoints 1 and 2 whose newest (2) has lost the end of its data."""
    train_dir = str(tmp_path / 'run')
    make_checkpoint(train_dir, step=1)
    newest = make_checkpoint(train_dir, step=2, seed=1)
    data = newest + '.data-00000-of-00001'
    with open(data, 'r+b') as f:
        f.truncate(os.path.getsize(data) // 2)
    return train_dir, newest


def test_newest_complete_passes_over_each_kind_of_damage(tmp_path):
    train_dir = str(tmp_path)
    prefixes = [make_checkpoint(train_dir, step=step) for step in (1, 2, 3, 4)]
    size = os.path.getsize(prefixes[0] + '.data-00000-of-00001')
    os.remove(prefixes[3] + '.index')
    with open(prefixes[2] + '.data-00000-of-00001', 'r+b') as f:
        f.truncate(size - 4)
    with open(prefixes[1] + '.index', 'wb') as f:
        f.write(b'not an index')
    prefix, passed_over = checkpoints.newest_complete(train_dir)
    assert prefix == prefixes[0]
    reasons = dict(passed_over)
    assert list(reasons) == prefixes[:0:-1]
    assert reasons[prefixes[3]] == 'its .index file is missing'
    assert reasons[prefixes[2]] == 'its data is truncated (%d of %d bytes)' % (size - 4, size)
    assert reasons[prefixes[1]].startswith('its .index cannot be read')
    # The trainer keeps only the complete ones in its state file.
    assert run_folder.adopt_checkpoints(train_dir) == prefixes[0]
    # With none complete the trainer refuses rather than start afresh over them.
    os.remove(prefixes[0] + '.index')
    with pytest.raises(TrainConfigError, match='none of its checkpoints can be used'):
        run_folder.resume_checkpoint(train_dir)
    assert _state_lines(train_dir) == ['model_checkpoint_path: "model.ckpt-1"',
                                       'all_model_checkpoint_paths: "model.ckpt-1"']


def test_every_reader_falls_back_to_the_newest_complete_checkpoint(damaged_run, tmp_path,
                                                                   sample_image, capsys):
    train_dir, newest = damaged_run
    older = os.path.join(train_dir, 'model.ckpt-1')
    warning = ('warning: checkpoint %s passed over: its data is truncated (' % newest)

    captured = _detect(capsys, train_dir, sample_image, str(tmp_path / 'detections'))
    assert warning in captured.err and 'using model.ckpt-1' in captured.err
    _no_foreign_lines(captured)

    assert export_saved_model.main(['export_saved_model.py', '--ckpt_path=%s' % train_dir,
                                    '--export_dir=%s' % (tmp_path / 'export')]) == 0
    captured = capsys.readouterr()
    assert warning in captured.err
    with open(str(tmp_path / 'export' / 'ssd_vgg_300' / '1' / 'assets.extra' /
                  'model_info.json')) as f:
        assert json.load(f)['checkpoint'] == 'model.ckpt-1'

    assert export_tflite.main(['export_tflite.py', '--ckpt_path=%s' % train_dir,
                               '--export_dir=%s' % (tmp_path / 'tflite')]) == 0
    assert warning in capsys.readouterr().err

    # The damaged checkpoint named itself is the cause, in one line, for each tool.
    cause = 'error: checkpoint %s cannot be used: its data is truncated (' % newest
    for tool, args in (
            (detector, ['--noshow', '--image_path=%s' % sample_image,
                        '--output_dir=%s' % (tmp_path / 'd2')]),
            (export_saved_model, ['--export_dir=%s' % (tmp_path / 'e2')]),
            (export_tflite, ['--export_dir=%s' % (tmp_path / 't2')])):
        status = tool.main(['tool.py', '--ckpt_path=%s' % newest] + args)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 1 and err[-1].startswith(cause), err
        assert 'Read less bytes' not in '\n'.join(err)
    assert not os.path.exists(str(tmp_path / 'e2')) and not os.path.exists(str(tmp_path / 't2'))
    assert checkpoints.resolve(older) == older


def test_evaluator_and_follow_mode_fall_back(damaged_run, sample_tfrecords, tmp_path, capsys):
    train_dir, newest = damaged_run
    common = ['--dataset_dir=%s' % sample_tfrecords, '--split=test', '--precision=float32',
              '--max_num_batches=1']
    assert eval_ssd_network.main(['eval_ssd_network.py', '--ckpt_path=%s' % train_dir,
                                  '--output_dir=%s' % (tmp_path / 'eval')] + common) == 0
    captured = capsys.readouterr()
    assert 'warning: checkpoint %s passed over' % newest in captured.err
    with open(str(tmp_path / 'eval' / 'results.json')) as f:
        assert json.load(f)['checkpoint'] == os.path.join(train_dir, 'model.ckpt-1')

    # Follow mode scores the complete one, names the damaged one once (not at every poll).
    lines = []
    followed = list(training_evaluation.follow_checkpoints(
        train_dir, interval_secs=0.01, timeout_secs=0.2, printer=lines.append))
    assert followed == [os.path.join(train_dir, 'model.ckpt-1')]
    assert sum('passed over' in line for line in lines) == 1, lines


def test_damaged_best_results_are_named_and_rebuilt(tmp_path):
    train_dir = str(tmp_path)
    prefix = make_checkpoint(train_dir, step=1)
    results = {'map_voc07': .5, 'num_images': 10, 'classes': {}}
    settings = {'dataset_name': 'vehicle', 'split_name': 'val', 'step': 1}
    assert best_checkpoint.update(train_dir, prefix, results, settings)
    best = best_checkpoint.best_dir(train_dir)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(best).st_mode & 0o777 == 0o777 & ~umask   # not mkdtemp's private 0700
    with open(os.path.join(best, 'results.json'), 'w') as f:
        f.write('{"map_voc07": 0.')                           # cut short by a crash
    lines = []
    assert best_checkpoint.update(train_dir, prefix, dict(results, map_voc07=.1), settings,
                                  warn=lines.append)
    assert lines == ["warning: %s is damaged (Expecting ',' delimiter: line 1 column 16 (char "
                     "15)): the next evaluation replaces best/"
                     % os.path.join(best, 'results.json')]
    assert best_checkpoint.read_best(train_dir)['map_voc07'] == .1
