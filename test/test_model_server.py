"""The local model server in-process on free loopback ports: gRPC and REST answers against an
independent in-process run of the same SavedModel, metadata/status, and bad requests (hostile
ones too: refused from what they declare, before anything is allocated)."""
import base64
import json
import logging
import socket

import grpc
import numpy as np
import pytest
import requests
import tensorflow.compat.v1 as tf
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from serving.server.limits import DEFAULT_LIMITS
from serving.server.model_server import start_server
from test import serving_fixtures
from test.conftest import declared_png
from test.serving_fixtures import run_signature, sample_jpeg

MODEL = 'ssd'
MAX_REQUEST_BYTES = 8 * 1024 * 1024
RAW_OUTPUTS = ['predict%d' % i for i in range(6)] + ['local%d' % i for i in range(6)]
DETECTION_OUTPUTS = ['detection_boxes', 'detection_classes', 'detection_scores', 'num_detections']


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp('models'))
    version_dir = serving_fixtures.write_model_version(base, 1)
    srv = start_server(MODEL, base, port=0, rest_api_port=0, poll_wait_seconds=1,
                       max_request_bytes=MAX_REQUEST_BYTES)
    srv.version_dir = version_dir
    srv.base_path = base
    channel = grpc.insecure_channel('127.0.0.1:%d' % srv.grpc_port)
    srv.predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    srv.model_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    srv.rest = 'http://127.0.0.1:%d/v1/models' % srv.rest_api_port
    yield srv
    channel.close()
    srv.stop()


@pytest.fixture(scope='module')
def image_input():
    return np.random.RandomState(3).uniform(-120, 130, (300, 300, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def jpegs():
    return [sample_jpeg(200, 260, 1), sample_jpeg(320, 180, 2)]


def _predict_request(inputs, signature_name='', name=MODEL, version=None, output_filter=()):
    """``inputs``: alias -> NumPy array, or a TensorProto sent as it is."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    for alias, value in inputs.items():
        proto = value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
        request.inputs[alias].CopyFrom(proto)
    request.output_filter.extend(output_filter)
    return request


def _declared(dtype, shape, **values):
    """A TensorProto declaring ``shape`` with only the given values (TensorFlow repeats the
    last value, or zeros, up to the declared size)."""
    proto = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def _assert_outputs_equal(actual, expected, atol):
    assert sorted(actual) == sorted(expected)
    for alias, value in expected.items():
        got = np.asarray(actual[alias])
        assert got.shape == value.shape, alias
        np.testing.assert_allclose(got, value, atol=atol, err_msg=alias)


# --- answers equal the in-process ones ----------------------------------------------------------

def test_grpc_detected_model_equals_in_process(server, image_input):
    response = server.predict_stub.Predict(
        _predict_request({'images': image_input}, 'detected_model'), timeout=30)
    assert response.model_spec.name == MODEL
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == 'detected_model'
    actual = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    expected = run_signature(server.version_dir, 'detected_model', {'images': image_input})
    assert sorted(actual) == sorted(RAW_OUTPUTS)
    assert actual['predict0'].shape == (1, 38, 38, 4, 6)
    assert actual['local5'].shape == (1, 1, 1, 4, 4)
    _assert_outputs_equal(actual, expected, atol=0)


def test_grpc_serving_default_jpeg_equals_in_process(server, jpegs):
    encoded = np.array(jpegs, dtype=object)
    response = server.predict_stub.Predict(_predict_request({'encoded_image': encoded}),
                                           timeout=30)
    assert response.model_spec.signature_name == 'serving_default'
    actual = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    assert actual['detection_classes'].dtype == np.int64
    assert actual['num_detections'].dtype == np.int32
    assert actual['detection_boxes'].shape == (2, serving_fixtures.KEEP_TOP_K, 4)
    expected = run_signature(server.version_dir, 'serving_default', {'encoded_image': encoded})
    _assert_outputs_equal(actual, expected, atol=0)
    # Boxes are pixels of each original image: the 180-px-wide one bounds x by 180.
    assert actual['detection_boxes'][1, :, 1::2].max() <= 180


def test_grpc_output_filter_returns_only_requested(server, jpegs):
    response = server.predict_stub.Predict(_predict_request(
        {'encoded_image': np.array(jpegs[:1], dtype=object)}, output_filter=['num_detections']))
    assert list(response.outputs) == ['num_detections']


def test_rest_instances_b64_equals_in_process(server, jpegs):
    body = {'instances': [{'b64': base64.b64encode(j).decode()} for j in jpegs]}
    answer = requests.post(server.rest + '/' + MODEL + ':predict', json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    rows = answer.json()['predictions']
    expected = run_signature(server.version_dir, 'serving_default',
                              {'encoded_image': np.array(jpegs, dtype=object)})
    assert len(rows) == 2
    for i, row in enumerate(rows):
        _assert_outputs_equal(row, {k: v[i] for k, v in expected.items()}, atol=1e-6)


def test_rest_columnar_detected_model_equals_in_process(server, image_input):
    body = {'signature_name': 'detected_model', 'inputs': {'images': image_input.tolist()}}
    answer = requests.post(server.rest + '/' + MODEL + '/versions/1:predict', json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    expected = run_signature(server.version_dir, 'detected_model', {'images': image_input})
    _assert_outputs_equal(answer.json()['outputs'], expected, atol=1e-6)


def test_rest_float_instances_stack_rows_like_tf_serving(server, image_input):
    # Row format stacks the 300 rows [300, 3] into the [300, 300, 3] image; every output has
    # batch 1, so there is one prediction row holding all twelve outputs without their batch axis.
    body = {'signature_name': 'detected_model', 'instances': image_input.tolist()}
    answer = requests.post(server.rest + '/' + MODEL + ':predict', json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    rows = answer.json()['predictions']
    expected = run_signature(server.version_dir, 'detected_model', {'images': image_input})
    assert len(rows) == 1
    _assert_outputs_equal(rows[0], {k: v[0] for k, v in expected.items()}, atol=1e-6)


def test_rest_columnar_bare_value_for_single_input(server, jpegs):
    body = {'inputs': [{'b64': base64.b64encode(jpegs[0]).decode()}]}
    answer = requests.post(server.rest + '/' + MODEL + ':predict', json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    outputs = answer.json()['outputs']
    expected = run_signature(server.version_dir, 'serving_default',
                              {'encoded_image': np.array(jpegs[:1], dtype=object)})
    _assert_outputs_equal(outputs, expected, atol=1e-6)


# --- metadata and status ------------------------------------------------------------------------

def _assert_export_contract(sig_map):
    raw = sig_map['detected_model']
    assert raw.method_name == 'tensorflow/serving/predict'
    assert list(raw.inputs) == ['images']
    assert raw.inputs['images'].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in raw.inputs['images'].tensor_shape.dim] == [300, 300, 3]
    assert sorted(raw.outputs) == sorted(RAW_OUTPUTS)
    default = sig_map['serving_default']
    assert list(default.inputs) == ['encoded_image']
    assert default.inputs['encoded_image'].dtype == tf.string.as_datatype_enum
    assert [d.size for d in default.inputs['encoded_image'].tensor_shape.dim] == [-1]
    dtypes = {k: tf.as_dtype(v.dtype) for k, v in default.outputs.items()}
    assert dtypes == {'detection_boxes': tf.float32, 'detection_scores': tf.float32,
                      'detection_classes': tf.int64, 'num_detections': tf.int32}
    shapes = {k: [d.size for d in v.tensor_shape.dim] for k, v in default.outputs.items()}
    k = serving_fixtures.KEEP_TOP_K
    assert shapes == {'detection_boxes': [-1, k, 4], 'detection_scores': [-1, k],
                      'detection_classes': [-1, k], 'num_detections': [-1]}


def test_grpc_metadata_packs_signature_def_map(server):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    request.metadata_field.append('signature_def')
    response = server.predict_stub.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 1
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata['signature_def'].Unpack(sig_map)
    assert sorted(sig_map.signature_def) == ['detected_model', 'serving_default']
    _assert_export_contract(sig_map.signature_def)


def test_rest_metadata_matches_tf_serving_layout(server):
    answer = requests.get(server.rest + '/' + MODEL + '/metadata', timeout=10)
    assert answer.status_code == 200
    body = answer.json()
    assert body['model_spec'] == {'name': MODEL, 'signature_name': '', 'version': '1'}
    sig_map = json_format.ParseDict(body['metadata']['signature_def'],
                                    get_model_metadata_pb2.SignatureDefMap())
    _assert_export_contract(sig_map.signature_def)
    inputs = body['metadata']['signature_def']['signature_def']['detected_model']['inputs']
    assert inputs['images']['dtype'] == 'DT_FLOAT'


def test_status_grpc_and_rest(server):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    response = server.model_stub.GetModelStatus(request, timeout=10)
    assert len(response.model_version_status) == 1
    status = response.model_version_status[0]
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0
    for path in ('', '/versions/1'):
        answer = requests.get(server.rest + '/' + MODEL + path, timeout=10)
        assert answer.json() == {'model_version_status': [{
            'version': '1', 'state': 'AVAILABLE',
            'status': {'error_code': 'OK', 'error_message': ''}}]}


# --- bad requests -------------------------------------------------------------------------------

GRPC_BAD_REQUESTS = [
    ('wrong shape', dict(inputs={'images': np.zeros((1, 300, 300, 3), np.float32)},
                         signature_name='detected_model'),
     grpc.StatusCode.INVALID_ARGUMENT, 'expected shape [300,300,3], got [1,300,300,3]'),
    ('wrong dtype', dict(inputs={'images': np.zeros((300, 300, 3), np.float64)},
                         signature_name='detected_model'),
     grpc.StatusCode.INVALID_ARGUMENT, 'expected dtype float32, got float64'),
    ('missing input', dict(inputs={}, signature_name='detected_model'),
     grpc.StatusCode.INVALID_ARGUMENT, "missing input 'images'"),
    ('unknown input', dict(inputs={'image': np.zeros((300, 300, 3), np.float32)},
                           signature_name='detected_model'),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'image' is not an input"),
    ('unknown model', dict(inputs={}, name='nope'), grpc.StatusCode.NOT_FOUND, "model 'nope'"),
    ('unknown version', dict(inputs={}, version=7), grpc.StatusCode.NOT_FOUND, 'version 7'),
    ('unknown signature', dict(inputs={}, signature_name='classify'),
     grpc.StatusCode.FAILED_PRECONDITION, "signature 'classify' not found"),
    ('non-image bytes', dict(inputs={'encoded_image': np.array([b'not an image'], object)}),
     grpc.StatusCode.INVALID_ARGUMENT, 'Unknown image file format'),
    ('unknown output', dict(inputs={'encoded_image': np.array([b'x'], object)},
                            output_filter=['boxes']),
     grpc.StatusCode.INVALID_ARGUMENT, "output_filter 'boxes'"),
    ('oversized', dict(inputs={'images': np.zeros((8, 300, 300, 3), np.float32)},
                       signature_name='detected_model'),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ''),
    # Hostile: a few bytes declaring gigabytes, types without a value, nothing to run.
    ('image above the pixel limit', dict(inputs={'encoded_image': np.array(
        [declared_png(12000, 12000)], object)}), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'encoded_image' of signature 'serving_default': element 0: PNG image of 12000x12000 "
     "= 144000000 pixels exceeds the limit of 50000000 pixels (--max_image_pixels)"),
    ('unreadable image header', dict(inputs={'encoded_image': np.array(
        [b'\x89PNG\r\n\x1a\n' + b'x' * 20], object)}), grpc.StatusCode.INVALID_ARGUMENT,
     'PNG header has no IHDR chunk'),
    ('25 bytes declaring 10 million strings', dict(inputs={'encoded_image': _declared(
        types_pb2.DT_STRING, [10 ** 7], string_val=[b'x' * 25])}),
     grpc.StatusCode.INVALID_ARGUMENT,
     '10000000 rows in one request, more than the limit of 64 (--max_batch_rows)'),
    ('strings above the element limit', dict(inputs={'encoded_image': _declared(
        types_pb2.DT_STRING, [2 ** 24 + 1], string_val=[b'x'])}),
     grpc.StatusCode.INVALID_ARGUMENT, 'more than the limit of 16777216 (--max_tensor_elements)'),
    ('floats declaring 3.64 TiB', dict(inputs={'images': _declared(
        types_pb2.DT_FLOAT, [10 ** 6, 10 ** 6])}, signature_name='detected_model'),
     grpc.StatusCode.INVALID_ARGUMENT, 'expected shape [300,300,3], got [1000000,1000000]'),
    ('negative size', dict(inputs={'encoded_image': _declared(types_pb2.DT_STRING, [-1])}),
     grpc.StatusCode.INVALID_ARGUMENT, 'shape [-1] has a negative size'),
    ('variant', dict(inputs={'encoded_image': _declared(types_pb2.DT_VARIANT, [1])}),
     grpc.StatusCode.INVALID_ARGUMENT, 'expected dtype string, got variant'),
    ('resource', dict(inputs={'encoded_image': _declared(types_pb2.DT_RESOURCE, [1])}),
     grpc.StatusCode.INVALID_ARGUMENT, 'expected dtype string, got resource'),
    ('unknown dtype', dict(inputs={'encoded_image': _declared(9999, [1])}),
     grpc.StatusCode.INVALID_ARGUMENT, 'expected dtype string, got unknown type 9999'),
    ('empty batch', dict(inputs={'encoded_image': np.array([], object)}),
     grpc.StatusCode.INVALID_ARGUMENT, 'the batch is empty (shape [0]); send at least one row'),
]


@pytest.mark.parametrize('case, kwargs, code, fragment', GRPC_BAD_REQUESTS,
                         ids=[c[0] for c in GRPC_BAD_REQUESTS])
def test_grpc_bad_request_is_refused_and_server_keeps_serving(server, jpegs, case, kwargs, code,
                                                              fragment):
    with pytest.raises(grpc.RpcError) as raised:
        server.predict_stub.Predict(_predict_request(**kwargs), timeout=30)
    assert raised.value.code() == code, raised.value.details()
    assert fragment in raised.value.details()
    good = server.predict_stub.Predict(
        _predict_request({'encoded_image': np.array(jpegs[:1], dtype=object)}), timeout=30)
    assert good.model_spec.version.value == 1


def test_grpc_unsupported_calls(server, caplog):
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as raised:
            server.predict_stub.Classify(classification_pb2.ClassificationRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert raised.value.details() == 'Classify is not supported by this server; use Predict'
        with pytest.raises(grpc.RpcError) as raised:
            server.predict_stub.Regress(regression_pb2.RegressionRequest(), timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL
    with pytest.raises(grpc.RpcError) as raised:
        server.predict_stub.GetModelMetadata(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append('graph')
    with pytest.raises(grpc.RpcError) as raised:
        server.predict_stub.GetModelMetadata(request, timeout=10)
    assert "metadata_field 'graph'" in raised.value.details()
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    status_request.model_spec.version.value = 4
    with pytest.raises(grpc.RpcError) as raised:
        server.model_stub.GetModelStatus(status_request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


_B64_TEXT = {'b64': base64.b64encode(b'plain text, no image').decode()}
REST_BAD_REQUESTS = [
    ('bad json', 'POST', ':predict', '{"instances": [', 400, 'JSON parse error'),
    ('not an object', 'POST', ':predict', '[1, 2]', 400, 'JSON object'),
    ('both formats', 'POST', ':predict', {'instances': [1], 'inputs': [1]}, 400, 'exactly one'),
    ('wrong shape', 'POST', ':predict',
     {'signature_name': 'detected_model', 'inputs': {'images': [[1.0, 2.0]]}}, 400,
     'expected shape [300,300,3], got [1,2]'),
    ('wrong dtype', 'POST', ':predict',
     {'signature_name': 'detected_model', 'inputs': {'images': [['a']]}}, 400,
     'expected dtype float32, got JSON values of type string'),
    ('ragged', 'POST', ':predict',
     {'signature_name': 'detected_model', 'inputs': {'images': [[1.0], [1.0, 2.0]]}}, 400,
     'not a rectangular array'),
    ('missing input', 'POST', ':predict', {'signature_name': 'detected_model', 'inputs': {}}, 400,
     "missing input 'images'"),
    ('non-image bytes', 'POST', ':predict', {'instances': [_B64_TEXT]}, 400,
     'Unknown image file format'),
    ('bad base64', 'POST', ':predict', {'instances': [{'b64': '***'}]}, 400, 'invalid base64'),
    ('unknown signature', 'POST', ':predict', {'signature_name': 'x', 'instances': [1]}, 400,
     "signature 'x' not found"),
    ('unknown version', 'POST', '/versions/9:predict', {'instances': [_B64_TEXT]}, 404,
     'version 9'),
    ('version beyond int64', 'POST', '/versions/99999999999999999999:predict',
     {'instances': [_B64_TEXT]}, 400, 'version 99999999999999999999 in the URL is beyond int64'),
    ('status of a version beyond int64', 'GET', '/versions/9223372036854775808', None, 400,
     'beyond int64'),
    ('unknown model', 'GET', '@other', None, 404, "model 'other'"),
    ('unknown route', 'GET', '/nothing', None, 400,
     'Malformed request: GET /v1/models/ssd/nothing'),
    ('GET on predict', 'GET', ':predict', None, 400, 'Malformed request: GET'),
    ('POST on status', 'POST', '', {}, 400, 'Malformed request: POST'),
    ('PUT', 'PUT', ':predict', {'instances': [_B64_TEXT]}, 400, 'Malformed request: PUT'),
    ('DELETE', 'DELETE', '', None, 400, 'Malformed request: DELETE'),
    ('classify', 'POST', ':classify', {'examples': []}, 501, 'not supported'),
    ('oversized', 'POST', ':predict', ' ' * (MAX_REQUEST_BYTES + 1), 413, 'exceeds the limit'),
    # Hostile: cheap bodies that used to cost gigabytes, a traceback or a cryptic graph error.
    ('JSON nested 2000 deep', 'POST', ':predict', '[' * 2000 + ']' * 2000, 400,
     'JSON parse error: nested too deeply'),
    ('image above the pixel limit', 'POST', ':predict', {'instances': [
        {'b64': base64.b64encode(declared_png(12000, 12000)).decode()}]}, 400,
     'exceeds the limit of 50000000 pixels (--max_image_pixels)'),
    ('too many rows', 'POST', ':predict', {'instances': [_B64_TEXT] * 65}, 400,
     '65 rows in one request, more than the limit of 64 (--max_batch_rows)'),
    ('empty batch', 'POST', ':predict', {'inputs': []}, 400, 'the batch is empty'),
    ('never-seen version status hides the folder', 'GET', '/versions/4', None, 404,
     "version 4 of model 'ssd' was never seen"),
]


@pytest.mark.parametrize('case, method, path, body, status, fragment', REST_BAD_REQUESTS,
                         ids=[c[0] for c in REST_BAD_REQUESTS])
def test_rest_bad_request_is_refused_and_server_keeps_serving(server, jpegs, case, method, path,
                                                              body, status, fragment):
    url = (server.rest + '/' + path[1:]) if path.startswith('@') else (
        server.rest + '/' + MODEL + path)
    data = body if isinstance(body, str) else json.dumps(body) if body is not None else None
    answer = requests.request(method, url, data=data, timeout=30)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()['error']
    assert server.base_path not in answer.json()['error']
    good = requests.post(server.rest + '/' + MODEL + ':predict', timeout=30, json={
        'instances': [{'b64': base64.b64encode(jpegs[0]).decode()}]})
    assert good.status_code == 200


def test_default_limits_match_the_flags_documented():
    assert DEFAULT_LIMITS == (50000000, 64, 2 ** 24, 100000000)


def test_rest_non_ascii_content_length_is_a_bad_request(server):
    # http.server reads headers as Latin-1: b'\xb2' is '²', which str.isdigit accepts.
    with socket.create_connection(('127.0.0.1', server.rest_api_port), timeout=30) as conn:
        conn.sendall(b'POST /v1/models/ssd:predict HTTP/1.0\r\nContent-Length: \xb2\r\n\r\n')
        answer = b''.join(iter(lambda: conn.recv(65536), b''))
    head, _, payload = answer.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.0 400'), answer[:200]
    assert 'Content-Length' in json.loads(payload)['error']
