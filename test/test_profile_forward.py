"""bench/profile_forward.py's reading of oneDNN's verbose log.

``test/data/onednn_verbose_bfloat16.log`` is a real capture, trimmed to 24 lines: TensorFlow
2.21's oneDNN v3.7.3 with ``ONEDNN_VERBOSE=1`` on a width-1/8 SSD300 bfloat16 forward pass
(AVX512_BF16 CPU): the info and template lines, then 16 exec lines.
"""
import os
import subprocess
import sys

import pytest

from bench import profile_forward
from test.conftest import REPO_ROOT

LOG = os.path.join(REPO_ROOT, 'test', 'data', 'onednn_verbose_bfloat16.log')
# Summed from the file with awk (count, ms per kind and kernel).
EXPECTED = [('reorder', 'jit:uni', 5, 11.147703),
            ('convolution', 'brg_conv_fwd:avx512_core_bf16', 5, 10.856937),
            ('pooling', 'jit:avx512_core_bf16', 4, 1.111816),
            ('softmax', 'jit:avx512_core_bf16', 2, 0.457031)]


def _lines():
    with open(LOG) as f:
        return f.read().splitlines()


def test_exec_lines_are_read_and_the_rest_ignored():
    primitives = [p for p in map(profile_forward.parse_exec_line, _lines()) if p is not None]
    assert len(primitives) == 16
    first = primitives[0]
    assert first == profile_forward.Primitive('reorder', 'jit:uni', 'undef', 0.0078125)
    conv = [p for p in primitives if p.kind == 'convolution'][0]
    assert (conv.kernel, conv.prop_kind, conv.ms) == (
        'brg_conv_fwd:avx512_core_bf16', 'forward_training', 1.70996)
    # oneDNN v2 (no "v1,primitive") and timestamped lines put the same fields after "exec".
    assert profile_forward.parse_exec_line(
        'onednn_verbose,1700000000.5,exec,cpu,convolution,jit:avx2,forward_inference,'
        'src_f32::blocked:acdb:f0,,alg:convolution_direct,mb1_ic3oc8,2.5') == \
        profile_forward.Primitive('convolution', 'jit:avx2', 'forward_inference', 2.5)
    for other in ('onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2',
                  'onednn_verbose,v1,graph,exec,cpu,1,conv,f32,,,,dnnl_backend,3.0',
                  'I0000 port.cc:153] oneDNN custom operations are on.',
                  'onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,,,,8x3,n/a'):
        assert profile_forward.parse_exec_line(other) is None


def test_summary_sums_per_kind_and_kernel_per_run():
    primitives = [p for p in map(profile_forward.parse_exec_line, _lines()) if p is not None]
    rows = profile_forward.summarize(primitives)
    assert [row[:3] for row in rows] == [row[:3] for row in EXPECTED]
    for row, expected in zip(rows, EXPECTED):
        assert row[3] == pytest.approx(expected[3], abs=1e-6)
    halves = profile_forward.summarize(primitives, runs=2)
    assert halves[0][2:] == pytest.approx((2.5, 11.147703 / 2))
    table = profile_forward.format_table(rows, top=2)
    total = sum(row[3] for row in EXPECTED)
    assert len(table) == 4 and table[1].split()[:3] == ['reorder', 'jit:uni', '5']
    assert table[1].endswith('%.1f%%' % (100 * 11.147703 / total))
    assert table[3].split()[:3] == ['(2', 'more)', '6']


def test_markers_split_the_warm_up_from_the_timed_runs():
    exec_lines = [line for line in _lines() if ',exec,' in line]
    without_reorders = [line for line in exec_lines if ',reorder,' not in line]
    lines = (['banner'] + exec_lines + [profile_forward.TIMED_START] + without_reorders
             + [profile_forward.TIMED_END, exec_lines[0], 'wall 0.5'])
    warmup, timed = profile_forward.split_runs(lines)
    assert len(warmup) == 16 and len(timed) == 11
    # The warm-up had 5 reorders more than the timed run: reported as done once, with their ms.
    extra = profile_forward.first_run_extra(warmup, timed, runs=1)
    assert [row[:3] for row in extra] == [('reorder', 'jit:uni', 5)]
    assert extra[0][3] == pytest.approx(11.147703)


def test_summarize_cli_prints_the_table_and_refuses_a_log_without_exec_lines(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, 'bench/profile_forward.py'] + list(args),
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    result = run('--summarize=%s' % LOG, '--top=3')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:2] == ['reorder', 'jit:uni']
    empty = tmp_path / 'empty.log'
    empty.write_text('onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2\n')
    result = run('--summarize=%s' % empty)
    assert result.returncode == 2
    assert 'no onednn_verbose exec line' in result.stderr.strip().splitlines()[-1]
    result = run('--summarize=%s' % (tmp_path / 'missing.log'))
    assert result.returncode == 2 and 'missing.log' in result.stderr


def test_a_traced_run_is_summed_per_op_type():
    import numpy as np
    import tensorflow.compat.v1 as tf
    with tf.Graph().as_default():
        a = tf.placeholder(tf.float32, [64, 64])   # fed: grappler cannot fold the graph away
        product = tf.matmul(tf.matmul(a, a), a) + 1.
        with tf.Session() as session:
            metadata = tf.RunMetadata()
            session.run(product, {a: np.ones((64, 64), np.float32)},
                        options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                        run_metadata=metadata)
    ops = profile_forward.traced_ops(metadata.step_stats)
    # The child prints each op as a line; the parent reads it back and sums per op type.
    lines = ['%s %s %.4f' % (profile_forward.TRACE_TAG, op.kernel, op.ms) for op in ops]
    read = [profile_forward.parse_trace_line(line) for line in lines + ['wall 0.1', '@@op x']]
    assert read[-2:] == [None, None]
    rows = {row[1]: row for row in profile_forward.summarize(read[:-2])}
    matmul = [row for name, row in rows.items() if name.endswith('MatMul')]  # or oneDNN's
    assert len(matmul) == 1 and matmul[0][2] == 2 and matmul[0][3] >= 0
    assert rows['AddV2'][2] == 1
    assert all(row[0] == profile_forward.TRACE_KIND for row in rows.values())
