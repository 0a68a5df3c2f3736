"""TF Serving's gRPC API over a ``VersionManager``, built on ``tensorflow_serving.apis`` protos.

- ``PredictionService.Predict``: ``model_spec`` (name, optional ``version`` or ``version_label``,
  ``signature_name`` defaulting to ``serving_default``), ``inputs`` TensorProtos, ``output_filter``.
- ``PredictionService.GetModelMetadata``: ``metadata_field`` ``signature_def`` -> a
  ``SignatureDefMap`` packed into ``google.protobuf.Any``, as TF Serving answers.
- ``ModelService.GetModelStatus``: per-version state and load error.
- Classify, Regress, MultiInference and HandleReloadConfigRequest answer UNIMPLEMENTED.

Request tensors are checked on their declared dtype and shape (``Servable.check_inputs``) before
they are turned into arrays: a few bytes declaring millions of elements are refused at no cost.
Refusals abort the call with the ``ServingError``'s code and message; the server keeps running.
"""
import functools
from concurrent import futures

import grpc
import tensorflow.compat.v1 as tf
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.errors import ServingError
from serving.server.servable import DEFAULT_SIGNATURE

SIGNATURE_DEF_FIELD = 'signature_def'


def _abort_on_serving_error(method):
    """Turns a ``ServingError`` raised by an RPC handler into the call's status."""
    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except ServingError as err:
            context.abort(err.code, err.message)
    return wrapper


def _requested_version(model_spec):
    """``(version or None, label or None)`` of a ModelSpec."""
    version = model_spec.version.value if model_spec.HasField('version') else None
    return version, model_spec.version_label or None


def _declared(tensor_proto):
    """``(dtype, shape)`` a request TensorProto declares, for ``Servable.check_inputs``."""
    try:
        dtype = tf.as_dtype(tensor_proto.dtype)
    except TypeError:
        dtype = 'unknown type %d' % tensor_proto.dtype
    return dtype, [dim.size for dim in tensor_proto.tensor_shape.dim]


def _to_ndarray(alias, tensor_proto):
    """NumPy value of one request TensorProto; INVALID_ARGUMENT naming the input if malformed."""
    try:
        return tf.make_ndarray(tensor_proto)
    except (TypeError, ValueError) as err:
        raise ServingError(code=grpc.StatusCode.INVALID_ARGUMENT,
                           message="input '%s': malformed TensorProto (%s)" % (alias, err))


def _unimplemented(name, instead):
    """An RPC handler answering UNIMPLEMENTED (without the traceback the generated one logs)."""
    def handler(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED,
                      '%s is not supported by this server; use %s' % (name, instead))
    handler.__name__ = name
    return handler


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata of TF Serving's PredictionService."""

    def __init__(self, manager):
        self._manager = manager

    @_abort_on_serving_error
    def Predict(self, request, context):
        spec = request.model_spec
        signature_name = spec.signature_name or DEFAULT_SIGNATURE
        version, label = _requested_version(spec)
        with self._manager.acquire(spec.name, version, label) as servable:
            servable.check_inputs(signature_name, {
                alias: _declared(proto) for alias, proto in request.inputs.items()})
            inputs = {alias: _to_ndarray(alias, proto) for alias, proto in request.inputs.items()}
            outputs = servable.run(signature_name, inputs, list(request.output_filter))
            response = predict_pb2.PredictResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = servable.version
            response.model_spec.signature_name = signature_name
        for alias, value in outputs.items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
        return response

    @_abort_on_serving_error
    def GetModelMetadata(self, request, context):
        if not request.metadata_field:
            raise ServingError(
                'GetModelMetadataRequest must name at least one metadata_field (supported: %s)'
                % SIGNATURE_DEF_FIELD, code=grpc.StatusCode.INVALID_ARGUMENT)
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError("metadata_field '%s' is not supported (supported: %s)" % (
                    field, SIGNATURE_DEF_FIELD), code=grpc.StatusCode.INVALID_ARGUMENT)
        version, label = _requested_version(request.model_spec)
        with self._manager.acquire(request.model_spec.name, version, label) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            response.model_spec.name = request.model_spec.name
            response.model_spec.version.value = servable.version
            response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
        return response

    Classify = _unimplemented('Classify', 'Predict')
    Regress = _unimplemented('Regress', 'Predict')
    MultiInference = _unimplemented('MultiInference', 'Predict')


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus of TF Serving's ModelService."""

    def __init__(self, manager):
        self._manager = manager

    @_abort_on_serving_error
    def GetModelStatus(self, request, context):
        version, label = _requested_version(request.model_spec)
        return self._manager.status_response(request.model_spec.name, version, label)

    HandleReloadConfigRequest = _unimplemented(
        'HandleReloadConfigRequest', '--model_base_path with new version folders')


def create_grpc_server(manager, address, max_request_bytes, max_threads):
    """A not yet started ``grpc.Server`` bound to ``address`` ('host:port', port 0 = any free).

    Returns ``(server, bound_port)``. Raises ``RuntimeError`` when the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix='grpc'),
        options=[('grpc.max_receive_message_length', max_request_bytes),
                 ('grpc.max_send_message_length', -1),
                 # Without this a second server could silently share the port.
                 ('grpc.so_reuseport', 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(manager), server)
    port = server.add_insecure_port(address)
    if port == 0:  # older grpcio reports a failed bind this way instead of raising
        raise RuntimeError('Failed to bind to address %s' % address)
    return server, port
