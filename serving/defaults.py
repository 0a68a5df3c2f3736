"""Defaults the model server and its clients share (standard library only: clients import it)."""

# The largest gRPC message or REST body: the server's --max_request_bytes default, and what the
# clients' gRPC channels send and receive.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Every read and write on a REST connection may take this long (--rest_api_timeout_in_ms).
REST_TIMEOUT_SECONDS = 30.
# After a stop (SIGTERM, SIGINT), requests in flight get this long to finish.
SHUTDOWN_GRACE_SECONDS = 30.
