"""Files that appear whole or not at all (standard library only).

A reader (another tool, a server polling a folder, a rerun after a crash or a full disk) sees
either the previous file or the complete new one, never a half-written one.
"""
import contextlib
import json
import os
import tempfile

from utils.errors import ToolkitError


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path beside ``path`` (with its extension, for writers that go by it) for the
    block to write; renamed over ``path`` when the block ends normally. On any failure or
    interruption the temporary is removed, the previous file (if any) stays as it was, and the
    error propagates."""
    root, extension = os.path.splitext(path)
    temporary = '%s.tmp-%d%s' % (root, os.getpid(), extension)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_bytes_atomically(path, data):
    """Writes ``data`` (bytes) to ``path`` through ``atomic_path``, flushed to disk before the
    rename."""
    with atomic_path(path) as temporary:
        with open(temporary, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text_atomically(path, text):
    """``write_bytes_atomically`` of ``text`` encoded as UTF-8 (a text that does not encode
    leaves the previous file as it was)."""
    write_bytes_atomically(path, text.encode('utf-8'))


def write_json_atomically(path, value):
    """``write_text_atomically`` of ``value`` as indented JSON with sorted keys."""
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + '\n')


def check_writable_dir(path, flag):
    """Checks, before any work and without creating anything, that folder ``path`` (given as
    flag ``flag``, e.g. ``--output_dir``) can be written, or made where it does not exist yet;
    a ``ToolkitError`` in one line naming the flag otherwise (a file in the way, a read-only or
    unwritable folder)."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ToolkitError('%s=%s: %s is a file, not a folder' % (
            flag, path, 'it' if existing == os.path.abspath(path) else existing))
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ToolkitError('%s=%s cannot be %s: %s' % (
            flag, path, 'written' if existing == os.path.abspath(path) else 'created',
            e.strerror or e))


def make_writable_dir(path, flag):
    """``check_writable_dir``, then makes the folder."""
    check_writable_dir(path, flag)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ToolkitError('%s=%s cannot be created: %s' % (flag, path, e.strerror or e))


def read_json_if_intact(path, warn, consequence):
    """The JSON value of ``path``; None when it does not exist, or when it cannot be read or
    parsed (a crash or a full disk cut it short): then one line on ``warn`` names it and says
    ``consequence`` (what the caller does instead)."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        warn('warning: %s is damaged (%s): %s' % (
            path, getattr(e, 'strerror', None) or str(e).splitlines()[0], consequence))
        return None
