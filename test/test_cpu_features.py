"""utils/cpu_features.py: when bfloat16 can pay (read from /proc/cpuinfo-style text), what
--precision=auto picks, and the tools turning oneDNN on before TensorFlow loads."""
import json
import os
import subprocess
import sys

import pytest

from test.conftest import REPO_ROOT
from utils import cpu_features

ZEN3 = 'processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: sysret_ss_attrs\n'
SAPPHIRE_RAPIDS = 'flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n'
ZEN4 = 'flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n'
AMX_ONLY = 'flags\t\t: fpu avx2 amx_bf16 amx_tile\n'


def _flags(tmp_path, text):
    path = tmp_path / 'cpuinfo'
    path.write_text(text)
    return cpu_features.cpu_flags(str(path))


def test_flags_are_read_from_the_first_flags_line(tmp_path):
    assert _flags(tmp_path, ZEN3) == {'fpu', 'sse2', 'avx', 'avx2', 'fma'}
    assert _flags(tmp_path, 'processor : 0\n') is None
    assert cpu_features.cpu_flags(str(tmp_path / 'missing')) is None


def test_bfloat16_is_slow_without_its_instructions_or_without_onednn(tmp_path):
    onednn = {'TF_ENABLE_ONEDNN_OPTS': '1'}
    reason = cpu_features.bfloat16_slow_reason(_flags(tmp_path, ZEN3), onednn)
    assert 'no bfloat16 instructions (AVX512_BF16 or AMX_BF16)' in reason
    fast = _flags(tmp_path, SAPPHIRE_RAPIDS)
    assert cpu_features.bfloat16_slow_reason(fast, onednn) is None
    assert cpu_features.bfloat16_slow_reason(fast, {}) is None   # the tools turn it on
    assert 'TF_ENABLE_ONEDNN_OPTS=0 turns oneDNN off' in cpu_features.bfloat16_slow_reason(
        fast, {'TF_ENABLE_ONEDNN_OPTS': '0'})
    assert cpu_features.bfloat16_description(fast) == 'AVX512_BF16, AMX_BF16'
    assert cpu_features.bfloat16_description(_flags(tmp_path, ZEN3)) == 'none'


def test_the_warning_is_printed_once_and_only_for_bfloat16(monkeypatch):
    import io
    monkeypatch.setattr(cpu_features, '_warned', [])
    monkeypatch.setattr(cpu_features, 'bfloat16_slow_reason', lambda: 'no instructions')
    stream = io.StringIO()
    assert cpu_features.warn_if_bfloat16_is_slow('float32', stream) is None
    for _ in range(2):
        assert cpu_features.warn_if_bfloat16_is_slow('bfloat16', stream) == 'no instructions'
    assert stream.getvalue() == 'warning: --precision=bfloat16: no instructions\n'


@pytest.mark.parametrize('cpuinfo, environ, precision, reason', [
    (ZEN3, {}, 'float32', 'this CPU has no bfloat16 instructions (AVX512_BF16 or AMX_BF16)'),
    (ZEN4, {}, 'bfloat16', 'this CPU has AVX512_BF16 and oneDNN is on'),
    (AMX_ONLY, {}, 'bfloat16', 'this CPU has AMX_BF16 and oneDNN is on'),
    (ZEN4, {'TF_ENABLE_ONEDNN_OPTS': '1'}, 'bfloat16', 'oneDNN is on'),
    (ZEN4, {'TF_ENABLE_ONEDNN_OPTS': '0'}, 'float32', 'TF_ENABLE_ONEDNN_OPTS=0 turns oneDNN off'),
    (SAPPHIRE_RAPIDS, {'TF_ENABLE_ONEDNN_OPTS': 'False'}, 'float32',
     'TF_ENABLE_ONEDNN_OPTS=False turns oneDNN off'),
])
def test_auto_picks_bfloat16_only_with_its_instructions_and_onednn(tmp_path, cpuinfo, environ,
                                                                    precision, reason):
    chosen, why = cpu_features.choose_precision('auto', _flags(tmp_path, cpuinfo), environ)
    assert chosen == precision and reason in why


def test_an_explicit_precision_is_kept_and_an_unknown_one_refused(tmp_path):
    zen3 = _flags(tmp_path, ZEN3)
    assert cpu_features.choose_precision('bfloat16', zen3, {}) == ('bfloat16', None)
    assert cpu_features.choose_precision('float32', zen3, {}) == ('float32', None)
    with pytest.raises(ValueError, match="one of auto, float32, bfloat16, got 'fp16'"):
        cpu_features.choose_precision('fp16', zen3, {})


@pytest.mark.parametrize('argv, default, expected', [
    (['tool'], 'auto', 'auto'),
    (['tool', '--precision=float32'], 'auto', 'float32'),
    (['tool', '--precision', 'bfloat16', '--x=1'], 'float32', 'bfloat16'),
    (['tool', '--precision=auto', '--precision=float32'], 'auto', 'float32'),   # last wins
])
def test_the_precision_is_read_from_the_command_line(argv, default, expected):
    assert cpu_features.precision_in_argv(argv, default) == expected


@pytest.mark.parametrize('cpuinfo, argv, default, environ, turned_on', [
    (ZEN4, ['tool'], 'auto', {}, '1'),
    (AMX_ONLY, ['tool', '--precision=bfloat16'], 'float32', {}, '1'),
    (ZEN3, ['tool'], 'auto', {}, None),                                    # float32 anyway
    (ZEN4, ['tool', '--precision=float32'], 'auto', {}, None),
    (ZEN4, ['tool'], 'float32', {}, None),                                 # an exporter
    (ZEN4, ['tool'], 'auto', {'TF_ENABLE_ONEDNN_OPTS': '0'}, '0'),         # the user's choice
])
def test_onednn_is_turned_on_only_for_bfloat16_on_a_bfloat16_cpu_when_unset(
        tmp_path, cpuinfo, argv, default, environ, turned_on):
    cpu_features.enable_onednn_for_bfloat16(argv, default, _flags(tmp_path, cpuinfo), environ)
    assert environ.get('TF_ENABLE_ONEDNN_OPTS') == turned_on


# Runs a tool as a script (``--help``: it stops after parsing) and records TF_ENABLE_ONEDNN_OPTS
# at the moment anything first imports TensorFlow.
_SPY = """
import json, os, runpy, sys
seen = []
class Spy(object):
    def find_spec(self, name, path=None, target=None):
        if name == 'tensorflow' and not seen:
            seen.append(os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'))
sys.meta_path.insert(0, Spy())
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name='__main__')
except SystemExit:
    pass
print(json.dumps(seen))
"""


@pytest.mark.parametrize('argv, bfloat16', [
    (['train_ssd_network.py'], True),
    (['eval_ssd_network.py'], True),
    (['detector.py', '--precision=float32'], False),
    (['export_saved_model.py'], False),
    (['export_saved_model.py', '--precision=auto'], True),
])
def test_the_tools_decide_onednn_before_tensorflow_loads(argv, bfloat16):
    env = {k: v for k, v in os.environ.items() if k != 'TF_ENABLE_ONEDNN_OPTS'}
    result = subprocess.run([sys.executable, '-c', _SPY] + argv + ['--help'], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    on_this_cpu = bool(cpu_features.bfloat16_instructions(cpu_features.cpu_flags()))
    expected = '1' if bfloat16 and on_this_cpu else 'unset'
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [expected]
