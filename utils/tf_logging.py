"""Keeps TensorFlow's C++ log lines out of a tool's output.

TensorFlow prints its start-up notices (the oneDNN banner, CPU instructions, "All log messages
before absl::InitializeLog() is called...") while its libraries load, before any log level
applies; later, ``TF_CPP_MIN_LOG_LEVEL`` rules, and at 2 it still prints the ERROR lines
libjpeg's warnings become ("Premature end of JPEG data"). libjpeg also writes some messages
("Input file read error") straight to stderr, where no log level reaches. The tools answer a bad
image with their own one-line message, so they hold these back:

- ``start_tool(__name__, default_precision)`` at the top of every tool, before anything imports
  TensorFlow (a user who sets ``TF_CPP_MIN_LOG_LEVEL`` keeps their level);
- ``native_stderr_held()`` around a session run that decodes a user's image, a LiteRT
  interpreter's start and a TFLite conversion.
"""
import contextlib
import os
import re
import sys
import tempfile

from utils import cpu_features

# Lines held back: INFO and WARNING records, absl's pre-initialisation notice, the continuation
# of the CPU-instructions notice, and libjpeg's own messages.
_NOTICE = re.compile(r'^([IWE]\d{4} |WARNING: All log messages before absl::InitializeLog|'
                     r'To enable the following instructions|Input file read error|'
                     r'Premature end of JPEG|Corrupt JPEG data|Invalid JPEG|'
                     # LiteRT's delegate notice, the TFLite converter's quantizer settings
                     r'INFO: Created TensorFlow Lite|fully_quantize: )')


@contextlib.contextmanager
def native_stderr_held():
    """Holds what native code writes on file descriptor 2 while the block runs; afterwards
    prints the lines that are not TensorFlow's or libjpeg's notices (all of them when the block
    raised something other than a TensorFlow error)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode='w+b') as captured:
        os.dup2(captured.fileno(), 2)
        keep_all = True
        try:
            yield
            keep_all = False
        except Exception as error:
            keep_all = not type(error).__module__.startswith('tensorflow')
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode('utf-8', 'replace').splitlines()
            kept = [line for line in lines if keep_all or not _NOTICE.match(line)]
            if kept:
                print('\n'.join(kept), file=sys.stderr)


def quiet_tensorflow():
    """Imports TensorFlow with its start-up notices held back (anything else it prints, and
    everything when the import fails, still reaches stderr); C++ logging below FATAL off."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    if 'tensorflow' not in sys.modules:
        with native_stderr_held():
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import


def start_tool(module_name, default_precision=None):
    """The start of every tool, called before its TensorFlow import with its ``__name__``: when
    it runs as a script (``'__main__'``; imported by a test or another script, nothing), in the
    order it needs, decides oneDNN for a bfloat16 run of a tool with ``--precision`` (whose
    default is ``default_precision``; ``cpu_features.enable_onednn_for_bfloat16`` reads
    ``sys.argv``: TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, on import), then imports
    TensorFlow quietly."""
    if module_name != '__main__':
        return
    if default_precision is not None:
        cpu_features.enable_onednn_for_bfloat16(sys.argv, default_precision)
    quiet_tensorflow()
