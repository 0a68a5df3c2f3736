"""serving/clients/web.py (Flask page), its Dockerfile, and docker_run.sh / docker_run.bat.

Route tests use a stub detector; the browser test drives headless Chromium through the DevTools
protocol against the real chain: page → REST → serving.model_server → a small SavedModel from
test/serving_fixtures.py.
"""
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

from serving.clients import client as client_lib
from serving.clients import protocols
from serving.clients import web
from test.conftest import REPO_ROOT, declared_png

CLASS_NAMES = ['Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck']
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def _png_bytes(height=120, width=160, seed=0):
    import cv2
    rng = np.random.RandomState(seed)
    image = np.full((height, width, 3), 200, np.uint8)
    image[:, :, 0] = rng.randint(150, 250)
    return cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes(), image


class _StubDetector(object):
    """Answers every image with the same two detections (pixels); records the calls."""

    def __init__(self, error=None):
        self.error = error
        self.calls = []
        self.boxes = np.array([[20., 30., 90., 110.], [5., 5., 40., 50.]], np.float32)

    def __call__(self, data, name):
        self.calls.append(name)
        if self.error is not None:
            raise self.error
        return client_lib.Detections(
            boxes=self.boxes[:2], scores=np.array([0.91, 0.55], np.float32)[:len(self.boxes)],
            classes=np.array([3, 5], np.int64)[:len(self.boxes)])


@pytest.fixture
def stub():
    return _StubDetector()


@pytest.fixture
def app_client(stub):
    return web.create_app(stub, CLASS_NAMES).test_client()


def _upload(client, path, data, filename='car.png'):
    return client.post(path, data={'image': (io.BytesIO(data), filename)},
                       content_type='multipart/form-data')


def test_index_has_the_upload_form(app_client):
    page = app_client.get('/').get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page
    assert re.search(r'<input id="image" type="file" name="image"', page)


def test_result_page_shows_picture_boxes_and_table(app_client, stub):
    from utils import visualization
    data, image = _png_bytes()
    response = _upload(app_client, '/detect', data)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert stub.calls == ['car.png']
    rows = re.findall(r'<tr class="detection"><td>(\w+)</td><td>([\d.]+)</td>', page)
    assert rows == [('Car', '0.910'), ('Truck', '0.550')]
    assert '<td>20.0</td><td>30.0</td><td>90.0</td><td>110.0</td>' in page

    drawn = _picture(page)
    assert drawn.shape == image.shape  # small pictures: one image pixel = one picture pixel
    # The left edge of the Car box (x = 30, halfway down) is drawn in the class colour; a point
    # far from every box keeps the picture's own colour.
    colour = np.array(visualization.class_color(3)) * 255.
    assert np.abs(drawn[55, 29:32].astype(float) - colour).max(axis=1).min() < 40
    np.testing.assert_allclose(drawn[110, 150], image[110, 150], atol=3)


def _picture(page):
    """The result page's picture, decoded to RGB."""
    import cv2
    picture = re.search(r'src="data:image/jpeg;base64,([^"]+)"', page).group(1)
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(picture), np.uint8),
                                     cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize('extension', ['.jpg', '.png'])
def test_large_pictures_are_drawn_at_display_size(stub, extension):
    # 3000 x 2000: a JPEG is decoded at half scale, both come back 1280 wide, boxes scaled.
    import cv2
    from utils import visualization
    image = np.full((2000, 3000, 3), 200, np.uint8)
    data = cv2.imencode(extension, image)[1].tobytes()
    stub.boxes = np.array([[500., 600., 1500., 2400.]], np.float32)
    client = web.create_app(stub, CLASS_NAMES).test_client()
    page = _upload(client, '/detect', data, 'big' + extension).get_data(as_text=True)
    assert '(3000&times;2000 pixels)' in page
    assert '<td>500.0</td><td>600.0</td><td>1500.0</td><td>2400.0</td>' in page  # original pixels
    drawn = _picture(page)
    assert drawn.shape == (853, 1280, 3)
    colour = np.array(visualization.class_color(3)) * 255.
    left = int(round(600 * 1280 / 3000.))  # the box's left edge at display scale
    assert np.abs(drawn[426, left - 1:left + 2].astype(float) - colour).max(axis=1).min() < 40
    assert len(page) < 300000


def test_images_above_the_pixel_limit_are_refused_before_decoding(stub):
    client = web.create_app(stub, CLASS_NAMES).test_client()
    message = ("uploaded file 'bomb.png': PNG image of 12000x12000 = 144000000 pixels exceeds "
               "the limit of 50000000 pixels (--max_image_pixels)")
    response = _upload(client, '/api/detect', declared_png(12000, 12000), 'bomb.png')
    assert response.status_code == 400
    assert response.get_json() == {'error': message}
    response = _upload(client, '/detect', declared_png(30000, 30000), 'bomb.png')
    assert response.status_code == 400
    assert '30000x30000' in response.get_data(as_text=True)
    small_limit = web.create_app(stub, CLASS_NAMES, max_image_pixels=160 * 119).test_client()
    response = _upload(small_limit, '/api/detect', _png_bytes()[0])
    assert response.status_code == 400 and '--max_image_pixels' in response.get_json()['error']
    assert stub.calls == []


def test_api_returns_json_detections(app_client):
    data, _ = _png_bytes()
    response = _upload(app_client, '/api/detect', data)
    assert response.status_code == 200
    assert response.get_json() == {'width': 160, 'height': 120, 'detections': [
        {'class_id': 3, 'class_name': 'Car', 'score': 0.91, 'box': [20., 30., 90., 110.]},
        {'class_id': 5, 'class_name': 'Truck', 'score': 0.55, 'box': [5., 5., 40., 50.]}]}
    # The raw body with an image/* content type works too.
    response = app_client.post('/api/detect', data=data, content_type='image/png')
    assert response.status_code == 200 and len(response.get_json()['detections']) == 2


def test_non_images_are_refused_with_400(app_client, stub):
    response = _upload(app_client, '/api/detect', b'%PDF-1.4 not a picture', 'report.pdf')
    assert response.status_code == 400
    assert response.get_json() == {'error': "uploaded file 'report.pdf' is not a JPEG or PNG image"}
    # A PNG signature with garbage after it: caught from its header, before the model server.
    response = _upload(app_client, '/api/detect', b'\x89PNG\r\n\x1a\n' + b'x' * 100, 'broken.png')
    assert response.status_code == 400
    assert response.get_json() == {'error': "uploaded file 'broken.png': PNG header has no IHDR "
                                            "chunk"}
    # A good header and cut-off pixels: caught by decoding the picture of the result page.
    response = _upload(app_client, '/detect', _png_bytes()[0][:60], 'cut.png')
    assert response.status_code == 400
    assert 'cut.png' in response.get_data(as_text=True)
    assert 'corrupt or truncated' in response.get_data(as_text=True)
    response = app_client.post('/api/detect', data={}, content_type='multipart/form-data')
    assert response.status_code == 400
    assert 'form field "image"' in response.get_json()['error']
    assert stub.calls == []


def test_oversized_upload_gets_413(stub):
    client = web.create_app(stub, CLASS_NAMES, max_upload_mb=0.01).test_client()
    data, _ = _png_bytes()
    response = _upload(client, '/api/detect', data + b'\0' * 20000)
    assert response.status_code == 413
    assert response.get_json() == {'error': 'upload larger than 0.01 MB'}
    assert _upload(client, '/detect', data + b'\0' * 20000).status_code == 413
    assert stub.calls == []


@pytest.mark.parametrize('code, status', [('INVALID_ARGUMENT', 400), (400, 400),
                                          ('UNAVAILABLE', 502), (404, 502)])
def test_model_server_errors(code, status):
    detector = _StubDetector(protocols.ServingError('it went wrong\nsecond line', code))
    client = web.create_app(detector, CLASS_NAMES).test_client()
    response = _upload(client, '/api/detect', _png_bytes()[0])
    assert response.status_code == status
    assert response.get_json() == {'error': 'model server: it went wrong'}


def _start_page(port, *flags, **env):
    """``python -m serving.web`` on ``port`` (REST to a server that is not there: the page
    starts anyway); returns the process once the port answers."""
    import requests
    proc = subprocess.Popen(
        [sys.executable, '-m', 'serving.web', '--protocol=rest', '--server=127.0.0.1:9',
         '--port=%d' % port] + list(flags), cwd=REPO_ROOT, env=dict(os.environ, **env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            requests.get('http://127.0.0.1:%d/' % port, timeout=2)
            return proc
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail('the page did not start: %s' % proc.communicate()[1])


def _free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize('flags, debugger', [([], False), (['--debug'], True)])
def test_debugger_only_with_the_debug_flag_never_from_flask_debug(flags, debugger):
    import requests
    port = _free_port()
    proc = _start_page(port, *flags, FLASK_DEBUG='1')
    try:
        # The debugger serves its own files under ?__debugger__=yes; the page alone does not.
        resource = requests.get('http://127.0.0.1:%d/?__debugger__=yes&cmd=resource&f=debugger.js'
                                % port, timeout=10)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    served_by_debugger = resource.headers['Content-Type'].startswith('text/javascript')
    assert served_by_debugger == debugger, (resource.headers, stderr)
    assert ('warning: --debug runs the Werkzeug debugger' in stderr) == debugger


# --- Docker files -----------------------------------------------------------------------------

def _dockerfile_copies():
    """Repository paths the Dockerfile copies (files; folders end with /)."""
    with open(os.path.join(REPO_ROOT, 'serving', 'clients', 'Dockerfile')) as f:
        text = f.read()
    sources = []
    for line in text.splitlines():
        if line.startswith('COPY '):
            sources.extend(line.split()[1:-1])
    return sources


def test_dockerfile_copies_every_module_the_page_imports():
    sources = _dockerfile_copies()
    for source in sources:
        assert os.path.exists(os.path.join(REPO_ROOT, source)), source
    # Import the page and run the detected_model client path (the one needing nets/) with
    # TensorFlow made unimportable, then list the repository modules that got loaded.
    code = '''
import json, sys
sys.modules["tensorflow"] = None
import numpy as np
from serving.clients import client, web
class Transport(object):
    def predict(self, model_name, inputs, signature_name, version=None):
        shapes = [(38, 4), (19, 6), (10, 6), (5, 6), (3, 4), (1, 4)]
        out = {}
        for i, (size, anchors) in enumerate(shapes):
            out["predict%d" % i] = np.full((1, size, size, anchors, 6), 1. / 6, np.float32)
            out["local%d" % i] = np.zeros((1, size, size, anchors, 4), np.float32)
        return out
detector = client.DetectionClient(Transport(), "m", "detected_model", select_threshold=0.1)
detections = detector.detect_array(np.zeros((50, 60, 3), np.uint8))
web.render_jpeg(np.zeros((50, 60, 3), np.uint8), detections, ["a"] * 5, (50, 60))
print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values())
                        if getattr(m, "__file__", None) and m.__file__.startswith(sys.argv[1])
                        and ".venv" not in m.__file__)))
'''
    result = subprocess.run([sys.executable, '-c', code, REPO_ROOT + os.sep], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = [os.path.relpath(path, REPO_ROOT) for path in json.loads(result.stdout)]
    assert 'nets/np_postprocess.py' in loaded and 'utils/visualization.py' in loaded
    for path in loaded:
        assert path in sources or os.path.dirname(path) + '/' in sources, path
    with open(os.path.join(REPO_ROOT, 'serving', 'clients', 'requirements.txt')) as f:
        pinned = re.findall(r'^([\w-]+)==', f.read(), re.M)
    assert 'tensorflow' not in ' '.join(pinned)
    assert {'Flask', 'gunicorn', 'requests', 'numpy', 'opencv-python-headless'} <= set(pinned)


def test_docker_run_sh_builds_the_serving_command(tmp_path):
    script = os.path.join(REPO_ROOT, 'docker_run.sh')
    subprocess.run(['bash', '-n', script], check=True)
    (tmp_path / 'export' / 'cars' / '1').mkdir(parents=True)
    env = dict(os.environ, DRY_RUN='1')
    result = subprocess.run([script, str(tmp_path / 'export'), 'cars'], env=env,
                            capture_output=True, text=True, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    import shlex
    assert shlex.split(result.stdout) == [
        'docker', 'run', '--rm', '-t', '-p', '8500:8500', '-p', '8501:8501', '--mount',
        'type=bind,source=%s,target=/models/cars' % (tmp_path / 'export' / 'cars'),
        '-e', 'MODEL_NAME=cars', 'tensorflow/serving', '--tensorflow_intra_op_parallelism=0',
        '--tensorflow_inter_op_parallelism=0']
    threads = dict(env, INTRA_OP_THREADS='2', INTER_OP_THREADS='1')
    result = subprocess.run([script, str(tmp_path / 'export'), 'cars'], env=threads,
                            capture_output=True, text=True, cwd=str(tmp_path))
    assert shlex.split(result.stdout)[-2:] == ['--tensorflow_intra_op_parallelism=2',
                                               '--tensorflow_inter_op_parallelism=1']
    result = subprocess.run([script, str(tmp_path / 'nowhere')], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert result.stderr.startswith('error: model folder %s not found'
                                    % (tmp_path / 'nowhere' / 'ssd_vgg_300'))


def test_docker_run_bat_matches_the_shell_script():
    # No cmd.exe here: check the .bat passes the same ports, mount and variable as the .sh.
    with open(os.path.join(REPO_ROOT, 'docker_run.bat'), 'rb') as f:
        text = f.read().decode('ascii')
    assert '\r\n' in text  # CRLF line ends for cmd.exe
    command = re.search(r'^set CMD=(.*)$', text, re.M).group(1)
    assert command.split() == [
        'docker', 'run', '--rm', '-t', '-p', '%GRPC_PORT%:8500', '-p', '%REST_PORT%:8501',
        '--mount', '"type=bind,source=%MODEL_DIR%,target=/models/%MODEL_NAME%"',
        '-e', 'MODEL_NAME=%MODEL_NAME%', '%IMAGE%',
        '--tensorflow_intra_op_parallelism=%INTRA_OP_THREADS%',
        '--tensorflow_inter_op_parallelism=%INTER_OP_THREADS%']
    assert 'if "%INTRA_OP_THREADS%"=="" set "INTRA_OP_THREADS=0"' in text
    assert 'if "%INTER_OP_THREADS%"=="" set "INTER_OP_THREADS=0"' in text
    assert 'if "%GRPC_PORT%"=="" set "GRPC_PORT=8500"' in text
    assert 'if "%REST_PORT%"=="" set "REST_PORT=8501"' in text


# --- Headless Chromium ------------------------------------------------------------------------

class DevTools(object):
    """A minimal Chrome DevTools Protocol session on one page target."""

    def __init__(self, ws_url):
        import websocket
        self.ws = websocket.create_connection(ws_url, timeout=60)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({'id': self.next_id, 'method': method, 'params': params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get('id') == self.next_id:
                if 'error' in message:
                    raise RuntimeError('%s: %s' % (method, message['error']))
                return message['result']
            self.events.append(message)

    def wait_event(self, method, timeout=60.):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for index, event in enumerate(self.events):
                if event.get('method') == method:
                    return self.events.pop(index)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def evaluate(self, expression):
        result = self.call('Runtime.evaluate', expression=expression, returnByValue=True)
        return result['result'].get('value')

    def close(self):
        self.ws.close()


def _start_chromium(profile):
    process = subprocess.Popen(
        [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
         '--no-first-run', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--user-data-dir=%s' % profile, '--remote-debugging-port=0',
         '--window-size=1100,1000', 'about:blank'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = os.path.join(profile, 'DevToolsActivePort')
    deadline = time.time() + 60
    while not (os.path.exists(port_file) and open(port_file).read().count('\n') >= 1):
        if time.time() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError('chromium did not open its DevTools port')
        time.sleep(0.2)
    return process, int(open(port_file).read().split()[0])


def _page_ws_url(port):
    import requests
    deadline = time.time() + 30
    while time.time() < deadline:
        pages = [t for t in requests.get('http://127.0.0.1:%d/json/list' % port, timeout=5).json()
                 if t['type'] == 'page']
        if pages:
            return pages[0]['webSocketDebuggerUrl']
        time.sleep(0.2)
    raise RuntimeError('no page target in chromium')


@pytest.fixture
def live_page(tmp_path):
    """URL of the page (REST to a local model server with the fixture model), its class names."""
    from werkzeug.serving import make_server
    from serving.server import model_server
    from test import serving_fixtures
    base = tmp_path / 'models'
    base.mkdir()
    version_dir = serving_fixtures.write_model_version(str(base), 1)
    server = model_server.start_server('cars', str(base), poll_wait_seconds=60)
    app = web.create_client_app('localhost:%d' % server.rest_api_port, 'rest', 'cars',
                                model_info=version_dir)
    http = make_server('127.0.0.1', 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d/' % http.server_port
    http.shutdown()
    server.stop()


@pytest.mark.skipif(CHROMIUM is None, reason='chromium is not installed')
def test_upload_in_headless_chromium(live_page, tmp_path):
    picture = tmp_path / 'street.jpg'
    try:
        source = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'test_images', 'vehicle_0.jpg')
        shutil.copy(source, str(picture))
    except OSError:  # no shared data: a generated picture does as well
        import cv2
        cv2.imwrite(str(picture), np.random.RandomState(1).randint(0, 255, (240, 320, 3), np.uint8))
    profile = tempfile.mkdtemp(prefix='chromium-profile-')
    process, port = _start_chromium(profile)
    try:
        tools = DevTools(_page_ws_url(port))
        tools.call('Page.enable')
        tools.call('Page.navigate', url=live_page)
        tools.wait_event('Page.loadEventFired')
        root = tools.call('DOM.getDocument')['root']['nodeId']
        node = tools.call('DOM.querySelector', nodeId=root, selector='#image')['nodeId']
        tools.call('DOM.setFileInputFiles', nodeId=node, files=[str(picture)])
        tools.evaluate("document.getElementById('submit').click()")
        tools.wait_event('Page.loadEventFired')
        state = tools.evaluate(
            "JSON.stringify({rows: document.querySelectorAll('tr.detection').length,"
            " count: document.getElementById('detections').dataset.count,"
            " width: document.getElementById('result').naturalWidth,"
            " complete: document.getElementById('result').complete,"
            " firstClass: (document.querySelector('tr.detection td') || {}).textContent})")
        state = json.loads(state)
        shot = base64.b64decode(tools.call('Page.captureScreenshot', format='png')['data'])
        tools.close()
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(profile, ignore_errors=True)
    with open(os.environ.get('WEB_SCREENSHOT', str(tmp_path / 'result.png')), 'wb') as f:
        f.write(shot)
    import cv2
    expected_width = cv2.imread(str(picture)).shape[1]
    assert state['complete'] and state['width'] == expected_width
    assert state['rows'] == int(state['count']) > 0
    assert state['firstClass'] in CLASS_NAMES
    screenshot = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    assert screenshot is not None and screenshot.shape[1] == 1100
