"""One loaded SavedModel version: its own graph and ``tf.compat.v1`` Session, run by signature name.

``Servable(export_dir, version)`` loads the ``serve`` tag of ``export_dir``. ``run(signature_name,
inputs, output_filter)`` checks the request against the SignatureDef (input names, dtypes and
shapes, output names) before it reaches TensorFlow, so a bad request gets a message naming the
input and the expected vs received dtype/shape instead of a graph error. Session runs are
thread-safe; ``enter``/``exit`` count in-flight requests so ``close`` can wait for them.

Every refusal is a ``ServingError`` carrying the ``grpc.StatusCode`` clients see (the REST layer
maps it to an HTTP status).
"""
import threading

import grpc
import tensorflow.compat.v1 as tf
from tensorflow_serving.apis import get_model_metadata_pb2

SERVE_TAG = tf.saved_model.tag_constants.SERVING
DEFAULT_SIGNATURE = 'serving_default'
# Keys like ``__saved_model_init_op`` are plumbing, not callable signatures (TF Serving hides them).
_PRIVATE_SIGNATURE_PREFIX = '__'
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
# Lines of TensorFlow error text that locate the failure instead of stating it.
_NOISE_PREFIXES = ('Graph execution error', 'Detected at node', 'Node:', '[[', 'Original stack')


class ServingError(Exception):
    """A refused request or failed load; ``code`` is the ``grpc.StatusCode`` clients see."""

    def __init__(self, code, message):
        super(ServingError, self).__init__(message)
        self.code = code
        self.message = message


def summarize_error(err):
    """``(grpc.StatusCode, one-line message)`` for any exception, TensorFlow's OpError included."""
    if isinstance(err, tf.errors.OpError):
        lines = [line.strip() for line in err.message.splitlines()]
        useful = [line for line in lines if line and not line.startswith(_NOISE_PREFIXES)]
        return (_CODES_BY_NUMBER.get(err.error_code, grpc.StatusCode.UNKNOWN),
                useful[0] if useful else type(err).__name__)
    text = str(err).strip()
    return grpc.StatusCode.UNKNOWN, '%s: %s' % (type(err).__name__, text.splitlines()[0] if text
                                                else 'no message')


def session_config(intra_op_threads=0, inter_op_threads=0):
    """The ``tf.ConfigProto`` of every version's session (0 threads = TensorFlow chooses)."""
    return tf.ConfigProto(intra_op_parallelism_threads=intra_op_threads,
                          inter_op_parallelism_threads=inter_op_threads)


def format_shape(dims):
    """``[300,300,3]`` style text for a list of sizes (-1 = any)."""
    return '[%s]' % ','.join(str(d) for d in dims)


def _expected_dims(tensor_info):
    """Sizes from a TensorInfo (-1 = any), or None when the rank itself is unknown."""
    shape = tensor_info.tensor_shape
    return None if shape.unknown_rank else [d.size for d in shape.dim]


def _received_dtype(array):
    """The TensorFlow dtype of a NumPy array (object arrays of bytes are strings), or None."""
    try:
        return tf.as_dtype(array.dtype)
    except TypeError:
        return None


def check_input(signature_name, alias, tensor_info, array):
    """Raises INVALID_ARGUMENT unless ``array`` matches the input's dtype and shape."""
    expected = tf.as_dtype(tensor_info.dtype)
    received = _received_dtype(array)
    if received != expected:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "input '%s' of signature '%s': expected dtype %s, got %s" % (
                               alias, signature_name, expected.name,
                               received.name if received is not None else array.dtype))
    dims = _expected_dims(tensor_info)
    if dims is None:
        return
    if len(dims) != array.ndim or any(d not in (-1, n) for d, n in zip(dims, array.shape)):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "input '%s' of signature '%s': expected shape %s, got %s" % (
                               alias, signature_name, format_shape(dims),
                               format_shape(array.shape)))


def check_input_names(signature_name, signature, aliases):
    """Raises INVALID_ARGUMENT unless ``aliases`` are exactly the signature's input names."""
    expected = ', '.join(sorted(signature.inputs))
    for alias in sorted(aliases):
        if alias not in signature.inputs:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "input '%s' is not an input of signature '%s' (inputs: %s)" % (
                                   alias, signature_name, expected))
    for alias in sorted(signature.inputs):
        if alias not in aliases:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "missing input '%s' of signature '%s' (inputs: %s)" % (
                                   alias, signature_name, expected))


class Servable(object):
    """A SavedModel version loaded into its own graph and session.

    Attributes: ``version`` (int), ``export_dir``, ``signature_defs`` (dict name -> SignatureDef,
    private ``__...`` keys excluded). Loading failures propagate as TensorFlow's errors.
    """

    def __init__(self, export_dir, version, session_config=None):
        self.version = version
        self.export_dir = export_dir
        self._graph = tf.Graph()
        self._session = tf.Session(graph=self._graph, config=session_config)
        try:
            with self._graph.as_default():
                meta_graph = tf.saved_model.loader.load(self._session, [SERVE_TAG], export_dir)
        except Exception:
            self._session.close()
            raise
        self.signature_defs = {name: sig for name, sig in meta_graph.signature_def.items()
                               if not name.startswith(_PRIVATE_SIGNATURE_PREFIX)}
        self._in_flight = 0
        self._closed = False
        self._idle = threading.Condition()

    def signature_def(self, name):
        """The SignatureDef called ``name``; NOT_FOUND naming the available ones otherwise."""
        if name not in self.signature_defs:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               "signature '%s' not found in version %d (available: %s)" % (
                                   name, self.version, ', '.join(sorted(self.signature_defs))))
        return self.signature_defs[name]

    def signature_def_map(self):
        """A ``SignatureDefMap`` proto of every public signature (GetModelMetadata's payload)."""
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in self.signature_defs.items():
            sig_map.signature_def[name].CopyFrom(sig)
        return sig_map

    def run(self, signature_name, inputs, output_filter=()):
        """Runs one signature.

        Args:
          signature_name: a key of ``signature_defs``.
          inputs: dict alias -> NumPy array (strings as ``dtype=object`` arrays of ``bytes``);
            exactly the signature's inputs.
          output_filter: output aliases to compute; empty means all.
        Returns:
          dict alias -> NumPy array.
        Raises:
          ServingError: NOT_FOUND for an unknown signature, INVALID_ARGUMENT for a bad input or
            output alias, and the graph's own code (e.g. INVALID_ARGUMENT for non-image bytes).
        """
        sig = self.signature_def(signature_name)
        check_input_names(signature_name, sig, inputs)
        for alias in sorted(sig.inputs):
            check_input(signature_name, alias, sig.inputs[alias], inputs[alias])
        aliases = list(output_filter) or sorted(sig.outputs)
        for alias in aliases:
            if alias not in sig.outputs:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "output_filter '%s' is not an output of signature '%s' (outputs: %s)" % (
                        alias, signature_name, ', '.join(sorted(sig.outputs))))
        feed = {sig.inputs[alias].name: value for alias, value in inputs.items()}
        try:
            values = self._session.run([sig.outputs[alias].name for alias in aliases], feed)
        except tf.errors.OpError as err:
            code, message = summarize_error(err)
            raise ServingError(code, "signature '%s': %s" % (signature_name, message))
        return dict(zip(aliases, values))

    def enter(self):
        """Counts one in-flight request (callers make sure the servable is still published)."""
        with self._idle:
            self._in_flight += 1

    def exit(self):
        """Ends one in-flight request."""
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def close(self):
        """Waits for in-flight requests to finish, then releases the session (idempotent)."""
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0)
            if self._closed:
                return
            self._closed = True
        self._session.close()
