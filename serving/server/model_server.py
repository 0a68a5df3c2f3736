"""Local model server speaking TF Serving's gRPC and REST APIs, for machines without Docker.

    python -m serving.model_server --model_name=ssd --model_base_path=/path/to/export/ssd \\
        [--port=8500] [--rest_api_port=8501] [--file_system_poll_wait_seconds=1] [--host=127.0.0.1]

``--model_base_path`` holds integer version folders (``1/``, ``2/`` ... each a SavedModel with tag
``serve``). The newest loadable version is served and new versions are picked up without a
restart (see ``serving/server/version_manager.py``). SIGTERM / SIGINT stop accepting requests, close
idle connections, let the requests in flight finish (for up to 30 s), unload the model and
exit 0.

What one request may cost is bounded before TensorFlow runs it: ``--max_image_pixels`` per
encoded image (read from its header), ``--max_request_pixels`` for all of them together,
``--max_batch_rows`` images (rows) per request,
``--max_tensor_elements`` per input tensor, ``--max_request_bytes`` per message or body, and
``--rest_api_timeout_in_ms`` for every read and write on a REST connection. Over a limit the
answer is INVALID_ARGUMENT (REST 400) naming the limit and its flag.

Unlike tensorflow_model_server, the default ``--host`` is 127.0.0.1: the server has no
authentication, so other machines (or Docker containers) reach it only with ``--host=0.0.0.0``.

Tests and demos start it in-process with ``start_server(...)``, which returns a ``ModelServer``
with the bound ``grpc_port`` / ``rest_api_port`` and ``stop()``.

This module imports the serving stack (and so TensorFlow, several seconds) only inside
``start_server``, after the flags are checked, so a mistyped flag is reported at once.
"""
import logging
import os
import signal
import sys
import threading

from model.versions import parse_version
from serving import defaults
from serving.server import batching
from serving.server.limits import DEFAULT_LIMITS, RequestLimits
from utils import cli

logger = logging.getLogger('serving.model_server')

DEFAULT_GRPC_THREADS = 16


class ModelServer(object):
    """A running server: ``grpc_port``, ``rest_api_port`` (None when disabled), ``manager``.

    Use ``stop()`` (or ``with``) to shut down: stops accepting, finishes in-flight requests,
    unloads the model.
    """

    def __init__(self, manager, grpc_server, grpc_port, rest_server):
        self.manager = manager
        self.grpc_port = grpc_port
        self.rest_api_port = rest_server.port if rest_server is not None else None
        self._grpc_server = grpc_server
        self._rest_server = rest_server
        self._stopped = False

    def stop(self, grace_seconds=defaults.SHUTDOWN_GRACE_SECONDS):
        """Both front ends stop accepting; requests in flight get ``grace_seconds`` to finish."""
        if self._stopped:
            return
        self._stopped = True
        done = self._grpc_server.stop(grace_seconds)
        if self._rest_server is not None:
            self._rest_server.stop(grace_seconds)
        done.wait()
        self.manager.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()


def start_server(model_name, model_base_path, port=0, rest_api_port=0, poll_wait_seconds=1.,
                 host='127.0.0.1', max_request_bytes=defaults.MAX_MESSAGE_BYTES,
                 grpc_max_threads=DEFAULT_GRPC_THREADS, intra_op_threads=0, inter_op_threads=0,
                 version_labels=None, limits=DEFAULT_LIMITS,
                 rest_timeout_seconds=defaults.REST_TIMEOUT_SECONDS, batching=None):
    """Binds the ports, loads the newest version, then starts serving; returns a ``ModelServer``.

    ``port`` / ``rest_api_port``: 0 picks a free port, ``rest_api_port=None`` disables REST.
    ``intra_op_threads`` / ``inter_op_threads``: TensorFlow session threads (0 = TF chooses).
    ``version_labels``: dict label -> version. ``limits``: a ``serving.server.limits.RequestLimits``;
    ``rest_timeout_seconds``: of every read and write on a REST connection. ``batching``: a
    ``serving.server.batching.BatchingParameters`` to batch concurrent requests, or None. Raises
    ``cli.UsageError`` when a port cannot be bound or the base path is not a folder.
    """
    if not os.path.isdir(model_base_path):
        raise cli.UsageError('--model_base_path %s is not a folder' % model_base_path)
    # Imported here: they pull in TensorFlow (seconds), and the CLI checks its flags before that.
    from serving.server.grpc_service import create_grpc_server
    from serving.server.rest_api import RestApiServer
    from serving.server.servable import session_config
    from serving.server.version_manager import VersionManager

    manager = VersionManager(model_name, model_base_path,
                             session_config(intra_op_threads, inter_op_threads), version_labels,
                             limits, batching)
    # Bind both ports before the (slow) model load, so a taken port fails at once.
    try:
        grpc_server, grpc_port = create_grpc_server(
            manager, '%s:%d' % (host, port), max_request_bytes, grpc_max_threads)
    except RuntimeError as err:
        raise cli.UsageError('--port %d on %s: cannot bind (%s)' % (port, host, err))
    rest_server = None
    if rest_api_port is not None:
        try:
            rest_server = RestApiServer(manager, host, rest_api_port, max_request_bytes,
                                        rest_timeout_seconds)
        except OSError as err:
            grpc_server.stop(None)
            raise cli.UsageError('--rest_api_port %d on %s: cannot bind (%s)' % (
                rest_api_port, host, err.strerror))
    manager.start(poll_wait_seconds)
    grpc_server.start()
    if rest_server is not None:
        rest_server.start()
    logger.info('serving model %r from %s: gRPC on %s:%d, REST %s', model_name, model_base_path,
                host, grpc_port,
                'on %s:%d' % (host, rest_server.port) if rest_server is not None else 'disabled')
    return ModelServer(manager, grpc_server, grpc_port, rest_server)


def define_flags():
    """The server's own flags (a ``utils.cli.FlagSet``): tensorflow_model_server's names."""
    flag_set = cli.FlagSet()
    flag_set.group('Model')
    flag_set.string('model_name', None, 'Name clients use in model_spec / the REST path.')
    flag_set.string('model_base_path', None, 'Folder holding integer version subfolders '
                    '(SavedModels with tag "serve").')
    flag_set.float('file_system_poll_wait_seconds', 1.,
                   'Seconds between scans of --model_base_path for new versions.')
    flag_set.string('version_labels', '', 'Optional version labels as label=version pairs, '
                    'e.g. "stable=2,canary=3".')
    flag_set.group('Network')
    flag_set.integer('port', 8500, 'gRPC port (0 picks a free one).')
    flag_set.integer('rest_api_port', 8501, 'REST port; 0 disables the REST API.')
    flag_set.string('host', '127.0.0.1',
                    'Interface to bind; 0.0.0.0 exposes the server to other machines.')
    flag_set.integer('max_request_bytes', defaults.MAX_MESSAGE_BYTES,
                     'Largest accepted request (gRPC message or REST body) in bytes.')
    flag_set.integer('grpc_max_threads', DEFAULT_GRPC_THREADS,
                     'Threads answering gRPC calls concurrently.')
    flag_set.integer('rest_api_timeout_in_ms', int(defaults.REST_TIMEOUT_SECONDS * 1000),
                     'Timeout of every read and write on a REST connection; an idle client is '
                     'disconnected after it.')
    flag_set.group('Request limits (over one: INVALID_ARGUMENT / 400 naming the flag)')
    flag_set.pixel_limits()
    flag_set.integer('max_batch_rows', DEFAULT_LIMITS.max_batch_rows,
                     'Most rows (e.g. images of serving_default) in one request, along the first '
                     'axis of inputs with a variable batch size.')
    flag_set.integer('max_tensor_elements', DEFAULT_LIMITS.max_tensor_elements,
                     'Most elements of one input tensor, as its shape declares them.')
    flag_set.group('TensorFlow session')
    flag_set.boolean('enable_batching', False,
                     'Batch concurrent requests into shared session runs (TF Serving\'s flag; off '
                     'by default). Pays where a batch costs less per image than single runs, '
                     'e.g. a bfloat16 export.')
    flag_set.string('batching_parameters_file', '',
                    'TF Serving BatchingParameters text file (max_batch_size { value: 8 }, '
                    'batch_timeout_micros { value: 5000 }, num_batch_threads, '
                    'max_enqueued_batches); default values without it. Needs --enable_batching.')
    flag_set.boolean('adaptive_batching', True,
                     'With --enable_batching, measure throughput batched and with requests run at '
                     'once, keep the faster and measure again from time to time (ours, not TF '
                     'Serving\'s: batching then never lowers throughput); '
                     '--noadaptive_batching batches always.')
    flag_set.integer('tensorflow_intra_op_parallelism', 0,
                     'Threads inside one op, oneDNN\'s included (0 = TensorFlow chooses: the '
                     'number of cores). TF Serving\'s flag: SavedModels carry no session '
                     'options; bench/bench_threads.py measures which value pays.')
    flag_set.integer('tensorflow_inter_op_parallelism', 0,
                     'Ops run at once (0 = TensorFlow chooses; negative: in the calling '
                     'thread). TF Serving\'s flag.')
    return flag_set


def parse_version_labels(text):
    """'stable=2,canary=3' -> {'stable': 2, 'canary': 3}; UsageError on a malformed pair."""
    labels = {}
    for pair in filter(None, (p.strip() for p in text.split(','))):
        label, _, version = pair.partition('=')
        if not label or parse_version(version) is None:
            raise cli.UsageError('--version_labels: %r is not label=version (e.g. stable=2)'
                                 % pair)
        labels[label] = parse_version(version)
    return labels


def batching_from_flags(enable_batching, parameters_file, adaptive=True):
    """``BatchingParameters`` for ``--enable_batching`` (from ``--batching_parameters_file``
    when given, ``adaptive`` from ``--adaptive_batching``), or None; ``UsageError`` names the
    flag or the file's bad field."""
    if not enable_batching:
        if parameters_file:
            raise cli.UsageError('--batching_parameters_file needs --enable_batching')
        return None
    parameters = batching.DEFAULT_PARAMETERS
    if parameters_file:
        try:
            with open(parameters_file) as f:
                text = f.read()
        except OSError as err:
            raise cli.UsageError('--batching_parameters_file %s: %s' % (parameters_file,
                                                                    err.strerror))
        try:
            parameters = batching.parse_batching_parameters(
                text, '--batching_parameters_file %s' % parameters_file)
        except batching.BatchingConfigError as err:
            raise cli.UsageError(str(err))
    return parameters._replace(adaptive=adaptive)


def server_from_flags(options):
    """Validates the parsed flags ``options`` (or any object with the same attributes) and starts
    the server; ``UsageError`` names the bad flag."""
    for name in ('model_name', 'model_base_path'):
        if not getattr(options, name):
            raise cli.UsageError('--%s is required' % name)
    if options.file_system_poll_wait_seconds <= 0:
        raise cli.UsageError('--file_system_poll_wait_seconds must be > 0, got %g' %
                             options.file_system_poll_wait_seconds)
    for name in ('port', 'rest_api_port'):
        if not 0 <= getattr(options, name) <= 65535:
            raise cli.UsageError('--%s must be in 0..65535, got %d'
                                 % (name, getattr(options, name)))
    for name in ('max_request_bytes', 'grpc_max_threads', 'rest_api_timeout_in_ms',
                 'max_image_pixels', 'max_request_pixels', 'max_batch_rows',
                 'max_tensor_elements'):
        if getattr(options, name) <= 0:
            raise cli.UsageError('--%s must be > 0, got %d' % (name, getattr(options, name)))
    if options.tensorflow_intra_op_parallelism < 0:
        raise cli.UsageError('--tensorflow_intra_op_parallelism must be >= 0, got %d'
                             % options.tensorflow_intra_op_parallelism)
    batching = batching_from_flags(options.enable_batching, options.batching_parameters_file,
                                   options.adaptive_batching)
    return start_server(
        options.model_name, os.path.abspath(options.model_base_path), port=options.port,
        rest_api_port=options.rest_api_port or None,
        poll_wait_seconds=options.file_system_poll_wait_seconds, host=options.host,
        max_request_bytes=options.max_request_bytes, grpc_max_threads=options.grpc_max_threads,
        intra_op_threads=options.tensorflow_intra_op_parallelism,
        inter_op_threads=options.tensorflow_inter_op_parallelism,
        version_labels=parse_version_labels(options.version_labels),
        limits=RequestLimits(options.max_image_pixels, options.max_batch_rows,
                             options.max_tensor_elements, options.max_request_pixels),
        rest_timeout_seconds=options.rest_api_timeout_in_ms / 1000., batching=batching)


def _serve(options):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a root handler would print every line twice
    # TensorFlow's deprecation and "Restoring parameters" lines would bury the load/unload log.
    logging.getLogger('tensorflow').setLevel(logging.ERROR)
    # Installed before the (slow) start so a signal during loading also ends in a clean stop.
    stop_requested = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_requested.set())
    server = server_from_flags(options)
    while not stop_requested.wait(0.5):
        pass
    logger.info('shutting down: finishing requests in flight')
    server.stop()
    logger.info('server stopped')
    return 0


main = cli.make_main(__doc__, define_flags, _serve)
