"""One loaded SavedModel version: its own graph and ``tf.compat.v1`` Session, run by signature name.

``Servable(export_dir, version)`` loads the ``serve`` tag of ``export_dir``. ``run(signature_name,
inputs, output_filter)`` checks the request against the SignatureDef (input names, dtypes and
shapes, output names) before it reaches TensorFlow, so a bad request gets a message naming the
input and the expected vs received dtype/shape instead of a graph error. ``check_inputs`` does the
same on declared dtypes and shapes alone, so a front end can refuse a request before building its
arrays. Both enforce the ``RequestLimits`` (elements per input, rows per batch, pixels per encoded
image read from its header), so what a request costs is bounded before TensorFlow sees it.
Session runs are thread-safe; ``enter``/``exit`` count in-flight requests so ``close`` can wait
for them.

Every refusal is a ``ServingError`` carrying the ``grpc.StatusCode`` clients see (the REST layer
maps it to an HTTP status).
"""
import threading

import grpc
import tensorflow.compat.v1 as tf
from tensorflow_serving.apis import get_model_metadata_pb2

from serving.errors import ServingError
from serving.server.limits import DEFAULT_LIMITS
from serving.server import batching as batching_lib
from utils import image_header
from utils import tf_errors

SERVE_TAG = tf.saved_model.tag_constants.SERVING
DEFAULT_SIGNATURE = 'serving_default'
# Keys like ``__saved_model_init_op`` are plumbing, not callable signatures (TF Serving hides them).
_PRIVATE_SIGNATURE_PREFIX = '__'
_CODES_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def summarize_error(err):
    """``(grpc.StatusCode, one-line message)`` for any exception, TensorFlow's OpError included."""
    if isinstance(err, tf.errors.OpError):
        return (_CODES_BY_NUMBER.get(err.error_code, grpc.StatusCode.UNKNOWN),
                tf_errors.one_line(err))
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
    """The TensorFlow dtype of a NumPy array (object arrays of bytes are strings), or its name."""
    try:
        return tf.as_dtype(array.dtype)
    except TypeError:
        return str(array.dtype)


def _invalid(signature_name, alias, problem):
    return ServingError("input '%s' of signature '%s': %s" % (alias, signature_name, problem),
                        code=grpc.StatusCode.INVALID_ARGUMENT)


def check_input(signature_name, alias, tensor_info, dtype, shape, limits=DEFAULT_LIMITS):
    """Raises INVALID_ARGUMENT unless a tensor of ``dtype`` (a ``tf.DType``, or the name of a
    type TensorFlow does not know) and ``shape`` fits the input and ``limits``."""
    expected = tf.as_dtype(tensor_info.dtype)
    if dtype != expected:
        raise _invalid(signature_name, alias, 'expected dtype %s, got %s' % (
            expected.name, getattr(dtype, 'name', dtype)))
    shape = list(shape)
    if any(n < 0 for n in shape):
        raise _invalid(signature_name, alias, 'shape %s has a negative size' % format_shape(shape))
    dims = _expected_dims(tensor_info)
    if dims is not None and (len(dims) != len(shape) or
                             any(d not in (-1, n) for d, n in zip(dims, shape))):
        raise _invalid(signature_name, alias, 'expected shape %s, got %s' % (
            format_shape(dims), format_shape(shape)))
    elements = 1
    for n in shape:
        elements *= n
    if elements > limits.max_tensor_elements:
        raise _invalid(signature_name, alias, 'shape %s has %d elements, more than the limit of %d '
                       '(--max_tensor_elements)' % (format_shape(shape), elements,
                                                    limits.max_tensor_elements))
    if dims and dims[0] == -1:  # a batch of rows
        if shape[0] == 0:
            raise _invalid(signature_name, alias, 'the batch is empty (shape %s); send at least '
                           'one row' % format_shape(shape))
        if shape[0] > limits.max_batch_rows:
            raise _invalid(signature_name, alias, '%d rows in one request, more than the limit of '
                           '%d (--max_batch_rows)' % (shape[0], limits.max_batch_rows))


def check_images(signature_name, alias, array, limits=DEFAULT_LIMITS):
    """Raises INVALID_ARGUMENT for an encoded image in the string ``array`` whose header is
    unreadable or declares more than ``limits.max_image_pixels`` pixels, or when the images
    together declare more than ``limits.max_request_pixels``."""
    total = 0
    for index, value in enumerate(array.flat):
        if isinstance(value, bytes):
            try:
                size = image_header.check_image_pixels(value, limits.max_image_pixels,
                                                       'element %d' % index)
            except image_header.ImageHeaderError as error:
                raise _invalid(signature_name, alias, str(error))
            total += size[0] * size[1] if size else 0
    if total > limits.max_request_pixels:
        raise _invalid(signature_name, alias, 'the images of one request hold %d pixels, more '
                       'than the limit of %d (%s)' % (total, limits.max_request_pixels,
                                                      image_header.REQUEST_PIXELS_FLAG))


def check_input_names(signature_name, signature, aliases):
    """Raises INVALID_ARGUMENT unless ``aliases`` are exactly the signature's input names."""
    expected = ', '.join(sorted(signature.inputs))
    for alias in sorted(aliases):
        if alias not in signature.inputs:
            raise ServingError("input '%s' is not an input of signature '%s' (inputs: %s)" % (
                alias, signature_name, expected), code=grpc.StatusCode.INVALID_ARGUMENT)
    for alias in sorted(signature.inputs):
        if alias not in aliases:
            raise ServingError(code=grpc.StatusCode.INVALID_ARGUMENT,
                               message="missing input '%s' of signature '%s' (inputs: %s)" % (
                                   alias, signature_name, expected))


def is_batchable(signature):
    """True when every input and output of ``signature`` has a variable first (batch) axis, so
    requests can be concatenated and the outputs split back by rows."""
    tensors = list(signature.inputs.values()) + list(signature.outputs.values())
    dims = [_expected_dims(t) for t in tensors]
    return bool(tensors) and all(d and d[0] == -1 for d in dims)


class Servable(object):
    """A SavedModel version loaded into its own graph and session.

    Attributes: ``version`` (int), ``export_dir``, ``signature_defs`` (dict name -> SignatureDef,
    private ``__...`` keys excluded), ``limits`` (``RequestLimits``, default ``DEFAULT_LIMITS``).
    ``batching``: ``serving.server.batching.BatchingParameters`` to batch concurrent requests of
    batchable signatures (``is_batchable``), or None. Loading failures propagate as
    TensorFlow's errors.
    """

    def __init__(self, export_dir, version, session_config=None, limits=None, batching=None):
        self.version = version
        self.export_dir = export_dir
        self.limits = limits or DEFAULT_LIMITS
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
        # With batching, concurrent requests of a batchable signature share session runs.
        self._scheduler = None if batching is None else \
            batching_lib.BatchScheduler(self._run_session, batching)

    def signature_def(self, name):
        """The SignatureDef called ``name``; FAILED_PRECONDITION (TF Serving's code) naming the
        available ones otherwise."""
        if name not in self.signature_defs:
            raise ServingError(code=grpc.StatusCode.FAILED_PRECONDITION,
                               message="signature '%s' not found in version %d (available: %s)" % (
                                   name, self.version, ', '.join(sorted(self.signature_defs))))
        return self.signature_defs[name]

    def signature_def_map(self):
        """A ``SignatureDefMap`` proto of every public signature (GetModelMetadata's payload)."""
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig in self.signature_defs.items():
            sig_map.signature_def[name].CopyFrom(sig)
        return sig_map

    def check_inputs(self, signature_name, specs):
        """Checks declared inputs, ``specs``: dict alias -> ``(dtype, shape)`` (see
        ``check_input``), against the signature and the limits; returns the SignatureDef.

        Raises ServingError: FAILED_PRECONDITION for an unknown signature, INVALID_ARGUMENT for
        a missing, unknown, mistyped, misshapen or oversized input.
        """
        sig = self.signature_def(signature_name)
        check_input_names(signature_name, sig, specs)
        for alias in sorted(sig.inputs):
            dtype, shape = specs[alias]
            check_input(signature_name, alias, sig.inputs[alias], dtype, shape, self.limits)
        return sig

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
          ServingError: as ``check_inputs``, INVALID_ARGUMENT for an image above the pixel limit
            or a bad output alias, and the graph's own code (e.g. INVALID_ARGUMENT for
            non-image bytes).
        """
        sig = self.check_inputs(signature_name, {
            alias: (_received_dtype(value), value.shape) for alias, value in inputs.items()})
        for alias in sorted(inputs):
            if inputs[alias].dtype == object:
                check_images(signature_name, alias, inputs[alias], self.limits)
        aliases = list(output_filter) or sorted(sig.outputs)
        for alias in aliases:
            if alias not in sig.outputs:
                raise ServingError(
                    "output_filter '%s' is not an output of signature '%s' (outputs: %s)" % (
                        alias, signature_name, ', '.join(sorted(sig.outputs))),
                    code=grpc.StatusCode.INVALID_ARGUMENT)
        key = (signature_name, tuple(aliases))
        if self._scheduler is None or not is_batchable(sig):
            return self._run_session(key, inputs)
        try:
            return self._scheduler.run(key, inputs)
        except batching_lib.QueueFullError as err:
            raise ServingError(code=grpc.StatusCode.UNAVAILABLE, message=str(err))

    def _run_session(self, key, inputs):
        """One session run of ``key = (signature name, output aliases)`` on checked ``inputs``."""
        signature_name, aliases = key
        sig = self.signature_defs[signature_name]
        feed = {sig.inputs[alias].name: value for alias, value in inputs.items()}
        try:
            values = self._session.run([sig.outputs[alias].name for alias in aliases], feed)
        except tf.errors.OpError as err:
            code, message = summarize_error(err)
            raise ServingError(code=code, message="signature '%s': %s" % (signature_name, message))
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
        if self._scheduler is not None:
            self._scheduler.close()
        self._session.close()
