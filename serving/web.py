r"""Flask web page of the SSD detector, talking to TF Serving or serving.model_server.

    python -m serving.web --server=localhost:8500 --protocol=grpc --model_name=ssd_vgg_300 \
        --model_info=export/ssd_vgg_300/1 --port=5000
    gunicorn -b 0.0.0.0:5000 'serving.web:create_app_from_env()'   # settings from SSD_* variables

Routes:
- ``GET /``: upload form.
- ``POST /detect`` (form field ``image``): result page with the picture, boxes drawn, and a
  table of detections (class, score, box ``[ymin, xmin, ymax, xmax]`` in pixels).
- ``POST /api/detect`` (form field ``image``, or the raw bytes with an ``image/*`` body):
  ``{"width", "height", "detections": [{"class_id", "class_name", "score", "box"}]}``.
Uploads larger than ``max_upload_mb`` answer 413, non-images 400, server refusals 400/502;
the JSON endpoint answers errors as ``{"error": ...}``.
"""
import base64
import io
import os
import sys

import flask

from serving import client as client_lib
from serving import protocols
from utils import detection_io

DEFAULT_MAX_UPLOAD_MB = 8
_MAGIC = ((b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'))
# Environment variables read by create_app_from_env() (gunicorn / Docker).
ENV_PREFIX = 'SSD_'


class UploadError(ValueError):
    """An upload that is not a usable image; ``status`` is the HTTP status to answer."""

    def __init__(self, message, status=400):
        super(UploadError, self).__init__(message)
        self.status = status


def check_image_bytes(data, name):
    """Validates an upload; returns the decoded RGB uint8 ``[H, W, 3]`` image."""
    if not data:
        raise UploadError('uploaded file %r is empty' % name)
    if not any(data.startswith(magic) for magic, _ in _MAGIC):
        raise UploadError('uploaded file %r is not a JPEG or PNG image' % name)
    try:
        return client_lib.decode_image(data, 'uploaded file %r' % name)
    except client_lib.ClientError as e:
        raise UploadError('%s (corrupt or truncated)' % e)


def render_png(image, detections, class_names):
    """The image with its detections drawn (``utils.visualization``), as PNG bytes."""
    from utils import visualization
    figure = visualization.detections_figure(image, detections.boxes, detections.classes,
                                             detections.scores, class_names or [])
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    return buffer.getvalue()


def detections_json(detections, class_names):
    """``Detections`` → list of JSON-ready dicts (boxes in pixels)."""
    rows = []
    for box, score, label in zip(detections.boxes, detections.scores, detections.classes):
        rows.append({'class_id': int(label),
                     'class_name': detection_io.class_label(label, class_names),
                     'score': round(float(score), 4),
                     'box': [round(float(v), 2) for v in box]})
    return rows


def _serving_status(error):
    # The model refused the request (bad image for the graph): the user's fault. Anything else
    # (server down, unknown model) is the gateway's.
    return 400 if error.code in ('INVALID_ARGUMENT', 400) else 502


def create_app(detect, class_names=None, max_upload_mb=DEFAULT_MAX_UPLOAD_MB, title='SSD detector'):
    """The Flask app.

    ``detect``: callable ``(encoded bytes, name) -> client.Detections`` (boxes in pixels), e.g.
    ``DetectionClient.detect``; ``class_names``: id order, no background (None: ids shown).
    """
    app = flask.Flask(__name__)
    app.config['MAX_CONTENT_LENGTH'] = int(max_upload_mb * 1024 * 1024)
    app.config['DETECT'] = detect
    app.config['CLASS_NAMES'] = class_names
    app.config['TITLE'] = title

    def read_upload():
        upload = flask.request.files.get('image')
        if upload is not None:
            return upload.read(), upload.filename or 'upload'
        if flask.request.mimetype.startswith('image/'):
            return flask.request.get_data(), 'request body'
        raise UploadError('no image: send the file in the form field "image"')

    def run(data, name):
        image = check_image_bytes(data, name)
        try:
            detections = detect(data, name)
        except protocols.ServingError as e:
            message = str(e).strip().splitlines()[0] if str(e).strip() else 'no message'
            raise UploadError('model server: %s' % message, _serving_status(e))
        return image, detections

    @app.get('/')
    def index():
        return flask.render_template('index.html', title=title,
                                     max_upload_mb=max_upload_mb)

    @app.post('/detect')
    def detect_page():
        try:
            data, name = read_upload()
            image, detections = run(data, name)
        except UploadError as e:
            return flask.render_template('index.html', title=title, max_upload_mb=max_upload_mb,
                                         error=str(e)), e.status
        picture = base64.b64encode(render_png(image, detections, class_names)).decode('ascii')
        return flask.render_template('result.html', title=title, filename=name,
                                     width=image.shape[1], height=image.shape[0],
                                     picture=picture,
                                     detections=detections_json(detections, class_names))

    @app.post('/api/detect')
    def detect_api():
        try:
            data, name = read_upload()
            image, detections = run(data, name)
        except UploadError as e:
            return flask.jsonify(error=str(e)), e.status
        return flask.jsonify(width=int(image.shape[1]), height=int(image.shape[0]),
                             detections=detections_json(detections, class_names))

    @app.errorhandler(413)
    def too_large(_):
        message = 'upload larger than %g MB' % max_upload_mb
        if flask.request.path.startswith('/api/'):
            return flask.jsonify(error=message), 413
        return flask.render_template('index.html', title=title, max_upload_mb=max_upload_mb,
                                     error=message), 413

    return app


def create_client_app(server, protocol, model_name, signature='serving_default', version=None,
                      model_info=None, labels_file=None, max_upload_mb=DEFAULT_MAX_UPLOAD_MB,
                      timeout=protocols.DEFAULT_TIMEOUT):
    """``create_app`` on a ``DetectionClient`` for ``server`` (``HOST:PORT``)."""
    transport = protocols.make_transport(protocol, server, timeout)
    detector = client_lib.DetectionClient(transport, model_name, signature, version)
    class_names = client_lib.load_class_names(model_info, labels_file)
    return create_app(detector.detect, class_names, max_upload_mb,
                      title='SSD detector: %s (%s %s)' % (model_name, protocol, server))


def create_app_from_env(environ=None):
    """``create_client_app`` configured by ``SSD_SERVER``, ``SSD_PROTOCOL``, ``SSD_MODEL_NAME``,
    ``SSD_SIGNATURE``, ``SSD_MODEL_INFO``, ``SSD_LABELS_FILE``, ``SSD_MAX_UPLOAD_MB`` (gunicorn)."""
    env = os.environ if environ is None else environ

    def get(name, default=None):
        return env.get(ENV_PREFIX + name) or default

    return create_client_app(get('SERVER', 'localhost:8500'), get('PROTOCOL', 'grpc'),
                             get('MODEL_NAME', 'ssd_vgg_300'), get('SIGNATURE', 'serving_default'),
                             None, get('MODEL_INFO'), get('LABELS_FILE'),
                             float(get('MAX_UPLOAD_MB', DEFAULT_MAX_UPLOAD_MB)))


def _define_flags():
    from absl import flags
    # Model server.
    flags.DEFINE_string('server', 'localhost:8500', 'HOST:PORT of the model server.')
    flags.DEFINE_enum('protocol', 'grpc', list(protocols.PROTOCOLS), 'Wire protocol.')
    flags.DEFINE_string('model_name', 'ssd_vgg_300', 'Model name on the server.')
    flags.DEFINE_enum('signature', 'serving_default', list(client_lib.SIGNATURES),
                      'Signature the page queries.')
    # Class names.
    flags.DEFINE_string('model_info', None, 'model_info.json, or the export version folder.')
    flags.DEFINE_string('labels_file', None, 'Class names, one per line (line 1 = id 1).')
    # Web server.
    flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface).')
    flags.DEFINE_integer('port', 5000, 'Port of the page.')
    flags.DEFINE_float('max_upload_mb', DEFAULT_MAX_UPLOAD_MB, 'Largest accepted upload, MB.')
    return flags.FLAGS


def main(argv):
    if len(argv) > 1:
        print('error: unexpected arguments %s' % ' '.join(argv[1:]), file=sys.stderr)
        return 2
    try:
        app = create_client_app(FLAGS.server, FLAGS.protocol, FLAGS.model_name, FLAGS.signature,
                                model_info=FLAGS.model_info, labels_file=FLAGS.labels_file,
                                max_upload_mb=FLAGS.max_upload_mb)
    except (client_lib.ClientError, protocols.ServingError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    app.run(host=FLAGS.host, port=FLAGS.port, threaded=True)
    return 0


if __name__ == '__main__':
    from absl import app as absl_app
    FLAGS = _define_flags()
    absl_app.run(main)
