"""utils/cpu_features.py: when bfloat16 can pay, read from /proc/cpuinfo-style text."""
from utils import cpu_features

ZEN3 = 'processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nbugs\t\t: sysret_ss_attrs\n'
SAPPHIRE_RAPIDS = 'flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n'


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
    assert 'TF_ENABLE_ONEDNN_OPTS' in cpu_features.bfloat16_slow_reason(fast, {})
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
