"""Transports to a TF-Serving-compatible server (TF Serving in Docker or serving.model_server).

One interface, two wires:
- ``RestTransport``: ``POST /v1/models/<name>[/versions/<v>]:predict`` with the columnar
  ``{"signature_name": ..., "inputs": {...}}`` body; string tensors travel as ``{"b64": ...}``.
  Needs ``requests`` and NumPy only (no TensorFlow).
- ``GrpcTransport``: ``PredictionService.Predict`` through ``tensorflow-serving-api`` (which
  imports TensorFlow for its protos; imported lazily so REST users never pay for it).

``predict(model_name, inputs, signature_name, version)`` takes a dict of NumPy arrays (strings as
a ``dtype=object`` array of ``bytes``) and returns a dict of NumPy arrays; any refusal or network
failure raises ``ServingError`` with the server's message and its status (gRPC code name or HTTP
status), so callers handle one error type whatever the protocol.
"""
import base64
import json
import threading

import numpy as np

from serving import defaults
from serving.errors import ServingError

PROTOCOLS = ('grpc', 'rest')
DEFAULT_TIMEOUT = 60.


def _is_string_array(array):
    return array.dtype == object or array.dtype.kind in ('S', 'U')


def _as_bytes(value):
    return value.encode('utf-8') if isinstance(value, str) else bytes(value)


class Transport(object):
    """Common interface; ``server`` is ``HOST:PORT``."""

    protocol = None

    def __init__(self, server, timeout=DEFAULT_TIMEOUT):
        self.server = server
        self.timeout = timeout

    def predict(self, model_name, inputs, signature_name='serving_default', version=None):
        """``inputs``: dict name → array. Returns dict output name → NumPy array."""
        raise NotImplementedError

    def close(self):
        """Releases the connection; the transport is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RestTransport(Transport):
    """TF Serving's REST API (default port 8501)."""

    protocol = 'rest'

    def __init__(self, server, timeout=DEFAULT_TIMEOUT):
        super(RestTransport, self).__init__(server, timeout)
        import requests
        self._requests = requests
        # One keep-alive session per thread: requests.Session is not documented thread-safe,
        # and the web page and the benchmark call one transport from several threads.
        self._local = threading.local()
        self._sessions = []
        self._lock = threading.Lock()

    def _session(self):
        session = getattr(self._local, 'session', None)
        if session is None:
            session = self._local.session = self._requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session

    def _url(self, model_name, version):
        base = 'http://%s/v1/models/%s' % (self.server, model_name)
        if version is not None:
            base += '/versions/%d' % int(version)
        return base + ':predict'

    @staticmethod
    def encode_inputs(inputs, signature_name):
        """The JSON body (str) for ``inputs``: strings as ``{"b64"}`` objects, numbers as lists."""
        body = {}
        for name, value in inputs.items():
            array = np.asarray(value)
            if _is_string_array(array):
                flat = [{'b64': base64.b64encode(_as_bytes(v)).decode('ascii')}
                        for v in array.reshape(-1)]
                body[name] = np.array(flat, dtype=object).reshape(array.shape).tolist()
            else:
                body[name] = array.tolist()
        return json.dumps({'signature_name': signature_name, 'inputs': body})

    @staticmethod
    def decode_outputs(payload):
        """``{"outputs": ...}`` → dict of arrays (floats as float32, as the server has them)."""
        outputs = payload.get('outputs')
        if outputs is None:
            raise ServingError('REST answer has no "outputs" field', 'INTERNAL')
        if not isinstance(outputs, dict):  # A single-output signature answers the bare value.
            outputs = {'output': outputs}
        arrays = {}
        for name, value in outputs.items():
            array = np.asarray(value)
            arrays[name] = array.astype(np.float32) if array.dtype.kind == 'f' else array
        return arrays

    def predict(self, model_name, inputs, signature_name='serving_default', version=None):
        url = self._url(model_name, version)
        try:
            response = self._session().post(url, data=self.encode_inputs(inputs, signature_name),
                                          headers={'Content-Type': 'application/json'},
                                          timeout=self.timeout)
        except self._requests.RequestException as e:
            raise ServingError('cannot reach REST server %s (%s)'
                               % (self.server, type(e).__name__), 'UNAVAILABLE')
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200:
            message = payload.get('error') if isinstance(payload, dict) else None
            raise ServingError(message or 'HTTP %d from %s' % (response.status_code, url),
                               response.status_code)
        if not isinstance(payload, dict):
            raise ServingError('REST answer from %s is not a JSON object' % url, 'INTERNAL')
        return self.decode_outputs(payload)

    def close(self):
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions = []


class GrpcTransport(Transport):
    """TF Serving's gRPC ``PredictionService`` (default port 8500)."""

    protocol = 'grpc'

    def __init__(self, server, timeout=DEFAULT_TIMEOUT):
        super(GrpcTransport, self).__init__(server, timeout)
        import grpc
        from utils import tf_logging
        tf_logging.quiet_tensorflow()   # the protos load all of TensorFlow: without its banner
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        self._grpc = grpc
        self._tf = tf
        self._predict_pb2 = predict_pb2
        self._channel = grpc.insecure_channel(server, options=[
            ('grpc.max_send_message_length', defaults.MAX_MESSAGE_BYTES),
            ('grpc.max_receive_message_length', defaults.MAX_MESSAGE_BYTES)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def make_request(self, model_name, inputs, signature_name='serving_default', version=None):
        """The ``PredictRequest`` proto for ``inputs``."""
        request = self._predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = int(version)
        for name, value in inputs.items():
            array = np.asarray(value)
            if _is_string_array(array):
                array = np.array([_as_bytes(v) for v in array.reshape(-1)],
                                 dtype=object).reshape(array.shape)
            request.inputs[name].CopyFrom(self._tf.make_tensor_proto(array))
        return request

    def predict(self, model_name, inputs, signature_name='serving_default', version=None):
        request = self.make_request(model_name, inputs, signature_name, version)
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except self._grpc.RpcError as e:
            raise ServingError(e.details() or str(e), e.code().name)
        return {name: self._tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def close(self):
        self._channel.close()


def make_transport(protocol, server, timeout=DEFAULT_TIMEOUT):
    """``GrpcTransport`` or ``RestTransport`` for ``protocol`` ('grpc' or 'rest')."""
    if protocol == 'grpc':
        return GrpcTransport(server, timeout)
    if protocol == 'rest':
        return RestTransport(server, timeout)
    raise ValueError('--protocol must be one of %s, got %r' % ('|'.join(PROTOCOLS), protocol))
