"""utils/cli.py: the one command-line convention, and every tool that follows it."""
import importlib
import os
import subprocess
import sys

import pytest
from absl import flags

from utils import cli
from test.conftest import value_after_importing
from utils.errors import ToolkitError

# Modules whose main(argv) follows the convention.
CLI_MODULES = ('train_ssd_network', 'bench.bench_training', 'bench.bench_finetune',
               'bench.bench_network', 'bench.bench_data', 'bench.bench_learning',
               'bench.bench_peak', 'bench.bench_serving', 'bench.bench_tflite',
               'bench.bench_pytorch', 'bench.bench_threads', 'bench.bench_request_memory',
               'bench.profile_forward', 'bench.run_all',
               'detector', 'eval_ssd_network', 'export_saved_model', 'export_tflite',
               'datasets.write_dataset.dataset_to_tfrecords', 'datasets.write_dataset.sample_data',
               'serving.server.model_server', 'serving.clients.client', 'serving.clients.web',
               'scripts.demo')


def _flag_set():
    flag_set = cli.FlagSet()
    flag_set.group('Data')
    flag_set.string('split', 'test', 'Split to read.')
    flag_set.deprecated_alias('split_name', 'split')
    flag_set.group('Output')
    flag_set.integer('count', 1, 'How many.')
    return flag_set


def _run(capsys, argv, main_fn):
    status = cli.run(['tool'] + argv, _flag_set(), 'A tool.', main_fn)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_help_lists_the_own_flags_by_theme(capsys):
    status, out, _ = _run(capsys, ['--help'], lambda options: 0)
    assert status == 0
    assert out.splitlines()[:4] == ['A tool.', '', 'Data:', '  --split (default: test)']
    assert 'Output:' in out and '--count' in out
    assert 'Deprecated spelling: --split_name' in out
    assert '--helpfull' not in out and '--flagfile' not in out and 'absl' not in out


def test_help_into_a_pipe_closed_early_is_no_error():
    """``tool --help | head -1``: help longer than the pipe's buffer, the reader gone after a
    few bytes; the tool exits 0 with nothing on stderr."""
    script = ('import sys; from utils import cli; '
              'sys.exit(cli.run(["tool", "--help"], cli.FlagSet(), "A tool. " * 100000, None))')
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen([sys.executable, '-c', script], cwd=repo,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.read(7) == b'A tool.'
    process.stdout.close()
    assert process.wait(60) == 0
    assert process.stderr.read() == b''


@pytest.mark.parametrize('argv,message', [
    (['--nope=1'], 'error: Unknown command line flag'),
    (['--count=abc'], 'error: flag --count=abc'),
    (['stray'], "error: unexpected argument 'stray'"),
])
def test_bad_flags_are_one_line_and_exit_2(capsys, argv, message):
    status, _, err = _run(capsys, argv, lambda options: 0)
    assert status == 2 and err.startswith(message) and err.count('\n') == 1, err


def test_toolkit_errors_are_caught_once(capsys):
    def usage(options):
        raise cli.UsageError('--count must be even\nsecond line')

    def failure(options):
        raise ToolkitError('no such file')

    assert _run(capsys, [], usage)[0::2] == (2, 'error: --count must be even\n')
    assert _run(capsys, [], failure)[0::2] == (1, 'error: no such file\n')
    with pytest.raises(KeyError):  # a bug is not a user error: its traceback is kept
        _run(capsys, [], lambda options: {}['x'])


def test_deprecated_alias_sets_the_flag_and_conflicts_are_refused(capsys):
    seen = []
    assert _run(capsys, ['--split_name=train'], lambda options: seen.append(options.split) or 0)[0] == 0
    assert seen == ['train']
    status, _, err = _run(capsys, ['--split_name=train', '--split=test'], lambda options: 0)
    assert status == 2 and 'disagree' in err
    assert _run(capsys, ['--split_name=test', '--split=test'], lambda options: 0)[0] == 0


def test_flags_are_parsed_afresh_on_each_run(capsys):
    flag_set = _flag_set()
    values = []
    for argv in (['tool', '--count=3'], ['tool']):
        cli.run(argv, flag_set, 'A tool.', lambda options: values.append(options.count))
    assert values == [3, 1]


def test_make_main_runs_the_job_with_flags_defined_afresh(capsys):
    counts = []
    main = cli.make_main('A tool.', _flag_set, lambda options: counts.append(options.count) or 7)
    assert main(['tool', '--count=3']) == 7 and main(['tool']) == 7 and counts == [3, 1]
    assert main(['tool', '--help']) == 0 and capsys.readouterr().out.startswith('A tool.\n')
    assert main(['tool', '--count=many']) == 2 and counts == [3, 1]
    assert capsys.readouterr().err.startswith('error: ')


def test_start_tool_imports_tensorflow_for_a_script_only():
    """Imported (a test, another script): nothing happens; run as a script: TensorFlow loads."""
    code = ('import sys; from utils import tf_logging; tf_logging.start_tool(%r, "float32"); '
            'print("tensorflow" in sys.modules)')
    for name, imported in (('detector', 'False'), ('__main__', 'True')):
        result = subprocess.run([sys.executable, '-c', code % name], capture_output=True,
                                text=True, timeout=300,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert result.returncode == 0 and result.stdout.strip() == imported, result.stderr


def test_importing_the_tools_defines_no_flag():
    """Absl's global registry (where TensorFlow defines its own flags) gets none of the tools'."""
    shared, count = value_after_importing(CLI_MODULES, (
        '(lambda own: [sorted(own & set(sys.modules["absl.flags"].FLAGS)), len(own)])('
        'set().union(*(m.define_flags().values for m in modules)) - {"help", "h"})'))
    assert shared == [] and count > 50


@pytest.mark.parametrize('name', CLI_MODULES)
def test_every_tool_answers_help_with_its_own_flags(name, capsys):
    module = importlib.import_module(name)
    assert module.main([name, '--help']) == 0
    out = capsys.readouterr().out
    flag_set = module.define_flags()
    assert isinstance(flag_set.values, flags.FlagValues) and flag_set.groups
    for theme, names in flag_set.groups:
        assert '%s:' % theme in out
        for flag_name in names:
            assert '  --%s (default: ' % flag_name in out
    assert module.main([name, '--no_such_flag']) == 2
    assert capsys.readouterr().err.startswith('error: ')


@pytest.mark.parametrize('argv, chosen, line', [
    ([], ('bfloat16', 'this CPU has AMX_BF16 and oneDNN is on'),
     'precision: bfloat16 (--precision=auto: this CPU has AMX_BF16 and oneDNN is on)\n'),
    ([], ('float32', 'no bfloat16 instructions'),
     'precision: float32 (--precision=auto: no bfloat16 instructions)\n'),
    (['--precision=float32'], None, ''),
    (['--precision=bfloat16'], None, ''),
])
def test_auto_precision_is_resolved_before_main_in_one_line(monkeypatch, capsys, argv, chosen,
                                                            line):
    from utils import cpu_features
    monkeypatch.setattr(cpu_features, 'choose_precision', lambda requested: chosen)
    flag_set = cli.FlagSet()
    flag_set.group('Model')
    flag_set.precision(cpu_features.AUTO)
    seen = []
    assert cli.run(['tool'] + argv, flag_set, 'A tool.',
                   lambda options: seen.append(options.precision) or 0) == 0
    assert seen == [chosen[0] if chosen else argv[0].split('=')[1]]
    assert capsys.readouterr().err == line


def test_precision_accepts_auto_and_refuses_other_names(capsys):
    flag_set = cli.FlagSet()
    flag_set.group('Model')
    flag_set.precision()
    assert flag_set.values['precision'].default == 'float32'   # the exporters' default
    assert cli.run(['tool', '--precision=float16'], flag_set, 'A tool.', lambda options: 0) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: flag --precision=float16') and 'auto' in err
