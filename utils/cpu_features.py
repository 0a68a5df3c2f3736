"""Whether bfloat16 can pay on this machine: the CPU's bfloat16 instructions and oneDNN.

bfloat16 halves the memory traffic of every layer, but its arithmetic is fast only where the CPU
has bfloat16 instructions (AVX512_BF16 or AMX-BF16) and TensorFlow routes the ops to oneDNN
(``TF_ENABLE_ONEDNN_OPTS=1``). Elsewhere TensorFlow emulates it and the network runs slower than
in float32. The tools still honour ``--precision=bfloat16`` everywhere (an export may be meant
for another machine), and say once why it will not be fast here.
"""
import os
import sys

BFLOAT16_FLAGS = ('avx512_bf16', 'amx_bf16')


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


def bfloat16_slow_reason(flags=None, environ=None):
    """One line saying why bfloat16 will not be faster than float32 here, or None when it can be
    (or when the CPU's flags cannot be read)."""
    flags = cpu_flags() if flags is None else flags
    environ = os.environ if environ is None else environ
    if flags is not None and not any(name in flags for name in BFLOAT16_FLAGS):
        return ('this CPU has no bfloat16 instructions (%s): TensorFlow emulates bfloat16, '
                'slower than float32' % ' or '.join(f.upper() for f in BFLOAT16_FLAGS))
    if environ.get('TF_ENABLE_ONEDNN_OPTS') != '1':
        return ('TF_ENABLE_ONEDNN_OPTS is not 1: without oneDNN, bfloat16 runs no faster than '
                'float32 (command.sh and demo.sh set it)')
    return None


def bfloat16_description(flags=None):
    """'AVX512_BF16, AMX_BF16' or 'none' — the bfloat16 instructions of this CPU, for reports."""
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return 'unknown'
    present = [name.upper() for name in BFLOAT16_FLAGS if name in flags]
    return ', '.join(present) or 'none'


_warned = []


def warn_if_bfloat16_is_slow(precision, stream=None):
    """Prints ``warning: --precision=bfloat16: <reason>`` once per process when bfloat16 cannot
    pay here; returns the reason (None when there is nothing to say)."""
    reason = bfloat16_slow_reason() if precision == 'bfloat16' else None
    if reason and not _warned:
        _warned.append(reason)
        print('warning: --precision=bfloat16: %s' % reason, file=stream or sys.stderr, flush=True)
    return reason
