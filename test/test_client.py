"""serving.clients.client / serving.clients.protocols: gRPC and REST answers through the local model server equal
the in-process SavedModel's, the NumPy path (detected_model) agrees with the graph path, the CLI
prints detector.py's lines without TensorFlow for REST, and the mAP mode reads records right."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from serving.clients import client as client_lib
from serving.clients import protocols
from test.conftest import REPO_ROOT
from test.test_export import CLASS_NAMES, KEEP_TOP_K, SELECT_THRESHOLD, exported_model, \
    run_signature
from utils import detection_io

PYTHON = sys.executable


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    """(export case, running local server) for the whole module."""
    from serving.server import model_server
    case = exported_model(tmp_path_factory)
    server = model_server.start_server('ssd', os.path.join(case[1], 'ssd'), poll_wait_seconds=60)
    yield case, server
    server.stop()


def assert_same_detections(got, expected, score_tol=0.01, box_tol=1.):
    """Every detection has one partner of the same class, score within ``score_tol`` and box
    within ``box_tol`` pixels (one-to-one; order free among near-equal scores)."""
    assert len(got.scores) == len(expected.scores)
    free = np.ones(len(got.scores), bool)
    for box, score, label in zip(expected.boxes, expected.scores, expected.classes):
        partners = free & (got.classes == label) & (np.abs(got.scores - score) <= score_tol) & \
            (np.abs(got.boxes - box).max(axis=1) <= box_tol)
        assert partners.any(), 'no partner for class %d score %.4f box %s' % (label, score, box)
        free[np.argmax(partners)] = False


def _transport(server, protocol):
    port = server.grpc_port if protocol == 'grpc' else server.rest_api_port
    return protocols.make_transport(protocol, 'localhost:%d' % port)


def test_numpy_preprocessing_matches_the_graph(served):
    import tensorflow.compat.v1 as tf
    from model import inference
    image = client_lib.decode_image(open(served[0][3][1], 'rb').read())  # the PNG (150x200)
    with tf.Graph().as_default(), tf.Session() as sess:
        expected, _ = sess.run(inference.preprocess_for_detection(tf.constant(image),
                                                                  client_lib.PARAMS))
    # crop_and_resize places samples through float32 box coordinates: ~3e-3 of a grey level.
    np.testing.assert_allclose(client_lib.preprocess(image), expected, atol=1e-2)


@pytest.mark.parametrize('protocol', ['grpc', 'rest'])
def test_server_answers_equal_in_process(served, protocol):
    (_, _, version_dir, image_paths), server = served
    encoded = [open(path, 'rb').read() for path in image_paths]
    image = np.random.RandomState(5).uniform(-120., 130., (300, 300, 3)).astype(np.float32)
    with _transport(server, protocol) as transport:
        for signature, feeds in (('serving_default', {'encoded_image': encoded}),
                                 ('detected_model', {'images': image})):
            expected = run_signature(version_dir, signature, feeds)
            wire = {key: value if key != 'encoded_image' else np.array(value, dtype=object)
                    for key, value in feeds.items()}
            answer = transport.predict('ssd', wire, signature)
            assert sorted(answer) == sorted(expected)
            for key in expected:
                assert answer[key].shape == expected[key].shape, key
                # gRPC carries the raw bytes; REST's JSON keeps float32's 7 significant digits.
                np.testing.assert_allclose(answer[key], expected[key], rtol=1e-6, atol=1e-6,
                                           err_msg=key)


@pytest.mark.parametrize('protocol', ['grpc', 'rest'])
def test_detected_model_path_agrees_with_serving_default(served, protocol):
    # The PNG only: OpenCV's and TensorFlow's JPEG decoders differ by up to ~10 grey levels
    # (different IDCTs), which a randomly initialised network amplifies; lossless PNG decodes
    # identically, so any difference here would come from the client's own code.
    (_, _, _, image_paths), server = served
    data = open(image_paths[1], 'rb').read()
    with _transport(server, protocol) as transport:
        expected = client_lib.DetectionClient(transport, 'ssd', 'serving_default').detect(data)
        got = client_lib.DetectionClient(transport, 'ssd', 'detected_model',
                                         select_threshold=SELECT_THRESHOLD,
                                         keep_top_k=KEEP_TOP_K).detect(data)
    assert len(expected.scores) > 0
    # Resamplers differ in float rounding only: same boxes, classes and scores, up to the order
    # of near-equal scores.
    assert_same_detections(got, expected)


def test_format_matches_detector():
    # detector.py and the client both print through utils.detection_io.format_detections.
    detections = client_lib.Detections(boxes=np.array([[1.25, 2., 30.5, 40.]], np.float32),
                                       scores=np.array([0.8765], np.float32),
                                       classes=np.array([3], np.int64))
    expected = detection_io.format_detections('a.jpg', 50, 60, detections.boxes,
                                              detections.scores, detections.classes, CLASS_NAMES)
    assert detection_io.format_detections('a.jpg', 50, 60, *detections,
                                          class_names=CLASS_NAMES) == expected
    assert expected[1].split()[0] == 'Car'
    assert expected == ['a.jpg (60x50): 1 detection',
                        '  Car            0.877  [ymin 1.2, xmin 2.0, ymax 30.5, xmax 40.0]']
    # Class ids without a name print as the number.
    assert detection_io.format_detections('a.jpg', 50, 60, *detections)[1].split()[0] == '3'


def _run_client_without_tensorflow(*args):
    """``python -m serving.client ARGS`` in a process where importing TensorFlow fails."""
    code = ('import runpy, sys; sys.modules["tensorflow"] = None; '
            'sys.argv = ["serving.client"] + sys.argv[1:]; '
            'runpy.run_module("serving.client", run_name="__main__", alter_sys=True)')
    return subprocess.run([PYTHON, '-c', code] + list(args), cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_rest_prints_detector_lines_without_tensorflow(served):
    import detector
    (prefix, _, version_dir, image_paths), server = served
    result = _run_client_without_tensorflow(
        '--server=localhost:%d' % server.rest_api_port, '--protocol=rest', '--model_name=ssd',
        '--image_path=%s' % image_paths[1], '--model_info=%s' % version_dir)
    assert result.returncode == 0, result.stderr
    local = detector.Detector(prefix, select_threshold=SELECT_THRESHOLD, keep_top_k=KEEP_TOP_K)
    try:
        image, boxes, scores, classes = local.run(open(image_paths[1], 'rb').read())
    finally:
        local.close()
    expected = detection_io.format_detections(os.path.basename(image_paths[1]), image.shape[0],
                                              image.shape[1], boxes, scores, classes, CLASS_NAMES)
    assert result.stdout.splitlines() == expected


def test_cli_errors_are_one_line(served, tmp_path):
    (_, _, _, image_paths), server = served
    base = ['--server=localhost:%d' % server.rest_api_port, '--protocol=rest']
    not_image = tmp_path / 'notes.png'
    not_image.write_text('hello')
    cases = [
        (['--model_name=nope', '--image_path=%s' % image_paths[0]],
         "error: 404: model 'nope' not found"),
        (['--model_name=ssd', '--image_path=%s' % not_image, '--signature=detected_model'],
         'error: %s is not a JPEG or PNG image' % not_image),
        (['--model_name=ssd', '--image_path=%s' % (tmp_path / 'missing.jpg')],
         'error: --image_path %s: no such file or folder' % (tmp_path / 'missing.jpg')),
    ]
    for args, message in cases:
        result = _run_client_without_tensorflow(*(base + args))
        assert result.returncode == 1, args
        assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
        assert 'Traceback' not in result.stderr


class _GroundTruthClient(object):
    """Answers every image with its VOC XML boxes (pixels): a perfect detector."""

    signature = 'serving_default'

    def __init__(self, voc_dir):
        self.voc_dir = voc_dir

    def detect(self, data, name):
        root = ET.parse(os.path.join(self.voc_dir, 'Annotations',
                                     os.path.splitext(name)[0] + '.xml')).getroot()
        boxes, classes = [], []
        for obj in root.iter('object'):
            box = obj.find('bndbox')
            boxes.append([float(box.find(k).text) for k in ('ymin', 'xmin', 'ymax', 'xmax')])
            classes.append(CLASS_NAMES.index(obj.find('name').text) + 1)
        return client_lib.Detections(np.array(boxes, np.float32).reshape(-1, 4),
                                     np.linspace(0.9, 0.5, len(boxes)).astype(np.float32),
                                     np.array(classes, np.int64))


def test_evaluate_reads_records_in_pixels(sample_voc_dir, sample_tfrecords):
    from datasets import dataset_factory
    spec = dataset_factory.get_dataset('vehicle', 'test', sample_tfrecords)
    records = list(client_lib.read_records(spec.data_sources, 3))
    assert len(records) == 3
    results = client_lib.evaluate(_GroundTruthClient(sample_voc_dir), records, CLASS_NAMES)
    assert results['num_images'] == 3
    assert results['map_voc07'] == pytest.approx(1.)
    assert results['map_voc2010'] == pytest.approx(1.)


def test_cli_num_tests_prints_map(served, sample_tfrecords):
    _, server = served
    result = subprocess.run(
        [PYTHON, '-m', 'serving.client', '--server=localhost:%d' % server.grpc_port,
         '--protocol=grpc', '--model_name=ssd', '--num_tests=2',
         '--dataset_dir=%s' % sample_tfrecords, '--dataset_name=vehicle'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith('2 images of vehicle/test through grpc')
    assert lines[-1].startswith('mAP VOC07 ')


def test_a_labels_file_shorter_than_the_models_classes_is_refused(tmp_path, capsys):
    import types
    import cv2
    image = str(tmp_path / 'street.jpg')
    cv2.imwrite(image, np.zeros((20, 30, 3), np.uint8))

    class ThirdClassClient(object):
        def detect(self, data, name):
            return client_lib.Detections(np.array([[1., 2., 10., 20.]]), np.array([.9]),
                                         np.array([3]))

    labels = str(tmp_path / 'labels.txt')
    options = types.SimpleNamespace(image_path=image, labels_file=labels, model_info=None)
    with pytest.raises(client_lib.ClientError) as error:
        client_lib._run_images(ThirdClassClient(), options, ['Car', 'Bus'])
    assert str(error.value) == ('--labels_file %s names 2 classes but the model detected class '
                                'id 3 in %s: give the labels file of this model' % (labels, image))
    client_lib._run_images(ThirdClassClient(), options, ['Car', 'Bus', 'Truck'])
    assert capsys.readouterr().out.splitlines()[1].split()[0] == 'Truck'
