"""Version handling of the local model server: a new version is picked up while four clients send
requests (no failed request, never an answer mixing versions), a broken version never replaces the
working one and shows its error in the status, folders that are not versions are ignored (names
in non-ASCII digits or beyond int64 with one warning each)."""
import logging
import os
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow.compat.v1 as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server.model_server import start_server
from model.versions import scan_versions
from test.serving_fixtures import run_signature, sample_jpeg, write_model_version

MODEL = 'ssd'
POLL_SECONDS = 1.
# Loading the tiny model takes ~0.2 s; the slack covers a machine shared with other jobs.
LOAD_SLACK_SECONDS = 4.
NUM_CLIENTS = 4
States = get_model_status_pb2.ModelVersionStatus


class _Client(threading.Thread):
    """Sends serving_default requests in a loop; keeps (version, scores) or the error per call."""

    def __init__(self, port, request, stop):
        super(_Client, self).__init__(daemon=True)
        self._channel = grpc.insecure_channel('127.0.0.1:%d' % port)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._request = request
        self._halt = stop
        self.answers = []
        self.errors = []

    def run(self):
        while not self._halt.is_set():
            try:
                response = self._stub.Predict(self._request, timeout=30)
            except grpc.RpcError as err:
                self.errors.append('%s: %s' % (err.code(), err.details()))
                continue
            scores = tf.make_ndarray(response.outputs['detection_scores'])
            self.answers.append((response.model_spec.version.value, time.monotonic(), scores))
        self._channel.close()


def _wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail('timed out after %.0f s waiting for %s' % (timeout, what))


def _statuses(port):
    channel = grpc.insecure_channel('127.0.0.1:%d' % port)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL
    try:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request)
    finally:
        channel.close()
    return {s.version: s for s in response.model_version_status}


def test_scan_versions_keeps_integer_folders_only(tmp_path):
    for name in ('1', '12', 'tmp-3-99', '4.partial', 'latest', '\u00b2', '\u0663',
                 '99999999999999999999'):
        (tmp_path / name).mkdir()
    (tmp_path / '7').write_text('a file, not a version folder')
    ignored = []
    assert sorted(scan_versions(str(tmp_path), ignored.append)) == [1, 12]
    assert sorted(ignored) == ['99999999999999999999', '\u00b2', '\u0663']


def test_non_ascii_digit_folders_are_ignored_with_one_warning(tmp_path, caplog):
    base = str(tmp_path)
    write_model_version(base, 1)
    os.mkdir(os.path.join(base, '\u00b2'))  # superscript two: str.isdigit() but no int()
    caplog.set_level(logging.WARNING, logger='serving.model_server')
    with start_server(MODEL, base, poll_wait_seconds=0.2, rest_api_port=None) as server:
        os.mkdir(os.path.join(base, '\u0663'))  # Arabic-Indic three: int() would say 3
        time.sleep(1.)  # several polls
        write_model_version(base, 2)
        _wait_for(lambda: _statuses(server.grpc_port).get(2) is not None and
                  _statuses(server.grpc_port)[2].state == States.AVAILABLE,
                  LOAD_SLACK_SECONDS + 1, 'version 2 behind the ignored folders')
        assert sorted(_statuses(server.grpc_port)) == [1, 2]
    warnings = [r.getMessage() for r in caplog.records
                if r.name == 'serving.model_server' and r.levelno >= logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "ignoring folder '\u00b2'" in warnings[0] and "ignoring folder '\u0663'" in warnings[1]
    assert not any(r.exc_info for r in caplog.records)


def test_swap_under_load_then_broken_version_keeps_serving(tmp_path, tmp_path_factory):
    base = str(tmp_path)
    jpeg = np.array([sample_jpeg(240, 320, 5)], dtype=object)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs['encoded_image'].CopyFrom(tf.make_tensor_proto(jpeg))
    expected = {1: run_signature(write_model_version(base, 1), 'serving_default',
                                 {'encoded_image': jpeg})['detection_scores']}

    with start_server(MODEL, base, poll_wait_seconds=POLL_SECONDS) as server:
        stop = threading.Event()
        clients = [_Client(server.grpc_port, request, stop) for _ in range(NUM_CLIENTS)]
        for client in clients:
            client.start()
        try:
            _wait_for(lambda: all(c.answers for c in clients), 30, 'first answers')

            # Version 2 appears (atomic rename, as the exporter does) while clients are busy.
            version_2 = write_model_version(base, 2)
            written = time.monotonic()
            _wait_for(lambda: any(a[0] == 2 for c in clients for a in c.answers),
                      POLL_SECONDS + LOAD_SLACK_SECONDS, 'version 2 answers')
            first_v2 = min(a[1] for c in clients for a in c.answers if a[0] == 2)
            assert first_v2 - written <= POLL_SECONDS + LOAD_SLACK_SECONDS

            # A broken version 3 and a complete model under a non-integer name must not win.
            write_model_version(base, 3, broken=True)
            other = str(tmp_path_factory.mktemp('staging'))
            os.rename(write_model_version(other, 9), os.path.join(base, '9.tmp'))
            _wait_for(lambda: _statuses(server.grpc_port).get(3) is not None and
                      _statuses(server.grpc_port)[3].state == States.END,
                      POLL_SECONDS + LOAD_SLACK_SECONDS, 'version 3 to fail')
            answered = sum(len(c.answers) for c in clients)
            time.sleep(2 * POLL_SECONDS)  # two more polls: nothing may change
            assert sum(len(c.answers) for c in clients) > answered
            rest_status = requests.get('http://127.0.0.1:%d/v1/models/%s' % (
                server.rest_api_port, MODEL), timeout=10).json()
        finally:
            stop.set()
            for client in clients:
                client.join(30)
        statuses = _statuses(server.grpc_port)

    expected[2] = run_signature(version_2, 'serving_default',
                                {'encoded_image': jpeg})['detection_scores']
    assert not np.allclose(expected[1], expected[2])  # the versions are distinguishable
    assert [c.errors for c in clients] == [[]] * NUM_CLIENTS
    for client in clients:
        versions = [a[0] for a in client.answers]
        assert versions == sorted(versions), 'a client went back to an older version'
        assert versions[-1] == 2
        for version, _, scores in client.answers:
            np.testing.assert_allclose(scores, expected[version], atol=1e-6)

    assert sorted(statuses) == [1, 2, 3]  # '9.tmp' was never considered
    assert statuses[2].state == States.AVAILABLE
    assert (statuses[1].state, statuses[1].status.error_code) == (States.END, 0)
    assert statuses[3].state == States.END
    assert statuses[3].status.error_code != 0
    assert 'Read less bytes' in statuses[3].status.error_message
    assert base not in statuses[3].status.error_message
    assert [s['version'] for s in rest_status['model_version_status']] == ['3', '2', '1']
    broken = rest_status['model_version_status'][0]
    assert broken['state'] == 'END' and broken['status']['error_code'] == 'OUT_OF_RANGE'


def test_requests_for_an_unloaded_version_are_not_found(tmp_path):
    base = str(tmp_path)
    write_model_version(base, 1)
    write_model_version(base, 2)
    with start_server(MODEL, base, rest_api_port=None, version_labels={'stable': 2, 'old': 1}) \
            as server:
        assert server.rest_api_port is None
        channel = grpc.insecure_channel('127.0.0.1:%d' % server.grpc_port)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = 'detected_model'
        request.inputs['images'].CopyFrom(
            tf.make_tensor_proto(np.zeros((300, 300, 3), np.float32)))
        request.model_spec.version_label = 'stable'
        assert stub.Predict(request, timeout=30).model_spec.version.value == 2
        for label in ('old', 'canary'):
            request.model_spec.version_label = label
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        request.model_spec.ClearField('version_label')
        request.model_spec.version.value = 1
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert 'serving version 2' in raised.value.details()
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = MODEL
        status_request.model_spec.version_label = 'stable'
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request)
        assert [s.version for s in response.model_version_status] == [2]
        channel.close()
        # Version 1 was never loaded: the newest version is the only one the server touched.
        assert sorted(_statuses(server.grpc_port)) == [2]
