"""The toolkit's one base error class.

Every error meant for the user (a bad flag, file, field or checkpoint) derives from
``ToolkitError`` and carries a one-line message naming what is wrong; each command-line tool
catches it once in its ``main`` and exits non-zero with ``error: <message>``.
"""


class ToolkitError(Exception):
    """A problem the user can fix, described in one line (no traceback is shown for it)."""
