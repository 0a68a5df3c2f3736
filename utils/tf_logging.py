"""Keeps TensorFlow's C++ log lines out of a tool's output.

TensorFlow prints its start-up notices (the oneDNN banner, CPU instructions, "All log messages
before absl::InitializeLog() is called...") while its libraries load, before any log level
applies; later, ``TF_CPP_MIN_LOG_LEVEL`` rules, and at 2 it still prints the ERROR lines
libjpeg's warnings become ("Premature end of JPEG data"), which the tools already answer with
their own one-line message. A tool calls ``quiet_tensorflow()`` before anything imports
TensorFlow; a user who sets ``TF_CPP_MIN_LOG_LEVEL`` keeps their level.
"""
import os
import re
import sys
import tempfile

# Start-up lines kept out: INFO and WARNING records, absl's pre-initialisation notice, and the
# continuation of the CPU-instructions notice.
_NOTICE = re.compile(r'^([IW]\d{4} |WARNING: All log messages before absl::InitializeLog|'
                     r'To enable the following instructions)')


def quiet_tensorflow():
    """Imports TensorFlow with its start-up notices held back (anything else it prints, and
    everything when the import fails, still reaches stderr); C++ logging from ERROR up off."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    if 'tensorflow' in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode='w+b') as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode('utf-8', 'replace').splitlines()
            kept = [line for line in lines if failed or not _NOTICE.match(line)]
            if kept:
                print('\n'.join(kept), file=sys.stderr)
