"""Files that appear whole or not at all (standard library only).

A reader (another tool, a server polling a folder, a rerun after a crash or a full disk) sees
either the previous file or the complete new one, never a half-written one.
"""
import json
import os


def write_bytes_atomically(path, data):
    """Writes ``data`` (bytes) to ``path`` through a temporary file beside it, renamed over
    ``path`` once flushed to disk. On any failure the temporary is removed, the previous file
    (if any) stays as it was, and the error propagates."""
    temporary = '%s.tmp-%d' % (path, os.getpid())
    try:
        with open(temporary, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_text_atomically(path, text):
    """``write_bytes_atomically`` of ``text`` encoded as UTF-8 (a text that does not encode
    leaves the previous file as it was)."""
    write_bytes_atomically(path, text.encode('utf-8'))


def write_json_atomically(path, value):
    """``write_text_atomically`` of ``value`` as indented JSON with sorted keys."""
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + '\n')
