"""TensorFlow's error text cut to the sentence that names the cause (no TensorFlow import: it
reads the ``message`` of a ``tf.errors.OpError``, or the text of any other exception).

A graph-mode ``OpError`` message is a banner, the Python stack of the failing node, the node's
name, the cause, then a ``[[{{node ...}}]]`` trailer and sometimes a hint::

    Graph execution error:

    Detected at node 'save/SaveV2' defined at (most recent call last):
        File "train_ssd_network.py", line 203, in <module>
    Node: 'save/SaveV2'
    /ckpt/model.ckpt-0.data-00000-of-00001.tempstate1329; No space left on device
    	 [[{{node save/SaveV2}}]]
    Hint: If you want to see a list of allocated tensors when OOM happens, ...

``describe(error)`` gives ``OpErrorText(cause='No space left on device',
path='/ckpt/model.ckpt-0.data-00000-of-00001.tempstate1329', node='save/SaveV2')``.
"""
import collections
import errno
import re

OpErrorText = collections.namedtuple('OpErrorText', 'cause path node')
OpErrorText.__doc__ = """``cause``: the sentence that says what went wrong; ``path``: the file
it concerns when the message names one (else None); ``node``: the failing graph node (else None).
"""

# Lines that locate the failure instead of stating it.
_NOISE_PREFIXES = ('Graph execution error', 'Detected at node', 'File "', 'Node:', '[[',
                   'Original stack', 'Hint:', 'Function call stack', 'Stack trace')
_NODE = re.compile(r"^Node: '([^']+)'", re.M)
# Eager and function-call wrappers around the cause: "{{function_node ...}} " and " [Op:X]".
_WRAPPERS = re.compile(r'^\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\](\s*name:.*)?$')
# "<path>; <cause>" (file system ops) or "<cause> <path>"-free messages.
_PATH_FIRST = re.compile(r'^(/[^;]*|[A-Za-z]:\\[^;]*);\s*(.+)$')
# TensorFlow's record reader quotes a status inside its own sentence.
_RECORD_READ = re.compile(r"^((?:truncated|corrupted) record at \d+)' failed with (.+)$")

# Causes that say the file system refused a write.
DISK_FULL_CAUSES = ('No space left on device', 'File too large', 'Disk quota exceeded',
                    'Read-only file system', 'Permission denied')


def describe(error):
    """``OpErrorText`` of ``error`` (an ``OpError`` or any exception)."""
    text = getattr(error, 'message', None) or str(error)
    node = _NODE.search(text)
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not line.startswith(_NOISE_PREFIXES)]
    cause = _WRAPPERS.sub('', useful[0]) if useful else type(error).__name__
    path = None
    match = _PATH_FIRST.match(cause)
    if match:
        path, cause = match.group(1).strip(), match.group(2).strip()
    match = _RECORD_READ.match(cause)
    if match:
        cause = '%s (%s)' % (match.group(1), match.group(2).rstrip('.').lower())
    return OpErrorText(cause.strip() or type(error).__name__, path, node.group(1) if node else None)


def one_line(error):
    """``<path>: <cause>`` (or the cause alone): one line for ``error: ...``."""
    text = describe(error)
    return '%s: %s' % (text.path, text.cause) if text.path else text.cause


def is_disk_full(error):
    """Whether ``error`` (an ``OpError`` or ``OSError``) is a refused write: a full disk, a file
    size limit, a quota, a read-only or unwritable folder."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT,
                                                      errno.EROFS, errno.EACCES):
        return True
    cause = describe(error).cause
    return any(reason in cause for reason in DISK_FULL_CAUSES)
