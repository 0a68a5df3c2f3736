"""TF Serving's REST API over a ``VersionManager`` (threaded ``http.server``, JSON in and out).

Routes (``<v>`` an integer version, ``<label>`` a version label):
- ``POST /v1/models/<name>[/versions/<v>|/labels/<label>]:predict`` with ``signature_name``
  (default ``serving_default``) and either ``instances`` (row format: a list, one entry per batch
  row, stacked along a new first axis; entries are objects naming the inputs, or bare values
  when the signature has one input) answered with ``predictions`` (one entry per row), or
  ``inputs`` (columnar: an object naming the inputs, or a bare value for a single input)
  answered with ``outputs`` (an object, or the bare value for a single output). String tensors
  accept plain strings or ``{"b64": "..."}``; output aliases ending in ``_bytes`` come back as
  ``{"b64": ...}``.
- ``GET /v1/models/<name>[/versions/<v>|/labels/<label>]``: ``{"model_version_status": [...]}``.
- ``GET /v1/models/<name>[/versions/<v>|/labels/<label>]/metadata``: ``{"model_spec": ...,
  "metadata": {"signature_def": {"signature_def": {...}}}}``.

Errors are ``{"error": "..."}`` with the HTTP status of the gRPC code, as TF Serving answers
them: 400 for a bad request (an unknown signature, and any other verb or path: "Malformed
request"), 404 for an unknown model or version, 408 for a client too slow to send its request,
413 for an oversized body, 501 for :classify / :regress.

Connections: each carries one request (HTTP/1.0). Every read and write on it times out after
``timeout_seconds`` (``--rest_api_timeout_in_ms``), so an idle or stalled client holds its thread
for that long at most. ``stop`` stops accepting, closes the connections that have not sent a
byte yet at once, lets requests in flight finish for up to ``grace_seconds``, then closes the rest.
"""
import base64
import binascii
import http.server
import json
import logging
import re
import socket
import threading

import grpc
import numpy as np
import tensorflow.compat.v1 as tf
from google.protobuf import json_format

from model.versions import parse_version
from serving import defaults
from serving.errors import ServingError
from serving.server.servable import DEFAULT_SIGNATURE, check_input_names

logger = logging.getLogger('serving.model_server')

_ROUTE = re.compile(r'^/v1/models/(?P<name>[^/:]+)'
                    r'(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?'
                    r'(?P<action>/metadata|:predict|:classify|:regress)?$')
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
}
# Oversized bodies are read and dropped (closing with unread data would reset the connection
# before the client sees the 413), but only up to this much; beyond it we just close.
_MAX_DRAIN_BYTES = 256 * 1024 * 1024
_DRAIN_CHUNK = 1024 * 1024
# Which JSON number kinds (NumPy dtype.kind after np.asarray) each tensor dtype accepts.
_ACCEPTED_KINDS = {'f': 'iuf', 'c': 'iufc', 'i': 'iu', 'u': 'iu', 'b': 'b'}
_KIND_NAMES = {'U': 'string', 'S': 'string', 'O': 'mixed or null', 'b': 'bool', 'i': 'integer',
               'u': 'integer', 'f': 'float'}


def _invalid(message):
    return ServingError(code=grpc.StatusCode.INVALID_ARGUMENT, message=message)


def _malformed(method, path):
    return _invalid('Malformed request: %s %s (endpoints: GET /v1/models/<name>[/versions/<v>]'
                    '[/metadata], POST /v1/models/<name>[/versions/<v>]:predict)' % (method, path))


def _is_b64(value):
    return isinstance(value, dict) and len(value) == 1 and 'b64' in value


def _to_bytes(alias, value):
    """One JSON string element (text or ``{"b64": ...}``) -> bytes."""
    if _is_b64(value):
        try:
            return base64.b64decode(value['b64'], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise _invalid("input '%s': invalid base64 in {\"b64\": ...}" % alias)
    if isinstance(value, str):
        return value.encode('utf-8')
    raise _invalid("input '%s': expected strings or {\"b64\": ...}, got %s" % (
        alias, type(value).__name__))


def _nested_bytes(alias, value):
    if isinstance(value, list):
        return [_nested_bytes(alias, item) for item in value]
    return _to_bytes(alias, value)


def json_to_ndarray(alias, value, tensor_info):
    """A JSON value (nested lists) -> NumPy array of the input's dtype.

    Raises INVALID_ARGUMENT naming ``alias`` for ragged lists or values of the wrong type.
    """
    dtype = tf.as_dtype(tensor_info.dtype)
    ragged = _invalid("input '%s': not a rectangular array (nested lists of unequal lengths)"
                      % alias)
    if dtype == tf.string:
        try:
            array = np.array(_nested_bytes(alias, value), dtype=object)
        except ValueError:
            raise ragged
        # With dtype=object NumPy may keep ragged rows as list elements instead of failing.
        if any(not isinstance(item, bytes) for item in array.flat):
            raise ragged
        return array
    try:
        array = np.asarray(value)
    except ValueError:
        raise ragged
    numpy_dtype = np.dtype(dtype.as_numpy_dtype)
    if array.size and array.dtype.kind not in _ACCEPTED_KINDS.get(numpy_dtype.kind, ''):
        raise _invalid("input '%s': expected dtype %s, got JSON values of type %s" % (
            alias, dtype.name, _KIND_NAMES.get(array.dtype.kind, array.dtype.name)))
    return array.astype(numpy_dtype)


def _named_inputs_from_instances(instances, signature):
    """Row format -> dict alias -> list of per-row JSON values."""
    if not isinstance(instances, list) or not instances:
        raise _invalid("'instances' must be a non-empty list (one entry per batch row)")
    named = [isinstance(row, dict) and not _is_b64(row) for row in instances]
    if all(named):
        aliases = set(instances[0])
        for row in instances:
            if set(row) != aliases:
                raise _invalid("'instances': every row must name the same inputs (%s)" %
                               ', '.join(sorted(aliases)))
        return {alias: [row[alias] for row in instances] for alias in aliases}
    if any(named):
        raise _invalid("'instances': rows mix named-input objects and bare values")
    return {_single_input(signature, 'instances'): instances}


def _named_inputs_from_columns(inputs, signature):
    """Columnar format -> dict alias -> JSON value."""
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return inputs
    return {_single_input(signature, 'inputs'): inputs}


def _single_input(signature, key):
    if len(signature.inputs) != 1:
        raise _invalid("'%s' must name the inputs (%s): the signature has %d" % (
            key, ', '.join(sorted(signature.inputs)), len(signature.inputs)))
    return next(iter(signature.inputs))


def request_inputs(body, signature_name, signature):
    """Parsed predict body -> ``(dict alias -> ndarray, row_format)``."""
    if ('instances' in body) == ('inputs' in body):
        raise _invalid("the request must have exactly one of 'instances' or 'inputs'")
    row_format = 'instances' in body
    if row_format:
        values = _named_inputs_from_instances(body['instances'], signature)
    else:
        values = _named_inputs_from_columns(body['inputs'], signature)
    check_input_names(signature_name, signature, values)
    inputs = {alias: json_to_ndarray(alias, value, signature.inputs[alias])
              for alias, value in values.items()}
    return inputs, row_format


def _to_json(alias, array):
    """An output array -> JSON-ready nested lists (strings decoded, ``*_bytes`` as b64)."""
    if array.dtype != object:
        return array.tolist()
    as_b64 = alias.endswith('_bytes')

    def convert(item):
        if isinstance(item, list):
            return [convert(x) for x in item]
        if as_b64:
            return {'b64': base64.b64encode(item).decode('ascii')}
        return item.decode('utf-8', errors='replace')
    return convert(array.tolist())


def response_body(outputs, row_format):
    """TF Serving's ``{"predictions": ...}`` (rows) or ``{"outputs": ...}`` (columns)."""
    if not row_format:
        if len(outputs) == 1:
            (alias, value), = outputs.items()
            return {'outputs': _to_json(alias, value)}
        return {'outputs': {alias: _to_json(alias, value) for alias, value in outputs.items()}}
    batch_sizes = {value.shape[0] if value.ndim else None for value in outputs.values()}
    if len(batch_sizes) != 1 or None in batch_sizes:
        raise _invalid("outputs have no common batch dimension; use the columnar 'inputs' format")
    if len(outputs) == 1:
        (alias, value), = outputs.items()
        return {'predictions': _to_json(alias, value)}
    rows = batch_sizes.pop()
    columns = {alias: _to_json(alias, value) for alias, value in outputs.items()}
    return {'predictions': [{alias: column[i] for alias, column in columns.items()}
                            for i in range(rows)]}


def _proto_to_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = 'ssd-model-server'
    protocol_version = 'HTTP/1.0'
    # Headers and body leave in separate writes; Nagle would hold the body for the client's ACK.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # per-request lines would drown the load/unload log
        logger.debug('%s - %s', self.address_string(), fmt % args)

    def do_GET(self):
        self._dispatch('GET')

    def do_POST(self):
        self._dispatch('POST')

    def _refuse_method(self):
        self._drain(self._content_length() or 0)
        self._send_json(400, {'error': _malformed(self.command, self.path).message})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method

    def setup(self):
        self.timeout = self.server.timeout_seconds  # every read and write on the connection
        super(_Handler, self).setup()

    def handle(self):
        self.close_connection = True
        try:
            if self.server.wait_for_request(self.connection):
                self.handle_one_request()
        finally:
            self.server.forget(self.connection)

    def _send_json(self, status, payload):
        data = json.dumps(payload).encode('utf-8')
        try:
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up, stopped reading, or the server is closing
            logger.debug('REST client %s left before the answer', self.address_string())

    def _dispatch(self, method):
        try:
            body = self._read_body() if method == 'POST' else None
            self._send_json(200, self._route(method, body))
        except ServingError as err:
            self._send_json(_HTTP_STATUS.get(err.code, 500), {'error': err.message})
        except Exception as err:  # a handler bug must cost one request, not the server
            logger.exception('REST %s %s failed', method, self.path)
            self._send_json(500, {'error': 'internal error: %s' % err})

    def _read_body(self):
        """The request body; RESOURCE_EXHAUSTED (413) above the server's limit."""
        length = self._content_length()
        if length is None:
            raise _invalid('a POST needs a Content-Length header (chunked bodies are not '
                           'supported)')
        limit = self.server.max_request_bytes
        if length > limit:
            self._drain(length)
            raise ServingError('request body of %d bytes exceeds the limit of %d bytes '
                               '(--max_request_bytes)' % (length, limit),
                               code=grpc.StatusCode.RESOURCE_EXHAUSTED)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            raise ServingError('request body not received within %g s (--rest_api_timeout_in_ms)'
                               % self.server.timeout_seconds,
                               code=grpc.StatusCode.DEADLINE_EXCEEDED)
        if len(body) < length:
            raise _invalid('request body ended after %d of %d bytes' % (len(body), length))
        return body

    def _content_length(self):
        """The Content-Length header as an int, None when missing or not ASCII digits."""
        length = self.headers.get('Content-Length', '')
        return int(length) if length.isascii() and length.isdigit() else None

    def _drain(self, length):
        if length > _MAX_DRAIN_BYTES:
            return
        while length > 0:
            try:
                chunk = self.rfile.read(min(length, _DRAIN_CHUNK))
            except OSError:  # timed out or reset: the 413 may not arrive, nothing else to do
                return
            if not chunk:
                return
            length -= len(chunk)

    def _route(self, method, body):
        match = _ROUTE.match(self.path.split('?', 1)[0])
        action = match.group('action') if match else None
        if match is None or (method == 'GET') != (action in (None, '/metadata')):
            raise _malformed(method, self.path)
        if action in (':classify', ':regress'):
            raise ServingError('%s is not supported by this server; use :predict' % action[1:],
                               code=grpc.StatusCode.UNIMPLEMENTED)
        name, label = match.group('name'), match.group('label')
        version = None
        if match.group('version'):
            version = parse_version(match.group('version'))
            if version is None:
                raise _invalid('version %s in the URL is beyond int64' % match.group('version'))
        manager = self.server.manager
        if action is None:
            return _proto_to_dict(manager.status_response(name, version, label))
        with manager.acquire(name, version, label) as servable:
            if action == '/metadata':
                return {'model_spec': {'name': name, 'signature_name': '',
                                       'version': str(servable.version)},
                        'metadata': {'signature_def': _proto_to_dict(
                            servable.signature_def_map())}}
            return self._predict(servable, body)

    def _predict(self, servable, body):
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise _invalid('JSON parse error: %s' % err)
        except RecursionError:
            raise _invalid('JSON parse error: nested too deeply')
        if not isinstance(request, dict):
            raise _invalid('the request body must be a JSON object')
        signature_name = request.get('signature_name') or DEFAULT_SIGNATURE
        if not isinstance(signature_name, str):
            raise _invalid("'signature_name' must be a string")
        signature = servable.signature_def(signature_name)
        try:
            inputs, row_format = request_inputs(request, signature_name, signature)
        except RecursionError:
            raise _invalid('input values nested too deeply')
        return response_body(servable.run(signature_name, inputs), row_format)


class _ThreadingServer(http.server.ThreadingHTTPServer):
    """One thread per connection; tracks connections so ``close_connections`` can end them."""
    # Threads are not joined on close: close_connections bounds their life instead.
    daemon_threads = True
    block_on_close = False
    # One connection per request: a deep backlog keeps bursts of clients from being refused.
    request_queue_size = 128

    def __init__(self, address, manager, max_request_bytes, timeout_seconds):
        http.server.ThreadingHTTPServer.__init__(self, address, _Handler)
        self.manager = manager
        self.max_request_bytes = max_request_bytes
        self.timeout_seconds = timeout_seconds
        self._connections = {}  # socket -> 'idle' (no byte received yet), 'busy' or 'closed'
        self._changed = threading.Condition()
        self._closing = False

    def wait_for_request(self, connection):
        """Blocks until the client sends its first byte; False if it left, timed out or the
        server closed the connection first."""
        with self._changed:
            if self._closing:
                return False
            self._connections[connection] = 'idle'
        try:
            started = bool(connection.recv(1, socket.MSG_PEEK))
        except OSError:  # timeout, reset, or closed by close_connections
            started = False
        with self._changed:
            started = started and self._connections.get(connection) == 'idle'
            if started:
                self._connections[connection] = 'busy'
        return started

    def forget(self, connection):
        with self._changed:
            self._connections.pop(connection, None)
            self._changed.notify_all()

    def _shut(self, state):
        for connection, current in list(self._connections.items()):
            if state is None or current == state:
                self._connections[connection] = 'closed'
                try:
                    connection.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
                except OSError:
                    pass

    def close_connections(self, grace_seconds):
        """Closes idle connections now, waits up to ``grace_seconds`` for requests in flight,
        then closes what is left; True when every request finished in time."""
        with self._changed:
            self._closing = True
            self._shut('idle')
            finished = self._changed.wait_for(
                lambda: 'busy' not in self._connections.values(), grace_seconds)
            self._shut(None)
        return finished


class RestApiServer(object):
    """The REST API on ``(host, port)`` (port 0 = any free); ``port`` is the bound one.

    Binding happens in the constructor (``OSError`` if the port is taken); ``start`` serves in
    a background thread; ``stop`` ends it (see the module docstring). ``timeout_seconds``
    bounds every read and write on a connection.
    """

    def __init__(self, manager, host, port, max_request_bytes,
                 timeout_seconds=defaults.REST_TIMEOUT_SECONDS):
        self._httpd = _ThreadingServer((host, port), manager, max_request_bytes, timeout_seconds)
        self.port = self._httpd.server_address[1]
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, name='rest-api',
                                        daemon=True)
        self._thread.start()

    def stop(self, grace_seconds=defaults.SHUTDOWN_GRACE_SECONDS):
        """Stops accepting, then ``close_connections(grace_seconds)``."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        self._httpd.server_close()
        if not self._httpd.close_connections(grace_seconds):
            logger.warning('REST requests still running after %g s were cut off', grace_seconds)
