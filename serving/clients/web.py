r"""Flask web page of the SSD detector, talking to TF Serving or serving.model_server.

    python -m serving.web --server=localhost:8500 --protocol=grpc --model_name=ssd_vgg_300 \
        --model_info=export/ssd_vgg_300/1 --port=5000
    gunicorn -b 0.0.0.0:5000 'serving.web:create_app_from_env()'   # settings from SSD_* variables

Routes:
- ``GET /``: upload form.
- ``POST /detect`` (form field ``image``): result page with the picture, boxes drawn, and a
  table of detections (class, score, box ``[ymin, xmin, ymax, xmax]`` in pixels).
- ``POST /api/detect`` (form field ``image``, or the raw bytes with an ``image/*`` body):
  ``{"width", "height", "orientation", "detections": [{"class_id", "class_name", "score",
  "box"}]}``.
A photo is turned upright by its EXIF ``orientation`` (1..8, ``utils/exif.py``) before detection,
as photo viewers show it: the picture, the boxes and ``width``/``height`` are in that upright
frame (the model server gets the upright image). Uploads larger than ``max_upload_mb`` answer 413;
non-images, and images whose header declares more than ``max_image_pixels`` pixels (one image per
request: the request's whole pixel budget), 400 before anything decodes them; server refusals
400/502. The JSON endpoint answers errors as ``{"error": ...}``.

The result page shows the picture at display size (longest side at most ``DISPLAY_MAX_SIDE``,
JPEG decoded at a reduced scale when it is larger) as a JPEG; the table keeps the pixels of the
original image. The Werkzeug debugger runs only with ``--debug`` (never from ``FLASK_DEBUG``).
"""
import base64
import collections
import os
import sys

import flask
import numpy as np

from serving.clients import client as client_lib
from serving.clients import protocols
from utils import cli
from utils import detection_io
from utils import exif
from utils import image_header
from utils.errors import ToolkitError

DEFAULT_MAX_UPLOAD_MB = 8
DEFAULT_MAX_IMAGE_PIXELS = image_header.DEFAULT_MAX_IMAGE_PIXELS
ACCEPTED_FORMATS = ('JPEG', 'PNG')
# The picture of the result page: at most this many pixels on its longest side, JPEG quality.
DISPLAY_MAX_SIDE = 1280
DISPLAY_JPEG_QUALITY = 90
# Environment variables read by create_app_from_env() (gunicorn / Docker).
ENV_PREFIX = 'SSD_'


class UploadError(ToolkitError, ValueError):
    """An upload that is not a usable image; ``status`` is the HTTP status to answer."""

    def __init__(self, message, status=400):
        super(UploadError, self).__init__(message)
        self.status = status


def check_image_bytes(data, name, max_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """Validates an upload from its header alone; returns its ``(height, width)``."""
    if not data:
        raise UploadError('uploaded file %r is empty' % name)
    if image_header.image_format(data) not in ACCEPTED_FORMATS:
        raise UploadError('uploaded file %r is not a JPEG or PNG image' % name)
    try:
        return image_header.check_image_pixels(data, max_pixels, 'uploaded file %r' % name)
    except image_header.ImageHeaderError as e:
        raise UploadError(str(e))


def _reduced_decode_flag(height, width):
    """The ``cv2.imdecode`` flag that decodes at 1/2, 1/4 or 1/8 scale (JPEG does it while
    decoding) when the picture stays at least ``DISPLAY_MAX_SIDE`` on its longest side."""
    import cv2
    flag = cv2.IMREAD_COLOR
    for factor, reduced in ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                            (8, cv2.IMREAD_REDUCED_COLOR_8)):
        if max(height, width) >= factor * DISPLAY_MAX_SIDE:
            flag = reduced
    return flag | cv2.IMREAD_IGNORE_ORIENTATION


def display_image(data, name, height, width):
    """Encoded upload of stored size ``(height, width)`` → RGB uint8 picture, upright by its EXIF
    orientation, whose longest side is at most ``DISPLAY_MAX_SIDE`` (the original size when
    smaller)."""
    import cv2
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _reduced_decode_flag(height, width))
    if image is None:
        raise UploadError('uploaded file %r is not a JPEG or PNG image (corrupt or truncated)'
                          % name)
    scale = min(1., float(DISPLAY_MAX_SIDE) / max(height, width))
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if (image.shape[1], image.shape[0]) != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return exif.upright(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), exif.orientation(data))


def render_jpeg(image, detections, class_names, original_size):
    """The display ``image`` with its detections drawn (``utils.visualization``), as JPEG bytes.

    ``detections`` are in pixels of the upright image of ``original_size = (height, width)``.
    """
    import cv2
    from utils import visualization
    scale = np.array([image.shape[0] / float(original_size[0]),
                      image.shape[1] / float(original_size[1])] * 2, np.float32)
    figure = visualization.detections_figure(image, np.asarray(detections.boxes) * scale,
                                             detections.classes, detections.scores,
                                             class_names or [])
    figure.canvas.draw()
    drawn = np.asarray(figure.canvas.buffer_rgba())[:, :, :3]
    # 4:4:4 keeps the colour of thin box lines that 4:2:0 subsampling would smear.
    ok, encoded = cv2.imencode('.jpg', cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, DISPLAY_JPEG_QUALITY,
                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    return encoded.tobytes()


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


Upload = collections.namedtuple('Upload', 'name size orientation image detections')
Upload.__doc__ = """One detected upload: ``size`` ``(height, width)`` of the upright picture,
``orientation`` its EXIF orientation, ``image`` the display picture (or None), ``detections`` in
pixels of the upright picture."""


def read_upload():
    """``(bytes, name)`` of the request's image (form field ``image`` or an ``image/*`` body)."""
    upload = flask.request.files.get('image')
    if upload is not None:
        return upload.read(), upload.filename or 'upload'
    if flask.request.mimetype.startswith('image/'):
        return flask.request.get_data(), 'request body'
    raise UploadError('no image: send the file in the form field "image"')


def detect_upload(detect, max_image_pixels, display):
    """The request's upload checked from its header, its display picture (when ``display``;
    decoded before the model server is asked, so a corrupt file costs no server call) and its
    detections, as an ``Upload``; raises UploadError."""
    data, name = read_upload()
    stored = check_image_bytes(data, name, max_image_pixels)
    orientation = exif.orientation(data)
    image = display_image(data, name, *stored) if display else None
    try:
        detections = detect(data, name)
    except protocols.ServingError as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else 'no message'
        raise UploadError('model server: %s' % message, _serving_status(e))
    size = stored[::-1] if exif.swaps_sides(orientation) else stored
    return Upload(name, tuple(size), orientation, image, detections)


def create_app(detect, class_names=None, max_upload_mb=DEFAULT_MAX_UPLOAD_MB, title='SSD detector',
               max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """The Flask app.

    ``detect``: callable ``(encoded bytes, name) -> client.Detections`` (boxes in pixels of the
    upright picture), e.g. ``DetectionClient.detect``; ``class_names``: id order, no background
    (None: ids shown); ``max_image_pixels``: largest width x height of an upload, read from its
    header.
    """
    app = flask.Flask(__name__)
    app.config['MAX_CONTENT_LENGTH'] = int(max_upload_mb * 1024 * 1024)

    def form_page(error, status):
        return flask.render_template('index.html', title=title, max_upload_mb=max_upload_mb,
                                     error=error), status

    @app.get('/')
    def index():
        return flask.render_template('index.html', title=title, max_upload_mb=max_upload_mb)

    @app.post('/detect')
    def detect_page():
        try:
            upload = detect_upload(detect, max_image_pixels, display=True)
        except UploadError as e:
            return form_page(str(e), e.status)
        picture = base64.b64encode(render_jpeg(upload.image, upload.detections, class_names,
                                               upload.size)).decode('ascii')
        return flask.render_template('result.html', title=title, filename=upload.name,
                                     width=upload.size[1], height=upload.size[0],
                                     picture=picture,
                                     detections=detections_json(upload.detections, class_names))

    @app.post('/api/detect')
    def detect_api():
        try:
            upload = detect_upload(detect, max_image_pixels, display=False)
        except UploadError as e:
            return flask.jsonify(error=str(e)), e.status
        return flask.jsonify(width=upload.size[1], height=upload.size[0],
                             orientation=upload.orientation,
                             detections=detections_json(upload.detections, class_names))

    @app.errorhandler(413)
    def too_large(_):
        message = 'upload larger than %g MB' % max_upload_mb
        if flask.request.path.startswith('/api/'):
            return flask.jsonify(error=message), 413
        return form_page(message, 413)

    return app


def create_client_app(server, protocol, model_name, signature='serving_default', version=None,
                      model_info=None, labels_file=None, max_upload_mb=DEFAULT_MAX_UPLOAD_MB,
                      timeout=protocols.DEFAULT_TIMEOUT, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS):
    """``create_app`` on a ``DetectionClient`` for ``server`` (``HOST:PORT``)."""
    transport = protocols.make_transport(protocol, server, timeout)
    detector = client_lib.DetectionClient(transport, model_name, signature, version)
    class_names = client_lib.load_class_names(model_info, labels_file)
    return create_app(detector.detect, class_names, max_upload_mb,
                      title='SSD detector: %s (%s %s)' % (model_name, protocol, server),
                      max_image_pixels=max_image_pixels)


def create_app_from_env(environ=None):
    """``create_client_app`` configured by ``SSD_SERVER``, ``SSD_PROTOCOL``, ``SSD_MODEL_NAME``,
    ``SSD_SIGNATURE``, ``SSD_MODEL_INFO``, ``SSD_LABELS_FILE``, ``SSD_MAX_UPLOAD_MB``,
    ``SSD_MAX_IMAGE_PIXELS`` (gunicorn)."""
    env = os.environ if environ is None else environ

    def get(name, default=None):
        return env.get(ENV_PREFIX + name) or default

    return create_client_app(get('SERVER', 'localhost:8500'), get('PROTOCOL', 'grpc'),
                             get('MODEL_NAME', 'ssd_vgg_300'), get('SIGNATURE', 'serving_default'),
                             None, get('MODEL_INFO'), get('LABELS_FILE'),
                             float(get('MAX_UPLOAD_MB', DEFAULT_MAX_UPLOAD_MB)),
                             max_image_pixels=int(get('MAX_IMAGE_PIXELS',
                                                      DEFAULT_MAX_IMAGE_PIXELS)))


def define_flags():
    """The page's own flags (a ``utils.cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('Model server')
    flag_set.string('server', 'localhost:8500', 'HOST:PORT of the model server.')
    flag_set.enum('protocol', 'grpc', protocols.PROTOCOLS, 'Wire protocol.')
    flag_set.string('model_name', 'ssd_vgg_300', 'Model name on the server.')
    flag_set.enum('signature', 'serving_default', client_lib.SIGNATURES,
                  'Signature the page queries.')
    flag_set.group('Class names')
    flag_set.string('model_info', None, 'model_info.json, or the export version folder.')
    flag_set.string('labels_file', None, 'Class names, one per line (line 1 = id 1).')
    flag_set.group('Web server')
    flag_set.string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface).')
    flag_set.integer('port', 5000, 'Port of the page.')
    flag_set.float('max_upload_mb', DEFAULT_MAX_UPLOAD_MB, 'Largest accepted upload, MB.')
    flag_set.integer('max_image_pixels', DEFAULT_MAX_IMAGE_PIXELS,
                     'Largest width x height of an upload, read from its header before anything '
                     'decodes it.')
    flag_set.boolean('debug', False, 'Run the Werkzeug debugger (anyone who reaches the page can '
                     'then run code on this machine: never on a shared network).')
    return flag_set


def _serve(options):
    app = create_client_app(options.server, options.protocol, options.model_name,
                            options.signature, model_info=options.model_info,
                            labels_file=options.labels_file,
                            max_upload_mb=options.max_upload_mb,
                            max_image_pixels=options.max_image_pixels)
    if options.debug:
        print('warning: --debug runs the Werkzeug debugger: anyone who reaches the page can run '
              'code on this machine', file=sys.stderr)
    # debug and load_dotenv given explicitly: FLASK_DEBUG (or a .env file) never turns the
    # debugger on. No reloader: it would restart the page in a child process.
    app.run(host=options.host, port=options.port, threaded=True, debug=options.debug,
            use_reloader=False, load_dotenv=False)
    return 0


main = cli.make_main(__doc__, define_flags, _serve)
