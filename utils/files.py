"""Files that appear whole or not at all (standard library only).

A reader (another tool, a server polling a folder, a rerun after a crash or a full disk) sees
either the previous file or the complete new one, never a half-written one.
"""
import json
import os


def write_text_atomically(path, text):
    """Writes ``text`` (UTF-8) to ``path`` through a temporary file beside it, renamed over
    ``path`` once flushed to disk. On any failure the temporary is removed, the previous file
    (if any) stays as it was, and the error propagates."""
    temporary = '%s.tmp-%d' % (path, os.getpid())
    try:
        with open(temporary, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json_atomically(path, value):
    """``write_text_atomically`` of ``value`` as indented JSON with sorted keys."""
    write_text_atomically(path, json.dumps(value, indent=2, sort_keys=True) + '\n')
