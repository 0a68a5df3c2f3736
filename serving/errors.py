"""The serving error both sides share, without TensorFlow (the clients import it too)."""
from utils.errors import ToolkitError


class ServingError(ToolkitError):
    """A refused request, failed load or unreachable server.

    ``code`` is the status a client sees: a ``grpc.StatusCode`` on the server side; on the client
    side the gRPC code name (``'INVALID_ARGUMENT'``) or the HTTP status (``400``).
    """

    def __init__(self, message, code=None):
        super(ServingError, self).__init__(message)
        self.message = message
        self.code = code
