"""Which precision the network computes in on this machine: the CPU's bfloat16 instructions,
oneDNN, and ``--precision=auto``. Imports no TensorFlow (it runs before TensorFlow loads).

bfloat16 halves the memory traffic of every layer, but its arithmetic is fast only where the CPU
has bfloat16 instructions (AVX512_BF16 or AMX-BF16) and TensorFlow routes the ops to oneDNN.
Elsewhere TensorFlow emulates it and the network runs slower than in float32. So:

- ``auto`` (the trainer's, evaluator's and detector's default) picks bfloat16 where the CPU has
  those instructions and oneDNN is not turned off (``TF_ENABLE_ONEDNN_OPTS=0``), float32
  elsewhere, and says which in one line;
- a tool about to compute in bfloat16 on such a CPU turns oneDNN on (``TF_ENABLE_ONEDNN_OPTS=1``)
  before TensorFlow is imported, unless the user set the variable: some TensorFlow builds leave
  oneDNN off on some CPUs (AMD's among them), and bfloat16 is slow without it;
- an explicit ``bfloat16`` is honoured everywhere (an export may be meant for another machine),
  with one warning saying why it will not be fast here.
"""
import os
import sys

PRECISIONS = ('float32', 'bfloat16')   # what the network can compute in
AUTO = 'auto'
PRECISION_CHOICES = (AUTO,) + PRECISIONS  # what --precision accepts
BFLOAT16_FLAGS = ('avx512_bf16', 'amx_bf16')
ONEDNN_VARIABLE = 'TF_ENABLE_ONEDNN_OPTS'
_OFF_VALUES = ('0', 'false')  # what TensorFlow reads as off (case-insensitive)


def cpu_flags(cpuinfo_path='/proc/cpuinfo'):
    """The instruction-set flags of the first CPU in ``cpuinfo_path``, or None where unknown
    (not Linux, or no ``flags`` line)."""
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                if line.startswith('flags'):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def bfloat16_instructions(flags):
    """The bfloat16 instruction sets among ``flags`` (upper case), e.g. ``['AVX512_BF16']``."""
    return [name.upper() for name in BFLOAT16_FLAGS if name in (flags or ())]


def _no_instructions_reason():
    return 'this CPU has no bfloat16 instructions (%s): TensorFlow emulates bfloat16, slower ' \
           'than float32' % ' or '.join(f.upper() for f in BFLOAT16_FLAGS)


def onednn_off_reason(environ=None):
    """One line when the environment turns oneDNN off (``TF_ENABLE_ONEDNN_OPTS=0``), else None.
    Unset means on: the tools set it before TensorFlow loads, and TensorFlow turns oneDNN on
    by itself on Linux CPUs with bfloat16 instructions."""
    environ = os.environ if environ is None else environ
    value = environ.get(ONEDNN_VARIABLE)
    if value is not None and value.strip().lower() in _OFF_VALUES:
        return '%s=%s turns oneDNN off, without which bfloat16 runs no faster than float32' % (
            ONEDNN_VARIABLE, value)
    return None


def bfloat16_slow_reason(flags=None, environ=None):
    """One line saying why bfloat16 will not be faster than float32 here, or None when it can be
    (or when the CPU's flags cannot be read)."""
    flags = cpu_flags() if flags is None else flags
    if flags is not None and not bfloat16_instructions(flags):
        return _no_instructions_reason()
    return onednn_off_reason(environ)


def choose_precision(requested, flags=None, environ=None):
    """``(precision, reason)``: ``requested`` itself when it is float32 or bfloat16 (reason None);
    for ``auto`` bfloat16 where it pays here, else float32, with the reason in words.

    Raises ValueError for any other name.
    """
    if requested in PRECISIONS:
        return requested, None
    if requested != AUTO:
        raise ValueError('precision must be one of %s, got %r'
                         % (', '.join(PRECISION_CHOICES), requested))
    flags = cpu_flags() if flags is None else flags
    present = bfloat16_instructions(flags)
    if not present:
        return 'float32', (_no_instructions_reason() if flags is not None
                           else 'the CPU flags cannot be read (no /proc/cpuinfo)')
    off = onednn_off_reason(environ)
    if off:
        return 'float32', off
    return 'bfloat16', 'this CPU has %s and oneDNN is on' % ', '.join(present)


def precision_in_argv(argv, default):
    """The value of ``--precision`` in a command line (the last one given, as absl takes it), or
    ``default``. Read before the flags are parsed, i.e. before TensorFlow loads."""
    value = default
    for i, arg in enumerate(argv[1:], 1):
        if arg.startswith('--precision='):
            value = arg.split('=', 1)[1]
        elif arg == '--precision' and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def enable_onednn_for_bfloat16(argv, default, flags=None, environ=None):
    """Turns oneDNN on (``TF_ENABLE_ONEDNN_OPTS=1`` in ``environ``) when the command line
    ``argv`` will compute in bfloat16 (``--precision``, else ``default``: auto or bfloat16) on a
    CPU with bfloat16 instructions and the user has not set the variable.

    Call it first in a tool's entry path, before anything imports TensorFlow (which reads the
    variable once, on import). Returns True when it set the variable.
    """
    environ = os.environ if environ is None else environ
    flags = cpu_flags() if flags is None else flags
    if (precision_in_argv(argv, default) in (AUTO, 'bfloat16')
            and bfloat16_instructions(flags) and ONEDNN_VARIABLE not in environ):
        environ[ONEDNN_VARIABLE] = '1'
        return True
    return False


def bfloat16_description(flags=None):
    """'AVX512_BF16, AMX_BF16' or 'none' — the bfloat16 instructions of this CPU, for reports."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return 'unknown'
    return ', '.join(bfloat16_instructions(flags)) or 'none'


_warned = []


def warn_if_bfloat16_is_slow(precision, stream=None):
    """Prints ``warning: --precision=bfloat16: <reason>`` once per process when bfloat16 cannot
    pay here; returns the reason (None when there is nothing to say)."""
    reason = bfloat16_slow_reason() if precision == 'bfloat16' else None
    if reason and not _warned:
        _warned.append(reason)
        print('warning: --precision=bfloat16: %s' % reason, file=stream or sys.stderr, flush=True)
    return reason
