"""Evaluation while training: the evaluator following a training folder, its TensorBoard
summaries (mAP scalars, PR curves, images), best/, and the trainer's in-process evaluation."""
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import detector
import eval_ssd_network
import train_ssd_network
from model import checkpoints
from model import model_info
from test.checkpoints import make_checkpoint
from training import best_checkpoint
from training import eval_summaries

WAIT_SECS = 600   # generous bound for a loaded 2-core machine; the tests end as soon as they can


def read_events(directory):
    """{tag: {step: value}} of the event files in ``directory``: floats for scalars, the
    ``Summary.Value`` for the rest."""
    values = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith('events.out.tfevents'):
            for event in tf.train.summary_iterator(os.path.join(directory, name)):
                for value in event.summary.value:
                    values.setdefault(value.tag, {})[event.step] = (
                        value.simple_value if value.HasField('simple_value') else value)
    return values


def publish(stage_dir, train_dir, step, seed):
    """Saves a random checkpoint at ``step`` and publishes it into ``train_dir`` as the trainer
    does: the files first, the ``checkpoint`` index last."""
    prefix = make_checkpoint(stage_dir, step=step, seed=seed)
    for path in tf.io.gfile.glob(prefix + '.*'):
        shutil.copy(path, train_dir)
    tf.train.update_checkpoint_state(train_dir, os.path.join(train_dir, os.path.basename(prefix)))


def wait_for(condition, what):
    deadline = time.time() + WAIT_SECS
    while not condition():
        assert time.time() < deadline, 'timed out waiting for %s' % what
        time.sleep(0.2)


def results_step(output_dir):
    try:
        with open(os.path.join(output_dir, 'results.json')) as f:
            return json.load(f)['step']
    except (OSError, ValueError, KeyError):
        return None


def test_follow_mode_scores_checkpoints_as_they_appear_then_stops(sample_tfrecords, tmp_path,
                                                                  capsys):
    train_dir, stage, out = (str(tmp_path / name) for name in ('train', 'stage', 'out'))
    os.makedirs(train_dir)
    make_checkpoint(stage, step=1)   # only for its model_info.json, with the run's last step
    model_info.write_model_info(train_dir, **dict(model_info.read_model_info(stage),
                                                  max_number_of_steps=2))
    common = ['--dataset_dir=%s' % sample_tfrecords, '--split=test', '--batch_size=4',
              '--max_num_batches=1']
    status = []
    follower = threading.Thread(target=lambda: status.append(eval_ssd_network.main(
        ['eval_ssd_network.py', '--ckpt_path=%s' % train_dir, '--wait_for_checkpoints',
         '--eval_interval_secs=1', '--timeout=%d' % WAIT_SECS, '--output_dir=%s' % out]
        + common)))
    follower.start()
    try:
        publish(str(tmp_path / 'stage1'), train_dir, step=1, seed=1)
        wait_for(lambda: results_step(out) == 1, 'the evaluation of step 1')
        assert follower.is_alive()   # step 1 is not the last: it waits for more
        publish(str(tmp_path / 'stage2'), train_dir, step=2, seed=2)
    finally:
        follower.join(WAIT_SECS)
    assert not follower.is_alive() and status == [0], capsys.readouterr().err[-2000:]
    stdout = capsys.readouterr().out
    assert 'evaluated step 1 on test (4 images' in stdout
    assert 'evaluated step 2 on test (4 images' in stdout
    assert 'step 2 is the last of the run (max_number_of_steps=2' in stdout

    # Summaries at each checkpoint's step: the scalars of results.json and a PR curve per class.
    events = read_events(os.path.join(train_dir, 'eval_test'))
    with open(os.path.join(out, 'results.json')) as f:
        results = json.load(f)
    assert results['step'] == 2 and results['num_images'] == 4
    for tag, key in (('mAP@0.5/VOC07', 'map_voc07'), ('mAP@0.5/VOC10+', 'map_voc2010'),
                     ('mAP@[.5:.95]/COCO', 'map_coco')):
        assert sorted(events[tag]) == [1, 2]
        assert events[tag][2] == pytest.approx(results[key], abs=1e-6)
    scored = [name for name, entry in results['classes'].items() if entry['num_positives']]
    for name in scored:
        assert events['AP@0.5_VOC07/%s' % name][2] == pytest.approx(
            results['classes'][name]['ap_voc07'], abs=1e-6)
        for bucket, size in results['breakdown']['classes'][name]['by_size'].items():
            tag = 'recall_by_size/%s/%s' % (name, bucket)
            assert (tag in events) == (size['objects'] > 0)
            if size['objects']:
                assert events[tag][2] == pytest.approx(size['found'] / size['objects'], abs=1e-6)
        curve = events['PR/%s/pr_curves' % name][2]
        assert curve.metadata.plugin_data.plugin_name == 'pr_curves'
        data = tf.make_ndarray(curve.tensor)   # rows TP, FP, TN, FN, precision, recall
        assert data.shape == (6, eval_summaries.PR_CURVE_THRESHOLDS)
        entry = results['classes'][name]
        # At threshold 0 every detection counts: the end of the class's PR curve.
        assert data[0, 0] == entry['num_tp'] and data[0, 0] + data[1, 0] == entry['num_detections']
        assert data[5, 0] == pytest.approx(entry['recall'][-1] if entry['recall'] else 0.)
    images = [tag for tag in events if tag.startswith('detections/')]
    assert len(images) == 3 and all(sorted(events[tag]) == [1, 2] for tag in images)
    assert events[images[0]][1].image.width > events[images[0]][1].image.height

    # best/ holds the better of the two (the first on a tie), loadable as a --ckpt_path.
    voc07 = events['mAP@0.5/VOC07']
    best_step = 2 if voc07[2] > voc07[1] else 1
    best = os.path.join(train_dir, 'best')
    assert checkpoints.resolve(best) == os.path.join(best, 'model.ckpt-%d' % best_step)
    assert model_info.read_model_info(best)['class_names'] == model_info.read_model_info(
        train_dir)['class_names']
    with open(os.path.join(best, 'results.json')) as f:
        best_results = json.load(f)
    assert best_results['step'] == best_step
    assert eval_ssd_network.main(['eval_ssd_network.py', '--ckpt_path=%s' % best,
                                  '--output_dir=%s' % (tmp_path / 'rescored')] + common) == 0
    with open(str(tmp_path / 'rescored' / 'results.json')) as f:
        rescored = json.load(f)
    assert rescored['checkpoint'] == os.path.join(best, 'model.ckpt-%d' % best_step)
    # best/ names its checkpoint relative to itself, so the run folder can move.
    assert best_results['checkpoint'] == 'model.ckpt-%d' % best_step
    assert best_results['source_checkpoint'] == 'model.ckpt-%d' % best_step
    assert rescored['map_voc07'] == pytest.approx(best_results['map_voc07'])
    assert rescored['map_coco'] == pytest.approx(best_results['map_coco'])


def test_follow_mode_that_scored_nothing_fails_after_its_timeout(sample_tfrecords, tmp_path,
                                                                  capsys):
    # The folder need not exist yet (the evaluator may start before the trainer); a timeout
    # before any checkpoint is a failure, not a quiet exit 0.
    start = time.time()
    train_dir = tmp_path / 'not_yet'
    status = eval_ssd_network.main([
        'eval_ssd_network.py', '--ckpt_path=%s' % train_dir, '--wait_for_checkpoints',
        '--eval_interval_secs=1', '--timeout=2', '--dataset_dir=%s' % sample_tfrecords,
        '--output_dir=%s' % (tmp_path / 'out')])
    assert status == 1 and 2 <= time.time() - start < 60
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        'error: --timeout=2: no checkpoint appeared in %s after 2 s: nothing was scored'
        % train_dir)


def test_follow_mode_needs_a_training_folder(sample_tfrecords, tmp_path, capsys):
    prefix = make_checkpoint(str(tmp_path), step=1)
    status = eval_ssd_network.main([
        'eval_ssd_network.py', '--ckpt_path=%s' % prefix,
        '--wait_for_checkpoints', '--dataset_dir=%s' % sample_tfrecords])
    assert status == 2
    assert 'error: --wait_for_checkpoints follows a training folder' in capsys.readouterr().err


def _fake_results(map_voc07, num_images=10):
    return {'map_voc07': map_voc07, 'map_voc2010': map_voc07, 'map_coco': map_voc07 / 2,
            'map_coco_50': None, 'map_coco_75': None, 'num_images': num_images,
            'iou_threshold': .5, 'classes': {}}


def test_best_follows_the_better_checkpoint(tmp_path):
    train_dir = str(tmp_path)
    prefixes = [make_checkpoint(train_dir, step=step) for step in (1, 2, 3)]
    settings = {'dataset_name': 'vehicle', 'split_name': 'val'}
    best = best_checkpoint.best_dir(train_dir)

    def best_step():
        with open(os.path.join(best, 'results.json')) as f:
            return json.load(f)['step']

    assert best_checkpoint.update(train_dir, prefixes[0], _fake_results(.2), dict(settings, step=1))
    assert not best_checkpoint.update(train_dir, prefixes[1], _fake_results(.1),
                                      dict(settings, step=2))
    assert best_step() == 1 and checkpoints.resolve(best) == os.path.join(best, 'model.ckpt-1')
    # Another split or image count is no comparison: best/ stays.
    assert not best_checkpoint.update(train_dir, prefixes[1], _fake_results(.9),
                                      dict(settings, step=2, split_name='test'))
    assert not best_checkpoint.update(train_dir, prefixes[1], _fake_results(.9, num_images=5),
                                      dict(settings, step=2))
    assert best_checkpoint.update(train_dir, prefixes[2], _fake_results(.5), dict(settings, step=3))
    assert best_step() == 3 and checkpoints.resolve(best) == os.path.join(best, 'model.ckpt-3')
    assert sorted(os.listdir(best)) == sorted(
        ['checkpoint', 'model_info.json', 'results.json', 'model.ckpt-3.index',
         'model.ckpt-3.data-00000-of-00001'])
    assert sorted(n for n in os.listdir(train_dir) if n.startswith('.')) == []
    # The index is relative: the folder works after a move.
    moved = str(tmp_path / 'moved')
    shutil.copytree(best, moved)
    assert checkpoints.resolve(moved) == os.path.join(moved, 'model.ckpt-3')
    # The detector (and so the exporter: the same inference.load_model) loads it.
    loaded = detector.Detector(best)
    try:
        assert loaded.checkpoint == os.path.join(best, 'model.ckpt-3')
    finally:
        loaded.close()

    # A swap interrupted between its two renames is undone on the next look.
    os.rename(best, os.path.join(train_dir, '.best-old'))
    assert best_checkpoint.read_best(train_dir)['step'] == 3
    assert os.path.isdir(best) and not os.path.exists(os.path.join(train_dir, '.best-old'))


def test_pr_curve_counts_by_hand():
    # 4 positives; detections scored .9 (TP), .6 (FP), .3 (TP): recall .25, .25, .5.
    entry = {'scores': np.array([.9, .6, .3]), 'recall': np.array([.25, .25, .5]),
             'num_positives': 4}
    counts = eval_summaries.pr_curve_counts(entry, num_thresholds=11)   # t = 0, .1, ..., 1
    np.testing.assert_array_equal(counts['true_positive_counts'],
                                  [2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(counts['false_positive_counts'],
                                  [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(counts['false_negative_counts'],
                                  [2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 4])
    np.testing.assert_allclose(counts['precision'][[0, 4, 7, 10]], [2. / 3, .5, 1., 0.])
    np.testing.assert_allclose(counts['recall'][[0, 4, 10]], [.5, .25, 0.])


def test_trainer_evaluates_in_process(sample_tfrecords, tmp_path, capsys):
    train_dir = str(tmp_path / 'train')
    status = train_ssd_network.main([
        'train_ssd_network.py', '--train_model_dir=%s' % train_dir,
        '--dataset_dir=%s' % sample_tfrecords, '--train_or_test=train', '--width_multiplier=0.125',
        '--batch_size=2', '--optimizer=adam', '--learning_rate=0.002',
        '--learning_rate_decay_type=fixed', '--max_number_of_steps=3',
        '--num_preprocessing_threads=2', '--eval_every_n_steps=2', '--eval_split=test',
        '--eval_max_images=3'])
    captured = capsys.readouterr()
    assert status == 0, captured.err[-2000:]
    # Every 2 steps and at the last one.
    assert 'evaluated step 2 on test (3 images' in captured.out
    assert 'evaluated step 3 on test (3 images' in captured.out
    assert model_info.read_model_info(train_dir)['max_number_of_steps'] == 3
    events = read_events(os.path.join(train_dir, 'eval_test'))
    for tag in ('mAP@0.5/VOC07', 'mAP@0.5/VOC10+', 'mAP@[.5:.95]/COCO'):
        assert sorted(events[tag]) == [2, 3]
    assert any(tag.endswith('/pr_curves') for tag in events)
    assert checkpoints.resolve(os.path.join(train_dir, 'best')).startswith(
        os.path.join(train_dir, 'best', 'model.ckpt-'))


def test_trainer_evaluation_flags_are_checked(sample_tfrecords, tmp_path, capsys):
    common = ['train_ssd_network.py', '--train_model_dir=%s' % tmp_path,
              '--dataset_dir=%s' % sample_tfrecords, '--width_multiplier=0.125',
              '--batch_size=2', '--max_number_of_steps=1']
    for extra, message in [(['--eval_every_n_steps=-1'], '--eval_every_n_steps=-1 must be >= 0'),
                           (['--eval_max_images=0'], '--eval_max_images=0 must be >= 1'),
                           (['--eval_every_n_steps=1', '--eval_split='],
                            '--eval_every_n_steps needs --eval_split')]:
        # Bad flag values are usage errors (exit 2), like the rest of the trainer's checks.
        assert train_ssd_network.main(common + extra) == 2
        assert 'error: %s' % message in capsys.readouterr().err
    assert train_ssd_network.main(common + ['--eval_every_n_steps=1', '--eval_split=nosuch']) == 1
    err = capsys.readouterr().err
    assert 'error: --eval_split=nosuch in %s' % sample_tfrecords in err
    assert not os.path.exists(os.path.join(str(tmp_path), 'model.ckpt-1.index'))
    # Validated before anything is written: the folder's files stay as they were.
    assert sorted(os.listdir(str(tmp_path))) == []
