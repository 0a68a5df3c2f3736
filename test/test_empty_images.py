"""Background-only images: the converter keeps them on request (--keep_empty_images), the
trainer's pipeline encodes them as all-background anchors that still teach negatives, and the
evaluator scores detections on them as false positives."""
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import train_ssd_network
from datasets import dataset_factory
from datasets import records
from datasets.write_dataset import dataset_to_tfrecords
from datasets.write_dataset import sample_data
from datasets.write_dataset import voc_reader
from datasets.write_dataset import voc_writer
from deployment import model_deploy
from model import evaluation
from model import inference
from nets import nets_factory
from test.conftest import REPO_ROOT
from training import graph
from utils import voc_metric

EMPTY_IDS = ('000001', '000004', '000006')   # their annotations lose every object


@pytest.fixture(scope='module')
def voc_with_empty_images(tmp_path_factory):
    """A generated VOC folder of 8 images, every one in split ``all`` (ImageSets/Main/all.txt),
    three of them annotated without any object."""
    folder = str(tmp_path_factory.mktemp('voc_empty'))
    sample_data.generate_voc_dataset(folder, num_images=8, seed=11)
    for image_id in EMPTY_IDS:
        path = os.path.join(folder, 'Annotations', image_id + '.xml')
        size = voc_reader.parse_annotation(path).size
        with open(path, 'w') as f:
            f.write(voc_writer.annotation_xml(image_id + '.jpg', size[0], size[1], []))
    with open(os.path.join(folder, 'ImageSets', 'Main', 'all.txt'), 'w') as f:
        f.write(''.join('%06d\n' % i for i in range(8)))
    return folder


@pytest.fixture(scope='module')
def kept_records(voc_with_empty_images, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('records_empty'))
    summary = dataset_to_tfrecords.convert(voc_with_empty_images, out, 'vehicle', split='all',
                                           show_progress=False, num_workers=0,
                                           keep_empty_images=True)
    return out, summary


def _parsed(records_dir, split):
    with open(os.path.join(records_dir, 'dataset_description.json')) as f:
        files = json.load(f)['splits'][split]['files']
    return [records.parse_proto(raw) for name in files
            for _, raw in records.iter_records(os.path.join(records_dir, name))]


def test_converter_skips_them_by_default_and_keeps_them_on_request(voc_with_empty_images,
                                                                   kept_records, tmp_path):
    skipped = dataset_to_tfrecords.convert(voc_with_empty_images, str(tmp_path / 'skipped'),
                                           'vehicle', split='all', show_progress=False,
                                           num_workers=0)
    assert skipped.records_written == 5
    assert len(skipped.skipped[voc_reader.SKIP_NO_OBJECTS]) == 3
    assert '--keep_empty_images keeps it' in skipped.skipped[voc_reader.SKIP_NO_OBJECTS][0]

    records_dir, kept = kept_records
    assert kept.records_written == 8 and kept.images_skipped == 0
    assert kept.events[voc_reader.EVENT_EMPTY_KEPT] == 3
    assert kept.num_objects == skipped.num_objects
    parsed = {os.path.splitext(p['filename'])[0]: p for p in _parsed(records_dir, 'all')}
    assert sorted(parsed) == ['%06d' % i for i in range(8)]
    for image_id, record in parsed.items():
        empty = image_id in EMPTY_IDS
        assert (len(record['labels']) == 0) == empty
        assert record['bboxes'].shape == ((0, 4) if empty else (len(record['labels']), 4))


def test_command_line_flag(voc_with_empty_images, tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'datasets/write_dataset/dataset_to_tfrecords.py'),
         '--dataset_dir=%s' % voc_with_empty_images, '--output_dir=%s' % tmp_path,
         '--split=all', '--keep_empty_images', '--num_workers=1'],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'vehicle/all: 8 records' in result.stdout
    assert '%s: 3' % voc_reader.EVENT_EMPTY_KEPT in result.stdout


def _options(records_dir, **overrides):
    flag_values = train_ssd_network.define_flags().values
    values = {name: flag_values[name].default for name in flag_values}
    values.update(train_model_dir='/tmp/unused', dataset_dir=records_dir, batch_size=8,
                  num_preprocessing_threads=1, seed=1, data_format='NHWC')
    values.update(overrides)
    return types.SimpleNamespace(**values)


def test_training_pipeline_encodes_them_as_background_and_mines_their_negatives(kept_records):
    records_dir, _ = kept_records
    spec = dataset_factory.get_dataset('vehicle', 'all', records_dir)
    net = nets_factory.build_network('ssd_vgg_300', spec.num_classes, 0.125)
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        iterator, batch = graph.build_batches(
            _options(records_dir), spec, net, net.anchors(net.params.img_shape),
            model_deploy.DeploymentConfig(clone_on_cpu=True))
        images, labels, _, gclasses, glocalisations, gscores = batch
        with inference.slim.arg_scope(net.arg_scope()):
            _, localisations, logits, _ = net.net(images, is_training=False)
        net.losses(logits, localisations, gclasses, glocalisations, gscores)
        parts = {t.op.name.split('/')[-1]: t for t in tf.losses.get_losses()}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(iterator.initializer)
            out_labels, out_classes, out_scores, out_parts = sess.run(
                [labels, gclasses, gscores, parts])
    flat = lambda layers: np.concatenate([t.reshape(t.shape[0], -1) for t in layers], axis=1)
    classes, scores = flat(out_classes), flat(out_scores)
    empty = (out_labels > 0).sum(axis=1) == 0
    assert empty.any() and (~empty).any()   # 8 draws (seeded) of the 8 images, 3 of them empty
    assert np.all(classes[empty] == 0) and np.all(scores[empty] == 0)
    assert np.all((classes[~empty] > 0).sum(axis=1) > 0)
    assert all(np.isfinite(value) for value in out_parts.values())
    assert out_parts['cross_entropy_neg'] > 0


def test_trainer_runs_on_them(kept_records, tmp_path):
    records_dir, _ = kept_records
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'train_ssd_network.py'),
         '--train_model_dir=%s' % tmp_path, '--dataset_dir=%s' % records_dir,
         '--dataset_name=vehicle', '--train_or_test=all', '--width_multiplier=0.125',
         '--batch_size=4', '--max_number_of_steps=2', '--log_every_n_steps=1',
         '--num_preprocessing_threads=1', '--save_summaries_secs=600'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    assert result.returncode == 0, result.stderr[-2000:]
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith('model.ckpt-2')


def test_evaluator_counts_detections_on_them_as_false_positives(kept_records, tmp_path):
    records_dir, _ = kept_records
    spec = dataset_factory.get_dataset('vehicle', 'all', records_dir)
    parsed = _parsed(records_dir, 'all')

    def detections_file(name, on_empty):
        """Every object found exactly (score 0.9); ``on_empty``: one Bus at 0.95 on each empty
        image."""
        entries = []
        for record in parsed:
            size = [record['height'], record['width']] * 2
            boxes = (record['bboxes'] * size).tolist()
            scores, classes = [0.9] * len(boxes), record['labels'].tolist()
            if not len(boxes) and on_empty:
                boxes, scores, classes = [[10., 10., 60., 80.]], [0.95], [2]
            entries.append({'image': record['filename'], 'height': record['height'],
                            'width': record['width'], 'boxes': boxes, 'scores': scores,
                            'classes': classes})
        path = str(tmp_path / name)
        voc_metric.write_detections_file(path, entries, spec.class_names)
        return path

    clean = evaluation.evaluate_detections_file(detections_file('clean.json', False), spec)
    polluted = evaluation.evaluate_detections_file(detections_file('fp.json', True), spec)
    clean, polluted = clean.evaluate(), polluted.evaluate()
    assert clean['classes']['Bus']['ap_voc2010'] == pytest.approx(1.0)
    assert polluted['classes']['Bus']['ap_voc2010'] < clean['classes']['Bus']['ap_voc2010'] - 0.01
    for name in polluted['classes']:   # the other classes are untouched
        if name != 'Bus':
            assert polluted['classes'][name]['ap_voc2010'] == clean['classes'][name]['ap_voc2010']
