"""eval_ssd_network.py on the generated TFRecords: oracle detections files with hand-derived mAP,
a checkpoint's detections tied to the right images, re-scoring, and bad input."""
import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import detector
import eval_ssd_network
from test.checkpoints import copy_with_info, make_checkpoint
from utils import voc_metric

CLASS_NAMES = ['Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck']


def read_split(tfrecords_dir, split):
    """Ground truth straight from the shards' tf.train.Example protos (not via input_pipeline):
    {file name: (height, width, encoded bytes, boxes [N, 4] pixels, labels [N])}."""
    with open(os.path.join(tfrecords_dir, 'dataset_description.json')) as f:
        files = json.load(f)['splits'][split]['files']
    images = {}
    for name in files:
        for record in tf.io.tf_record_iterator(os.path.join(tfrecords_dir, name)):
            feature = tf.train.Example.FromString(record).features.feature
            height = feature['image/height'].int64_list.value[0]
            width = feature['image/width'].int64_list.value[0]
            boxes = np.stack([feature['image/object/bbox/%s' % key].float_list.value
                              for key in ('ymin', 'xmin', 'ymax', 'xmax')], axis=1)
            images[os.path.basename(feature['image/filename'].bytes_list.value[0].decode())] = (
                height, width, feature['image/encoded'].bytes_list.value[0],
                boxes * [height, width, height, width],
                np.array(feature['image/object/bbox/label'].int64_list.value))
    return images


def oracle_entries(images, drop=None):
    """Detections equal to the ground truth (score 1), without the box ``drop`` = (image, index)."""
    entries = []
    for name, (height, width, _, boxes, labels) in images.items():
        keep = [i for i in range(len(labels)) if (name, i) != drop]
        entries.append({'image': name, 'height': height, 'width': width, 'boxes': boxes[keep],
                        'scores': np.ones(len(keep)), 'classes': labels[keep]})
    return entries


def run_eval(capsys, *args):
    """Runs the CLI in-process: (status, stdout, last stderr line, i.e. after the progress bar)."""
    status = eval_ssd_network.main(['eval_ssd_network.py'] + list(args))
    captured = capsys.readouterr()
    return status, captured.out, (captured.err.strip().splitlines() or [''])[-1]


@pytest.fixture(scope='module')
def checkpoint_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('eval_ckpt'))
    make_checkpoint(directory)
    return directory


def test_oracle_detections_file(sample_tfrecords, tmp_path, capsys):
    images = read_split(sample_tfrecords, 'train')
    path = str(tmp_path / 'oracle.json')
    voc_metric.write_detections_file(path, oracle_entries(images), CLASS_NAMES)
    status, stdout, stderr = run_eval(capsys, '--detections_file=%s' % path,
                                      '--dataset_dir=%s' % sample_tfrecords,
                                      '--split=train', '--output_dir=%s' % tmp_path)
    assert status == 0, stderr
    with open(str(tmp_path / 'results.json')) as f:
        results = json.load(f)
    assert results['num_images'] == len(images)
    assert results['map_voc07'] == pytest.approx(1.) and results['map_voc2010'] == pytest.approx(1.)
    assert results['map_coco'] == pytest.approx(1.) and results['map_coco_75'] == pytest.approx(1.)
    assert 'mAP' in stdout and '1.0000' in stdout and 'AP.5:.95' in stdout
    assert 'where the ground truth went at score >= 0.5' in stdout
    for name, entry in results['breakdown']['classes'].items():
        assert entry['found'] == entry['objects'] == results['classes'][name]['num_positives']

    # Miss one car: its AP becomes the largest recall reached, (k - 1) / k, with precision 1.
    car = CLASS_NAMES.index('Car') + 1
    name, index = next((n, list(v[4]).index(car)) for n, v in images.items() if car in v[4])
    k = sum(int(np.sum(v[4] == car)) for v in images.values())
    voc_metric.write_detections_file(path, oracle_entries(images, drop=(name, index)), CLASS_NAMES)
    assert run_eval(capsys, '--detections_file=%s' % path, '--dataset_dir=%s' % sample_tfrecords,
                    '--split_name=train', '--output_dir=%s' % tmp_path)[0] == 0
    with open(str(tmp_path / 'results.json')) as f:
        results = json.load(f)
    recall = (k - 1.) / k
    assert results['classes']['Car']['ap_voc2010'] == pytest.approx(recall)
    assert results['classes']['Car']['ap_voc07'] == pytest.approx(
        sum(1. for t in np.arange(0., 1.1, 0.1) if t <= recall) / 11.)
    assert results['classes']['Car']['ap_coco'] < 1. and results['map_coco'] < 1.
    breakdown = results['breakdown']['classes']['Car']
    assert (breakdown['found'], breakdown['missed']) == (k - 1, 1)
    scored = [c for c in results['classes'].values() if c['num_positives'] > 0]
    assert results['map_voc2010'] == pytest.approx((len(scored) - 1. + recall) / len(scored))
    assert sorted(os.listdir(str(tmp_path))) == sorted(
        ['oracle.json', 'results.json'] + ['pr_%s.png' % c for c, v in results['classes'].items()
                                           if v['num_positives'] > 0])


def test_checkpoint_detections_belong_to_their_images(sample_tfrecords, checkpoint_dir, tmp_path,
                                                      capsys):
    out = tmp_path / 'eval'
    status, stdout, stderr = run_eval(capsys, '--ckpt_path=%s' % checkpoint_dir,
                                      '--dataset_dir=%s' % sample_tfrecords,
                                      '--batch_size=2', '--select_threshold=0.2',
                                      '--keep_top_k=20', '--output_dir=%s' % out,
                                      '--precision=float32')   # as the Detector below
    assert status == 0, stderr
    with open(str(out / 'results.json')) as f:
        results = json.load(f)
    images = read_split(sample_tfrecords, 'test')
    assert results['num_images'] == len(images) and results['split_name'] == 'test'
    saved, _ = voc_metric.read_detections_file(str(out / 'detections.json'))
    assert sorted(saved) == sorted(images)

    # The detector's own graph on the record's JPEG bytes gives the same pixel boxes.
    single = detector.Detector(checkpoint_dir, select_threshold=0.2, keep_top_k=20)
    try:
        for name, (height, width, encoded, _, _) in images.items():
            _, boxes, scores, classes = single.run(encoded)
            assert (saved[name]['height'], saved[name]['width']) == (height, width)
            assert len(scores) > 0
            np.testing.assert_allclose(saved[name]['boxes'], boxes, atol=1e-2)
            np.testing.assert_allclose(saved[name]['scores'], scores, atol=1e-5)
            np.testing.assert_array_equal(saved[name]['classes'], classes)
    finally:
        single.close()

    # Re-scoring the written detections reproduces the numbers.
    status, _, stderr = run_eval(capsys, '--detections_file=%s' % (out / 'detections.json'),
                                 '--dataset_dir=%s' % sample_tfrecords,
                                 '--output_dir=%s' % (tmp_path / 'rescored'))
    assert status == 0, stderr
    with open(str(tmp_path / 'rescored' / 'results.json')) as f:
        rescored = json.load(f)
    for key in ('map_voc07', 'map_voc2010'):
        assert rescored[key] == pytest.approx(results[key])


def test_the_breakdown_counts_detections_from_its_threshold(sample_tfrecords, tmp_path, capsys):
    """The oracle's boxes at score 0.4: missed at the default 0.5, found from 0.4 down."""
    images = read_split(sample_tfrecords, 'train')
    entries = oracle_entries(images)
    for entry in entries:
        entry['scores'] = entry['scores'] * 0.4
    path = str(tmp_path / 'oracle.json')
    voc_metric.write_detections_file(path, entries, CLASS_NAMES)
    found = {}
    for threshold in ('0.5', '0.4'):
        status, stdout, stderr = run_eval(capsys, '--detections_file=%s' % path,
                                          '--dataset_dir=%s' % sample_tfrecords, '--split=train',
                                          '--output_dir=%s' % tmp_path,
                                          '--breakdown_threshold=%s' % threshold)
        assert status == 0, stderr
        assert 'where the ground truth went at score >= %s' % threshold in stdout
        with open(str(tmp_path / 'results.json')) as f:
            breakdown = json.load(f)['breakdown']
        assert breakdown['score_threshold'] == float(threshold)
        found[threshold] = {name: (entry['found'], entry['missed'], entry['objects'])
                            for name, entry in breakdown['classes'].items() if entry['objects']}
    assert found['0.5'] and all(f == 0 and m == n for f, m, n in found['0.5'].values())
    assert all(f == n and m == 0 for f, m, n in found['0.4'].values())
    status, _, stderr = run_eval(capsys, '--detections_file=%s' % path, '--split=train',
                                 '--dataset_dir=%s' % sample_tfrecords,
                                 '--breakdown_threshold=1.5')
    assert status == 2 and stderr == 'error: --breakdown_threshold must be in [0, 1], got 1.5'


def test_max_num_batches_limits_images(sample_tfrecords, tmp_path, capsys):
    path = str(tmp_path / 'oracle.json')
    voc_metric.write_detections_file(path, oracle_entries(read_split(sample_tfrecords, 'train')))
    status, stdout, _ = run_eval(capsys, '--detections_file=%s' % path,
                                 '--dataset_dir=%s' % sample_tfrecords, '--split=train',
                                 '--batch_size=3', '--max_num_batches=2',
                                 '--output_dir=%s' % tmp_path)
    assert status == 0 and '6 images' in stdout


def test_bad_input(sample_tfrecords, checkpoint_dir, tmp_path, capsys):
    images = read_split(sample_tfrecords, 'test')
    path = str(tmp_path / 'detections.json')
    entries = oracle_entries(images)
    common = ('--dataset_dir=%s' % sample_tfrecords, '--output_dir=%s' % tmp_path)

    voc_metric.write_detections_file(path, entries[1:])
    status, _, stderr = run_eval(capsys, '--detections_file=%s' % path, *common)
    assert status == 1 and stderr.startswith('error: %s has no entry for 1 of the evaluated images'
                                             % path)

    entries[0]['height'] += 1
    voc_metric.write_detections_file(path, entries)
    status, _, stderr = run_eval(capsys, '--detections_file=%s' % path, *common)
    assert status == 1 and 'is %dx%d (height x width) there' % (entries[0]['height'],
                                                               entries[0]['width']) in stderr

    voc_metric.write_detections_file(path, oracle_entries(images), class_names=['a', 'b'])
    status, _, stderr = run_eval(capsys, '--detections_file=%s' % path, *common)
    assert status == 1 and "class_names ['a', 'b'] differ" in stderr

    status, _, stderr = run_eval(capsys, '--detections_file=%s' % path, '--split=val',
                                 *common)
    assert status == 1 and "has no split 'val'" in stderr

    status, _, stderr = run_eval(capsys, '--detections_file=%s' % path, '--ckpt_path=x', *common)
    assert status == 2 and 'exactly one of --ckpt_path' in stderr

    status, _, stderr = run_eval(capsys, '--detections_file=%s' % path, '--split_name=train',
                                 '--train_or_test=test', *common)
    assert status == 2 and 'disagree' in stderr

    other = copy_with_info(checkpoint_dir, str(tmp_path / 'other'),
                           class_names=['a', 'b', 'c', 'd', 'e'])
    status, _, stderr = run_eval(capsys, '--ckpt_path=%s' % other, *common)
    assert status == 1 and "detects ['a', 'b', 'c', 'd', 'e'] (model_info.json)" in stderr


def test_a_split_shorter_than_its_description_is_an_error(sample_tfrecords, checkpoint_dir,
                                                           tmp_path, capsys):
    """A 0-byte shard while dataset_description.json lists its images: no quiet '0 images'."""
    import shutil
    import train_ssd_network
    records = str(tmp_path / 'records')
    shutil.copytree(sample_tfrecords, records)
    shard = os.path.join(records, 'vehicle_test_000.tfrecord')
    open(shard, 'wb').close()
    status = eval_ssd_network.main(['eval_ssd_network.py', '--ckpt_path=%s' % checkpoint_dir,
                                    '--dataset_dir=%s' % records, '--split=test',
                                    '--precision=float32', '--output_dir=%s' % (tmp_path / 'o')])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err[-1] == (
        'error: split test: read 0 of the 5 images dataset_description.json lists (empty shard: '
        '%s): convert the split again' % shard), err
    assert not os.path.exists(str(tmp_path / 'o' / 'results.json'))
    # The trainer's evaluation split is checked before the first step.
    status = train_ssd_network.main([
        'train_ssd_network.py', '--train_model_dir=%s' % (tmp_path / 'run'),
        '--dataset_dir=%s' % records, '--width_multiplier=0.125', '--batch_size=2',
        '--max_number_of_steps=1', '--precision=float32', '--eval_every_n_steps=1',
        '--eval_split=test'])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and err == ['error: --eval_split=test: %s is empty but '
                                   'dataset_description.json lists 5 images: convert the split '
                                   'again' % shard], err
    assert not os.path.exists(str(tmp_path / 'run'))   # a refused run writes nothing
