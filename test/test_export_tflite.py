"""export_tflite.py and the LiteRT runner: each quantization exports and runs, the float model
detects what the TensorFlow graph detects, int8 what float detects, MediaPipe runs the file, the
evaluator and detector score it, and bad input gets one line."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf2
import tensorflow.compat.v1 as tf

import detector
import eval_ssd_network
import export_tflite
from model import inference
from preprocessing import np_transform
from model import tflite_runner
from test import checkpoints
from utils import boxes as boxes_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

THRESHOLDS = dict(select_threshold=0.5, nms_threshold=0.45, max_detections=100)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A small SSD trained on the toy scene (it finds its two objects confidently)."""
    directory = str(tmp_path_factory.mktemp('tflite_trained'))
    whitened = checkpoints.toy_scene() - np.asarray(np_transform.VGG_MEANS, np.float32)
    return checkpoints.make_checkpoint(directory, step=40, train_on=(
        whitened, checkpoints.TOY_LABELS, checkpoints.TOY_BOXES))


@pytest.fixture(scope='module')
def models(trained, sample_tfrecords, tmp_path_factory):
    """{quantization: .tflite path} of the trained model, int8 calibrated on generated data."""
    base = str(tmp_path_factory.mktemp('tflite_models'))
    paths = {}
    for quantization in export_tflite.QUANTIZATIONS:
        paths[quantization], _ = export_tflite.export(
            trained, os.path.join(base, quantization), quantization=quantization,
            calibration_dataset_dir=sample_tfrecords, calibration_split_name='train',
            num_calibration_images=8, **THRESHOLDS)
    return paths


def _graph_detections(prefix, image):
    """model/inference.py's detect on one uint8 picture of the network size: normalised boxes."""
    with tf.Graph().as_default():
        net, _, _ = inference.load_model(prefix)
        inputs = image.astype(np.float32) - np.asarray(np_transform.VGG_MEANS, np.float32)
        detections = inference.detect(net, tf.constant(inputs[None]), tf.constant([[1, 1]]),
                                      select_threshold=0.5, nms_threshold=0.45,
                                      keep_top_k=100)
        with tf.Session() as sess:
            inference.restore(sess, prefix)
            out = sess.run({key: detections[key] for key in inference.DETECTION_KEYS})
    count = int(out['num_detections'][0])
    return (out['detection_boxes'][0, :count], out['detection_scores'][0, :count],
            out['detection_classes'][0, :count])


def _normalised(detections, side=300.):
    boxes, scores, classes = detections
    return boxes / side, scores, classes


def test_each_quantization_exports_and_runs(models):
    sizes = {q: os.path.getsize(path) for q, path in models.items()}
    assert sizes['float16'] < 0.6 * sizes['none'] and sizes['int8'] < 0.35 * sizes['none'], sizes
    for quantization, path in models.items():
        model = tflite_runner.TFLiteDetector(path)
        assert model.input_dtype == (np.uint8 if quantization == 'int8' else np.float32)
        assert model.input_shape == (300, 300) and model.max_detections == 100
        assert model.class_names == checkpoints.CLASS_NAMES
        _, scores, _ = model.detect_array(checkpoints.toy_scene())
        assert len(scores) >= 2, quantization
        info = json.load(open(os.path.join(os.path.dirname(path), 'model_info.json')))
        assert info['quantization'] == quantization and info['select_threshold'] == 0.5
        with open(os.path.join(os.path.dirname(path), 'labels.txt')) as f:
            assert f.read().split('\n')[:-1] == checkpoints.CLASS_NAMES


def test_float_model_detects_what_the_graph_detects(trained, models):
    scene = checkpoints.toy_scene()
    expected = _graph_detections(trained, scene)
    assert len(expected[1]) >= 2
    for quantization in ('none', 'float16'):
        boxes, scores, classes = _normalised(
            tflite_runner.TFLiteDetector(models[quantization]).detect_array(scene))
        assert list(classes) == list(expected[2]), quantization
        tolerance = 1e-3 if quantization == 'none' else 1e-2
        np.testing.assert_allclose(boxes, expected[0], atol=tolerance)
        np.testing.assert_allclose(scores, expected[1], atol=tolerance)


def test_float_model_agrees_on_a_random_picture(tmp_path, capsys):
    """A random model on noise gives dozens of overlapping boxes: decoding, anchors, class
    offset and NMS must all match for the top ones to agree. Exported by the command line."""
    prefix = checkpoints.make_checkpoint(str(tmp_path / 'ckpt'), seed=5)
    assert export_tflite.main(['export_tflite.py', '--ckpt_path=%s' % (tmp_path / 'ckpt'),
                               '--export_dir=%s' % (tmp_path / 'out'), '--model_name=random']) == 0
    path = str(tmp_path / 'out' / 'random.tflite')
    assert capsys.readouterr().out.startswith('exported %s (' % path)
    picture = np.random.RandomState(3).randint(0, 256, (300, 300, 3)).astype(np.uint8)
    expected_boxes, expected_scores, expected_classes = _graph_detections(prefix, picture)
    boxes, scores, classes = _normalised(
        tflite_runner.TFLiteDetector(path).detect_array(picture))
    top = min(10, len(expected_scores))
    assert top >= 5 and len(scores) == len(expected_scores)
    np.testing.assert_allclose(scores[:top], expected_scores[:top], atol=1e-3)
    np.testing.assert_allclose(boxes[:top], expected_boxes[:top], atol=1e-3)
    assert list(classes[:top]) == list(expected_classes[:top])


def test_int8_finds_the_top_detections_of_float(models):
    """The same objects, classes and nearly the same boxes: this 1/8-width model has few
    channels per layer, so int8 rounding moves its boxes more than a full-width model's."""
    scene = checkpoints.toy_scene()
    float_boxes, float_scores, float_classes = tflite_runner.TFLiteDetector(
        models['none']).detect_array(scene)
    int8_boxes, int8_scores, int8_classes = tflite_runner.TFLiteDetector(
        models['int8']).detect_array(scene)
    assert sorted(float_classes[:2]) == sorted(checkpoints.TOY_LABELS)
    assert sorted(int8_classes[:2]) == sorted(checkpoints.TOY_LABELS)
    for box, score, label in zip(float_boxes[:2], float_scores[:2], float_classes[:2]):
        same = np.flatnonzero(int8_classes[:2] == label)
        iou = boxes_lib.iou(box[None], int8_boxes[same])[0]
        assert iou.max() >= 0.75, iou
        assert abs(int8_scores[same[iou.argmax()]] - score) < 0.1


def test_mediapipe_object_detector_runs_the_file(models):
    export_tflite.mediapipe_protobuf_compat()
    mediapipe = pytest.importorskip('mediapipe')
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core import base_options
    scene = checkpoints.toy_scene()
    for quantization in ('none', 'int8'):
        options = vision.ObjectDetectorOptions(
            base_options=base_options.BaseOptions(model_asset_path=models[quantization]),
            score_threshold=0.5)
        with vision.ObjectDetector.create_from_options(options) as mp_detector:
            result = mp_detector.detect(mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB,
                                                        data=np.ascontiguousarray(scene)))
        boxes, scores, classes = tflite_runner.TFLiteDetector(
            models[quantization]).detect_array(scene)
        assert len(result.detections) == len(scores) >= 2
        for found, box, score, label in zip(result.detections, boxes, scores, classes):
            category = found.categories[0]
            assert category.category_name == checkpoints.CLASS_NAMES[label - 1]
            assert abs(category.score - score) < 1e-4
            b = found.bounding_box
            mp_box = np.array([b.origin_y, b.origin_x, b.origin_y + b.height,
                               b.origin_x + b.width], np.float32)
            assert boxes_lib.iou(mp_box[None], box[None])[0, 0] >= 0.9


def test_evaluator_and_detector_score_the_tflite_model(trained, models, sample_tfrecords,
                                                       tmp_path, capsys):
    """eval_ssd_network.py --tflite_path gives the checkpoint's detections inside the images of
    the same split."""
    common = ['--dataset_dir=%s' % sample_tfrecords, '--split=test', '--max_num_batches=1',
              '--batch_size=4']
    assert eval_ssd_network.main(['eval', '--ckpt_path=%s' % trained, '--precision=float32',
                                  '--select_threshold=0.5',
                                  '--keep_top_k=100', '--output_dir=%s' % (tmp_path / 'ckpt')]
                                 + common) == 0
    assert eval_ssd_network.main(['eval', '--tflite_path=%s' % models['none'],
                                  '--output_dir=%s' % (tmp_path / 'tflite')] + common) == 0
    printed = capsys.readouterr().out
    assert 'mAP' in printed
    files = [json.load(open(str(tmp_path / name / 'detections.json')))
             for name in ('ckpt', 'tflite')]
    ckpt_images, tflite_images = [{image['image']: image for image in f['images']}
                                  for f in files]
    assert sorted(ckpt_images) == sorted(tflite_images) and len(ckpt_images) == 4
    # The graph clips the boxes to the image before NMS; the op runs NMS on the boxes as decoded
    # and the runner clips them after. Where a box crosses the border its overlaps differ, so NMS
    # may keep another of two overlapping candidates there: compare the boxes inside the image.
    compared = 0
    for name in ckpt_images:
        for ours, theirs in ((ckpt_images[name], tflite_images[name]),
                             (tflite_images[name], ckpt_images[name])):
            others = list(zip(np.reshape(theirs['boxes'], (-1, 4)), theirs['scores'],
                              theirs['classes']))
            for box, score, label in zip(np.reshape(ours['boxes'], (-1, 4)), ours['scores'],
                                         ours['classes']):
                if not _inside(box, ours['height'], ours['width']):
                    continue
                compared += 1
                assert any(other_label == label and abs(other_score - score) <= 2e-3
                           and np.abs(other_box - box).max() <= 0.5
                           for other_box, other_score, other_label in others), (name, box, score)
    assert compared >= 6   # both ways: the split's images hold several such detections
    picture = str(tmp_path / 'scene.png')
    cv2.imwrite(picture, cv2.cvtColor(checkpoints.toy_scene(), cv2.COLOR_RGB2BGR))
    assert detector.main(['detector.py', '--noshow', '--tflite_path=%s' % models['int8'],
                          '--image_path=%s' % picture, '--output_dir=%s' % tmp_path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('scene.png (300x300): ')
    assert {line.split()[0] for line in lines[1:]} >= {'Bus', 'Car'}


def _inside(box, height, width, margin=1.):
    """Whether a pixel box ``[ymin, xmin, ymax, xmax]`` keeps ``margin`` from every border."""
    ymin, xmin, ymax, xmax = box
    return min(ymin, xmin) > margin and ymax < height - margin and xmax < width - margin


def _one_line_error(capsys, status, expected_status=1):
    # The one other line a tool may print on stderr: which precision --precision=auto chose.
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith('precision: ')]
    assert status == expected_status and len(err) == 1 and err[0].startswith('error: '), err
    return err[0]


def test_a_checkpoint_that_is_not_an_ssd_of_this_toolkit(tmp_path, capsys):
    with tf.Graph().as_default():
        tf.get_variable('classifier/weights', [3, 3])
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / 'other' / 'model.ckpt'))
    status = export_tflite.main(['export_tflite.py', '--ckpt_path=%s' % prefix,
                                 '--export_dir=%s' % (tmp_path / 'out')])
    assert 'model_info.json not found' in _one_line_error(capsys, status)
    # The same checkpoint with a model_info.json claiming an SSD of this toolkit:
    with open(str(tmp_path / 'other' / 'model_info.json'), 'w') as f:
        json.dump({'model_name': 'ssd_vgg_300', 'num_classes': 6, 'width_multiplier': 0.125,
                   'class_names': checkpoints.CLASS_NAMES}, f)
    status = export_tflite.main(['export_tflite.py', '--ckpt_path=%s' % prefix,
                                 '--export_dir=%s' % (tmp_path / 'out')])
    assert prefix in _one_line_error(capsys, status)
    assert not os.path.exists(str(tmp_path / 'out' / 'ssd_vgg_300.tflite'))


@pytest.mark.parametrize('flags, message', [
    ([], '--quantization=int8 needs --calibration_dataset_dir'),
    (['--calibration_dataset_dir=%(missing)s'], 'no such folder'),
    (['--calibration_dataset_dir=%(records)s', '--calibration_split=nosuch'], "no split 'nosuch'"),
    (['--calibration_dataset_dir=%(empty)s', '--calibration_split=empty'], 'holds no'),
])
def test_a_missing_or_empty_calibration_split(trained, sample_tfrecords, tmp_path, capsys,
                                              flags, message):
    empty = tmp_path / 'empty'
    empty.mkdir()
    (empty / 'dataset_description.json').write_text(json.dumps(
        {'dataset_name': 'vehicle', 'class_names': checkpoints.CLASS_NAMES,
         'splits': {'empty': {'num_samples': 0, 'num_objects': 0, 'files': []}}}))
    values = dict(missing=tmp_path / 'nowhere', records=sample_tfrecords, empty=empty)
    status = export_tflite.main(['export_tflite.py', '--ckpt_path=%s' % trained,
                                 '--quantization=int8', '--export_dir=%s' % (tmp_path / 'out')]
                                + [flag % values for flag in flags])
    # A missing flag is a usage error (2); each other line names the flag at fault.
    line = _one_line_error(capsys, status, expected_status=1 if flags else 2)
    flag = flags[0].split('=')[0] if len(flags) == 1 else '--calibration_split'
    assert message in line and (not flags or flag in line), line
    assert not os.path.exists(str(tmp_path / 'out'))


def test_a_tflite_file_that_is_not_a_detector_of_this_layout(tmp_path, capsys):
    from tensorflow.python.eager import context
    with context.eager_mode():
        double = tf.function(lambda x: x * 2., input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        converter = tf2.lite.TFLiteConverter.from_concrete_functions(
            [double.get_concrete_function()], None)
        (tmp_path / 'double.tflite').write_bytes(converter.convert())
    (tmp_path / 'text.tflite').write_text('not a model')
    picture = str(tmp_path / 'scene.png')
    cv2.imwrite(picture, checkpoints.toy_scene())
    for name, message in (('double.tflite', "not an SSD detector of this toolkit's layout"),
                          ('text.tflite', 'not a TFLite model'),
                          ('missing.tflite', 'no such file')):
        path = str(tmp_path / name)
        status = detector.main(['detector.py', '--noshow', '--tflite_path=%s' % path,
                                '--image_path=%s' % picture, '--output_dir=%s' % tmp_path])
        line = _one_line_error(capsys, status)
        assert path in line and message in line, line


def test_no_log_lines_but_the_toolkits(models, trained, sample_tfrecords, tmp_path, capfd):
    """The int8 converter's quantizer settings and LiteRT's XNNPACK notice are held back."""
    status = export_tflite.main([
        'export_tflite.py', '--ckpt_path=%s' % trained, '--quantization=int8',
        '--calibration_dataset_dir=%s' % sample_tfrecords, '--num_calibration_images=2',
        '--export_dir=%s' % (tmp_path / 'int8')])
    captured = capfd.readouterr()
    assert status == 0 and 'fully_quantize' not in captured.err, captured.err[-2000:]
    picture = str(tmp_path / 'scene.png')
    cv2.imwrite(picture, cv2.cvtColor(checkpoints.toy_scene(), cv2.COLOR_RGB2BGR))
    env = dict(os.environ, MPLBACKEND='Agg')
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'detector.py'), '--noshow',
         '--tflite_path=%s' % models['int8'], '--image_path=%s' % picture,
         '--output_dir=%s' % (tmp_path / 'out')],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # Only the toolkit's lines: which precision --precision=auto chose, and the summary.
    assert [line for line in result.stderr.strip().splitlines()
            if not line.startswith('precision: ')] == [
        '1 of 1 file processed, pictures in %s' % (tmp_path / 'out')], result.stderr
