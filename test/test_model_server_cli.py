"""``python -m serving.model_server`` as users run it: serves, finishes the request in flight on
SIGTERM and exits 0, closing idle and half-sent connections at once; idle REST connections time
out; bad flags give one ``error:`` line and a non-zero exit."""
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types

import pytest
import requests

from serving.server import batching
from serving.server.model_server import batching_from_flags, server_from_flags, start_server
from test.serving_fixtures import sample_jpeg, write_model_version
from utils.cli import UsageError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 90.  # importing TensorFlow on a busy shared machine


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _run_cli(*args, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    return subprocess.Popen([sys.executable, '-m', 'serving.model_server'] + list(args),
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_until_serving(proc, status_url):
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail('server exited early: %s' % proc.stderr.read())
        try:
            if requests.get(status_url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail('server did not start within %.0f s' % START_TIMEOUT)


def test_cli_answers_a_request_received_before_sigterm_and_exits_0(tmp_path):
    write_model_version(str(tmp_path), 1)
    grpc_port, rest_port = _free_port(), _free_port()
    proc = _run_cli('--model_name=cars', '--model_base_path=%s' % tmp_path,
                    '--port=%d' % grpc_port, '--rest_api_port=%d' % rest_port)
    try:
        _wait_until_serving(proc, 'http://127.0.0.1:%d/v1/models/cars' % rest_port)
        body = json.dumps({'instances': [
            {'b64': base64.b64encode(sample_jpeg(120, 160, 0)).decode()}]}).encode()
        conn = socket.create_connection(('127.0.0.1', rest_port))
        conn.sendall(b'POST /v1/models/cars:predict HTTP/1.1\r\nHost: x\r\n'
                     b'Content-Length: %d\r\n\r\n' % len(body) + body)
        time.sleep(0.2)  # received whole: in flight (or answered) when SIGTERM arrives
        proc.send_signal(signal.SIGTERM)
        answer = b''.join(iter(lambda: conn.recv(65536), b''))
        conn.close()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    head, _, payload = answer.partition(b'\r\n\r\n')
    assert head.startswith(b'HTTP/1.0 200'), answer[:300]
    assert len(json.loads(payload)['predictions']) == 1
    assert proc.returncode == 0, stderr
    assert "loaded version 1" in stderr
    assert "unloaded version 1" in stderr
    assert 'Traceback' not in stderr
    with pytest.raises(requests.ConnectionError):
        requests.get('http://127.0.0.1:%d/v1/models/cars' % rest_port, timeout=5)


def test_stop_lets_a_request_in_flight_finish(tmp_path, monkeypatch):
    """A request received whole before stop() is answered, though it runs past the stop."""
    from serving.server import servable as servable_lib
    run = servable_lib.Servable.run

    def slow_run(self, *args, **kwargs):
        time.sleep(1.5)
        return run(self, *args, **kwargs)
    monkeypatch.setattr(servable_lib.Servable, 'run', slow_run)
    write_model_version(str(tmp_path), 1)
    server = start_server('cars', str(tmp_path))
    body = json.dumps({'instances': [
        {'b64': base64.b64encode(sample_jpeg(120, 160, 0)).decode()}]}).encode()
    conn = socket.create_connection(('127.0.0.1', server.rest_api_port))
    try:
        conn.sendall(b'POST /v1/models/cars:predict HTTP/1.0\r\n'
                     b'Content-Length: %d\r\n\r\n' % len(body) + body)
        time.sleep(0.5)  # received, now sleeping in slow_run
        started = time.monotonic()
        server.stop(grace_seconds=10.)
        seconds = time.monotonic() - started
        answer = b''.join(iter(lambda: conn.recv(65536), b''))
    finally:
        conn.close()
    assert answer.startswith(b'HTTP/1.0 200'), answer[:300]
    assert 0.5 < seconds < 10


def test_cli_bad_flag_gives_one_error_line():
    proc = _run_cli('--model_name=cars', '--model_base_path=/no/such/folder')
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2  # a usage error, as in every tool (utils/cli.py)
    assert stderr.strip().splitlines()[-1] == (
        'error: --model_base_path /no/such/folder is not a folder')
    assert 'Traceback' not in stderr


@pytest.mark.parametrize('changes, message', [
    (dict(model_base_path=None), '--model_base_path is required'),
    (dict(file_system_poll_wait_seconds=0), '--file_system_poll_wait_seconds must be > 0'),
    (dict(port=70000), '--port must be in 0..65535'),
    (dict(version_labels='stable'), "--version_labels: 'stable' is not label=version"),
    (dict(version_labels='stable=\u00b2'),
     "--version_labels: 'stable=\u00b2' is not label=version"),
    (dict(max_image_pixels=0), '--max_image_pixels must be > 0, got 0'),
    (dict(max_batch_rows=-1), '--max_batch_rows must be > 0, got -1'),
    (dict(max_tensor_elements=0), '--max_tensor_elements must be > 0, got 0'),
    (dict(rest_api_timeout_in_ms=0), '--rest_api_timeout_in_ms must be > 0, got 0'),
    (dict(tensorflow_intra_op_parallelism=-1),
     '--tensorflow_intra_op_parallelism must be >= 0, got -1'),
    (dict(batching_parameters_file='b.txt'), '--batching_parameters_file needs --enable_batching'),
    (dict(enable_batching=True, batching_parameters_file='/no/such.txt'),
     '--batching_parameters_file /no/such.txt: No such file'),
    (dict(enable_batching=True, batching_parameters_file='BAD_FILE'),
     "--batching_parameters_file BAD_FILE: unknown field 'max_batch'"),
])
def test_flag_validation_names_the_flag(tmp_path, changes, message):
    values = dict(model_name='cars', model_base_path=str(tmp_path), port=0, rest_api_port=0,
                  file_system_poll_wait_seconds=1., host='127.0.0.1', max_request_bytes=1000,
                  grpc_max_threads=2, tensorflow_intra_op_parallelism=0,
                  tensorflow_inter_op_parallelism=0, version_labels='', max_image_pixels=10,
                  max_batch_rows=2, max_tensor_elements=10, max_request_pixels=10 ** 8,
                  rest_api_timeout_in_ms=1000,
                  enable_batching=False, batching_parameters_file='', adaptive_batching=True)
    values.update(changes)
    if values['batching_parameters_file'] == 'BAD_FILE':
        bad = tmp_path / 'batching.txt'
        bad.write_text('max_batch { value: 4 }\n')
        values['batching_parameters_file'] = str(bad)
        message = message.replace('BAD_FILE', str(bad))
    with pytest.raises(UsageError) as raised:
        server_from_flags(types.SimpleNamespace(**values)).stop()
    assert str(raised.value).startswith(message)


def test_thread_flags_reach_the_session_of_the_served_version(tmp_path):
    from serving.server.model_server import define_flags
    write_model_version(str(tmp_path), 1)
    options = define_flags().values
    options(['model_server', '--model_name=cars', '--model_base_path=%s' % tmp_path, '--port=0',
             '--rest_api_port=0', '--tensorflow_intra_op_parallelism=1',
             '--tensorflow_inter_op_parallelism=3'])
    with server_from_flags(options) as server:
        with server.manager.acquire('cars') as servable:
            config = servable._session._config
    assert (config.intra_op_parallelism_threads, config.inter_op_parallelism_threads) == (1, 3)


def test_batching_flags_give_the_file_values_and_the_adaptive_choice(tmp_path):
    parameters_file = tmp_path / 'batching.txt'
    parameters_file.write_text('max_batch_size { value: 4 }\n')
    assert batching_from_flags(True, str(parameters_file), False) == \
        batching.DEFAULT_PARAMETERS._replace(max_batch_size=4, adaptive=False)
    assert batching_from_flags(True, '', True) == batching.DEFAULT_PARAMETERS
    assert batching_from_flags(False, '', True) is None


def test_taken_port_is_a_usage_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match='--port %d' % port):
            start_server('cars', str(tmp_path), port=port)
        with pytest.raises(UsageError, match='--rest_api_port %d' % port):
            start_server('cars', str(tmp_path), rest_api_port=port)


def _closed_by_server(conn, timeout):
    """True when the server closes ``conn`` (EOF or reset) within ``timeout`` seconds."""
    conn.settimeout(timeout)
    try:
        return conn.recv(1) == b''
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_cli_sigterm_with_idle_and_half_sent_connections_exits_within_5_seconds(tmp_path):
    """Connections without a whole request (idle, or a client that sent half of one) hold
    nothing: they are closed at once, not after the 30 s grace of requests in flight."""
    write_model_version(str(tmp_path), 1)
    grpc_port, rest_port = _free_port(), _free_port()
    proc = _run_cli('--model_name=cars', '--model_base_path=%s' % tmp_path,
                    '--port=%d' % grpc_port, '--rest_api_port=%d' % rest_port)
    connections = []
    try:
        _wait_until_serving(proc, 'http://127.0.0.1:%d/v1/models/cars' % rest_port)
        connections = [socket.create_connection(('127.0.0.1', rest_port)) for _ in range(3)]
        connections[0].sendall(b'POST /v1/models/cars:predict HTTP/1.1\r\nHost: x\r\n'
                               b'Content-Length: 1000\r\n\r\n{"instances": [')
        time.sleep(0.5)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=40)
        seconds = time.monotonic() - signalled
        assert all(_closed_by_server(conn, 1) for conn in connections)
    finally:
        for conn in connections:
            conn.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert seconds < 5, 'SIGTERM took %.1f s with idle and half-sent connections' % seconds
    assert 'Traceback' not in stderr


def test_idle_rest_connections_time_out_and_release_their_threads(tmp_path):
    write_model_version(str(tmp_path), 1)
    with start_server('cars', str(tmp_path), rest_timeout_seconds=0.5) as server:
        threads = threading.active_count()
        idle = [socket.create_connection(('127.0.0.1', server.rest_api_port)) for _ in range(20)]
        try:
            deadline = time.monotonic() + 10
            while threading.active_count() < threads + 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert threading.active_count() >= threads + 20  # one handler thread each
            assert all(_closed_by_server(conn, 5) for conn in idle)
            deadline = time.monotonic() + 5
            while threading.active_count() > threads and time.monotonic() < deadline:
                time.sleep(0.05)
            assert threading.active_count() <= threads
            # A request slower than the timeout gets 408, and the server goes on.
            with socket.create_connection(('127.0.0.1', server.rest_api_port)) as slow:
                slow.sendall(b'POST /v1/models/cars:predict HTTP/1.0\r\n'
                             b'Content-Length: 100\r\n\r\n{')
                answer = b''.join(iter(lambda: slow.recv(65536), b''))
            assert answer.startswith(b'HTTP/1.0 408'), answer[:200]
            assert b'--rest_api_timeout_in_ms' in answer
            status = requests.get('http://127.0.0.1:%d/v1/models/cars' % server.rest_api_port,
                                  timeout=10)
            assert status.status_code == 200
        finally:
            for conn in idle:
                conn.close()


def test_stop_closes_idle_connections_and_bounds_requests_in_flight(tmp_path):
    write_model_version(str(tmp_path), 1)
    server = start_server('cars', str(tmp_path))  # default 30 s read timeout
    idle = socket.create_connection(('127.0.0.1', server.rest_api_port))
    # Headers sent, body never finished: not a whole request, closed at once.
    stalled = socket.create_connection(('127.0.0.1', server.rest_api_port))
    stalled.sendall(b'POST /v1/models/cars:predict HTTP/1.0\r\nContent-Length: 100\r\n\r\n{')
    time.sleep(0.3)
    started = time.monotonic()
    try:
        server.stop(grace_seconds=1.)
        seconds = time.monotonic() - started
        assert _closed_by_server(idle, 1) and _closed_by_server(stalled, 1)
    finally:
        idle.close()
        stalled.close()
    assert seconds < 4, 'stop() took %.1f s' % seconds
