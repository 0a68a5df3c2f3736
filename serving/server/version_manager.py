"""Serves the newest loadable version of one model and follows its base path.

``<base_path>/<N>/`` folders named with ASCII digits (an int64) are versions; anything else (the
exporter's temporary folders, stray files) is ignored, with one warning for a name that looks
like a number but is not a version ('²', '٣', a number beyond int64). Each ``poll`` picks the
highest version that has not failed to load, loads it fully in its own session, publishes it,
then unloads the previous one once its in-flight requests have finished. A version that fails to load never replaces the one
being served; it is tried again only if its files change (size or modification time), so an
export caught half-written is picked up once complete. When every version folder disappears the
last loaded version keeps serving.

Per-version states follow TF Serving's ``ModelVersionStatus``: LOADING, AVAILABLE, UNLOADING,
END (unloaded, or failed to load with the error kept).
"""
import collections
import contextlib
import logging
import os
import threading
import time

import grpc
from tensorflow_serving.apis import get_model_status_pb2

from model.versions import scan_versions
from serving.errors import ServingError
from serving.server.servable import Servable, summarize_error

logger = logging.getLogger('serving.model_server')

VersionStatus = collections.namedtuple('VersionStatus', 'version state code message')
VersionStatus.__doc__ = """One version's state ('LOADING', 'AVAILABLE', 'UNLOADING', 'END'),
``code`` (``grpc.StatusCode``, OK unless the load failed) and the error message ('' when OK)."""

_OK = grpc.StatusCode.OK


def folder_fingerprint(path):
    """Sorted (relative path, size, mtime) of every file under ``path``: changes when files do."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            file_path = os.path.join(root, name)
            try:
                stat = os.stat(file_path)
            except OSError:  # removed while we walk: the next poll sees the new state
                continue
            entries.append((os.path.relpath(file_path, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


class VersionManager(object):
    """Loads, swaps and reports the versions of the model ``model_name`` under ``base_path``.

    ``version_labels`` maps a label (e.g. 'stable') to a version number for requests that name a
    label. ``session_config`` is a ``tf.ConfigProto`` for every version's session; ``limits``
    the ``serving.server.limits.RequestLimits`` every version enforces; ``batching`` the
    ``serving.server.batching.BatchingParameters`` of every version (None: no batching).
    """

    def __init__(self, model_name, base_path, session_config=None, version_labels=None,
                 limits=None, batching=None):
        self.model_name = model_name
        self.base_path = base_path
        self._session_config = session_config
        self._limits = limits
        self._batching = batching
        self._ignored_names = set()
        self._labels = dict(version_labels or {})
        self._lock = threading.Lock()
        self._current = None
        self._statuses = {}
        self._failed = {}  # version -> folder fingerprint when its load failed
        self._stop = threading.Event()
        self._thread = None
        self._base_path_missing = False

    def start(self, poll_wait_seconds):
        """Polls once now (so the first version is ready), then every ``poll_wait_seconds``."""
        self.poll()
        self._thread = threading.Thread(target=self._poll_loop, args=(poll_wait_seconds,),
                                        name='version-poller', daemon=True)
        self._thread.start()

    def _poll_loop(self, poll_wait_seconds):
        while not self._stop.wait(poll_wait_seconds):
            try:
                self.poll()
            except Exception:  # the poller must outlive any surprise on disk
                logger.exception('model %r: polling %s failed', self.model_name, self.base_path)

    def poll(self):
        """Loads and publishes the newest loadable version if it is not the one served."""
        try:
            versions = scan_versions(self.base_path, self._warn_ignored)
        except OSError as err:
            if not self._base_path_missing:
                logger.warning('model %r: cannot list %s: %s', self.model_name, self.base_path,
                               err.strerror)
            self._base_path_missing = True
            return
        self._base_path_missing = False
        current = self._current.version if self._current is not None else None
        for version in sorted(versions, reverse=True):
            if version == current:
                return
            path = versions[version]
            fingerprint = self._failed.get(version)
            if fingerprint is not None and fingerprint == folder_fingerprint(path):
                continue
            if self._load_and_publish(version, path):
                return

    def _warn_ignored(self, name):
        if name not in self._ignored_names:
            self._ignored_names.add(name)
            logger.warning('model %r: ignoring folder %r of %s: versions are ASCII digits (an '
                           'int64)', self.model_name, name, self.base_path)

    def _set_status(self, version, state, code=_OK, message=''):
        with self._lock:
            self._statuses[version] = VersionStatus(version, state, code, message)

    def _load_and_publish(self, version, path):
        """Loads ``version``; on success publishes it and unloads the previous one."""
        self._set_status(version, 'LOADING')
        fingerprint = folder_fingerprint(path)
        start = time.time()
        try:
            servable = Servable(path, version, self._session_config, self._limits,
                                self._batching)
        except Exception as err:  # any failure must leave the served version in place
            code, message = summarize_error(err)
            # Clients see the status: name the version, not the server's folders.
            message = message.replace(path, 'version %d' % version)
            self._failed[version] = fingerprint
            self._set_status(version, 'END', code, message)
            logger.error('model %r: failed to load version %d from %s: %s', self.model_name,
                         version, path, message)
            return False
        self._failed.pop(version, None)
        with self._lock:
            previous, self._current = self._current, servable
            self._statuses[version] = VersionStatus(version, 'AVAILABLE', _OK, '')
        logger.info('model %r: loaded version %d from %s in %.2f s', self.model_name, version,
                    path, time.time() - start)
        if previous is not None:
            self._unload(previous)
        return True

    def _unload(self, servable):
        self._set_status(servable.version, 'UNLOADING')
        servable.close()
        self._set_status(servable.version, 'END')
        logger.info('model %r: unloaded version %d', self.model_name, servable.version)

    def stop(self):
        """Stops polling and unloads the served version (after its in-flight requests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            servable, self._current = self._current, None
        if servable is not None:
            self._unload(servable)

    def check_model_name(self, model_name):
        """NOT_FOUND unless ``model_name`` is the model this manager serves."""
        if model_name != self.model_name:
            raise ServingError(code=grpc.StatusCode.NOT_FOUND,
                               message="model '%s' not found (this server serves '%s')" % (
                                   model_name, self.model_name))

    def _resolve(self, model_name, version, label):
        """The version a request names (``label`` wins when given); NOT_FOUND for unknown ones."""
        self.check_model_name(model_name)
        if not label:
            return version
        if label not in self._labels:
            raise ServingError(code=grpc.StatusCode.NOT_FOUND,
                               message="version label '%s' of model '%s' is not assigned" % (
                                   label, model_name))
        return self._labels[label]

    @contextlib.contextmanager
    def acquire(self, model_name, version=None, label=None):
        """Yields the servable for a request: the served one, or ``version`` / ``label`` if it is
        the one loaded. It stays loaded until the ``with`` block ends.

        Raises ServingError: NOT_FOUND for an unknown model, version or label, or when no version
        is loaded.
        """
        version = self._resolve(model_name, version, label)
        with self._lock:
            servable = self._current
            if servable is None:
                raise ServingError("model '%s' has no loaded version (see its status)" % model_name,
                                   code=grpc.StatusCode.NOT_FOUND)
            if version is not None and version != servable.version:
                raise ServingError(
                    "version %d of model '%s' is not loaded (serving version %d)" % (
                        version, model_name, servable.version), code=grpc.StatusCode.NOT_FOUND)
            servable.enter()  # under the lock, so a swap cannot close it before we count in
        try:
            yield servable
        finally:
            servable.exit()

    def statuses(self, model_name, version=None, label=None):
        """List of ``VersionStatus``, newest version first; only ``version`` (or the version of
        ``label``) if given.

        Raises ServingError NOT_FOUND for an unknown model or label, a model without versions
        yet, or a version never seen.
        """
        version = self._resolve(model_name, version, label)
        with self._lock:
            found = sorted(self._statuses.values(), key=lambda s: s.version, reverse=True)
        if version is not None:
            found = [s for s in found if s.version == version]
            if not found:
                raise ServingError(code=grpc.StatusCode.NOT_FOUND,
                                   message="version %d of model '%s' was never seen" % (
                                       version, model_name))
        if not found:
            raise ServingError(code=grpc.StatusCode.NOT_FOUND,
                               message="model '%s' has no versions yet" % model_name)
        return found

    def status_response(self, model_name, version=None, label=None):
        """``GetModelStatusResponse`` proto of ``statuses(model_name, version, label)``."""
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self.statuses(model_name, version, label):
            entry = response.model_version_status.add()
            entry.version = status.version
            entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
            entry.status.error_code = status.code.value[0]
            entry.status.error_message = status.message
        return response
