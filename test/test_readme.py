"""The README runs as written and quotes the report.

- Every number in a README table is found in the bench/REPORT.md section the table names. The
  convention: the first non-blank line after a table that holds numbers reads
  ``Source: [bench/REPORT.md](bench/REPORT.md), section "<machine heading>"[, part "<part>"].``
  where ``<machine heading>`` is the ``## `` heading of a machine's section without its date and
  ``<part>`` one of its ``### `` parts (without a part, the whole section). A README number
  matches a report number that rounds to it at the README's precision (0.279 for 0.2793).
- The ```python snippets run in a fresh interpreter, the way a user pastes them from the
  repository root; the artefacts they name (a ``.tflite`` model, an image) are built first from
  the test fixtures. A snippet whose imports are not installed is skipped.
- Every ``python X.py`` / ``python -m M`` command of the README's shell blocks answers ``--help``
  and lists each flag the README gives it; every flag the README's prose names belongs to some
  tool; every flag docs/CONTRACT.md lists for a command is in that command's ``--help``. All the
  ``--help`` texts come from one interpreter (one TensorFlow import).
"""
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bench import common
from test.conftest import REPO_ROOT

README = os.path.join(REPO_ROOT, 'README.md')
REPORT = os.path.join(REPO_ROOT, 'bench', 'REPORT.md')
CONTRACT = os.path.join(REPO_ROOT, 'docs', 'CONTRACT.md')

SOURCE_LINE = re.compile(r'^Source: \[bench/REPORT\.md\]\(bench/REPORT\.md\), '
                         r'section "(?P<section>[^"]+)"(?:, part "(?P<part>[^"]+)")?\.?$')
# A number standing alone: not part of a name (float32, VOC07) nor of mAP@0.5.
TABLE_NUMBER = re.compile(r'(?<![\w.@])\d+(?:\.\d+)?(?![\w.])')
DATED_HEADING = re.compile(r'^## (?P<title>.*?)(?: \(\d{4}-\d{2}-\d{2}\))?$')
FLAG = re.compile(r'(?<![\w-])--([a-z][a-z0-9_]*(?:-[a-z0-9]+)*)')
# Flags of commands that are not the toolkit's, named in the README's prose.
OTHER_PROGRAMS_FLAGS = {'no-deps': 'pip', 'build-arg': 'docker build'}


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


# ---------------------------------------------------------------------------------------------
# Markdown pieces


def fenced_blocks(text):
    """``(language, code)`` of each fenced block."""
    return re.findall(r'^```(\w*)\n(.*?)^```', text, re.M | re.S)


def prose(text):
    """``text`` without its fenced blocks and HTML comments."""
    return re.sub(r'<!--.*?-->', '', re.sub(r'^```.*?^```', '', text, flags=re.M | re.S),
                  flags=re.S)


def tables(text):
    """``(first line number, rows, source line or None)`` of each table outside fenced blocks;
    ``rows`` are lists of cells, the header and separator rows left out."""
    lines = prose_lines(text)
    found = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith('|'):
            i += 1
            continue
        start = i
        while i < len(lines) and lines[i].startswith('|'):
            i += 1
        rows = [[cell.strip() for cell in line.strip().strip('|').split('|')]
                for line in lines[start + 2:i]]
        following = next((line for line in lines[i:] if line.strip()), '')
        found.append((start + 1, rows, following if following.startswith('Source:') else None))
    return found


def prose_lines(text):
    """The lines of ``text`` with those of fenced blocks blanked (line numbers kept)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith('```'):
            fenced = not fenced
            out.append('')
        else:
            out.append('' if fenced else line)
    return out


def report_text(section, part=None, path=REPORT):
    """The text of the report's machine section whose heading, without its date, is ``section``
    (only its part ``part`` when given); None when there is no such section or part."""
    _, machines = common.read_report(path)
    for machine in machines.values():
        if DATED_HEADING.match(machine.heading).group('title') == section:
            if part is None:
                return '\n'.join([machine.head] + list(machine.parts.values()))
            return machine.parts.get(part)
    return None


def number_is_in(value, report_numbers):
    """True when one of ``report_numbers`` rounds to ``value`` (a README cell's number) at the
    precision ``value`` is written with."""
    decimals = len(value.partition('.')[2])
    half = 0.5 * 10 ** -decimals
    target = float(value)
    return any(target - half - 1e-9 <= float(x) < target + half - 1e-9 for x in report_numbers)


def table_problems(readme_text, report_path=REPORT):
    """One line per README table number missing from its source section, and per table with
    numbers but no (valid) source line."""
    problems = []
    for line_number, rows, source in tables(readme_text):
        numbers = [n for row in rows for cell in row for n in TABLE_NUMBER.findall(cell)]
        if not numbers:
            continue
        match = SOURCE_LINE.match(source or '')
        if not match:
            problems.append('README.md:%d: a table with numbers needs a "Source: ..." line '
                            'after it (got %r)' % (line_number, source))
            continue
        text = report_text(match.group('section'), match.group('part'), report_path)
        if text is None:
            problems.append('README.md:%d: no section %r%s in bench/REPORT.md'
                            % (line_number, match.group('section'),
                               ' with part %r' % match.group('part') if match.group('part')
                               else ''))
            continue
        report_numbers = re.findall(r'\d+(?:\.\d+)?', text)
        problems.extend('README.md:%d: %s not in the report section it names'
                        % (line_number, n) for n in numbers if not number_is_in(n, report_numbers))
    return problems


def shell_commands(text):
    """``(command, [flag names])`` of each ``python X.py`` / ``python -m M`` line of the
    shell blocks (continuations joined, comments dropped)."""
    commands = []
    for language, code in fenced_blocks(text):
        if language not in ('', 'bash', 'sh', 'shell'):
            continue
        for line in code.replace('\\\n', ' ').splitlines():
            tokens = shlex.split(line, comments=True)
            if len(tokens) < 2 or tokens[0] not in ('python', 'python3'):
                continue
            if tokens[1] == '-m':
                command, rest = ('module', tokens[2]), tokens[3:]
            else:
                command, rest = ('path', tokens[1]), tokens[2:]
            commands.append((command, [t[2:].split('=')[0] for t in rest if t.startswith('--')]))
    return commands


def contract_commands(text):
    """``(command, [flag names], {flag: default})`` of each ``- `python ...` flags: ...`` item
    of the contract; a default is the one-word value in brackets after a flag: `--port` (8500)."""
    commands = []
    for item in re.split(r'\n(?=- |\n)', text):
        match = re.match(r'- `python (-m )?(\S+)` flags', item)
        if match:
            command = ('module' if match.group(1) else 'path', match.group(2))
            defaults = dict(re.findall(r'`--(\w+)`\s+\(([^\s()|]+)\)', item))
            commands.append((command, FLAG.findall(item), defaults))
    return commands


def flag_listed(flag, help_text):
    """True when ``--flag`` (or, for ``--noX``, the boolean ``--X``) is one of ``help_text``'s
    flags."""
    names = set(re.findall(r'^  --(\w+) \(default', help_text, re.M)) | {'help'}
    return flag in names or (flag.startswith('no') and flag[2:] in names)


# ---------------------------------------------------------------------------------------------
# --help of every command, from one interpreter

HELP_RUNNER = r'''
import contextlib, io, json, runpy, sys
results = {}
for kind, target in json.loads(sys.argv[1]):
    sys.argv = [target, '--help']
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            if kind == 'module':
                runpy.run_module(target, run_name='__main__', alter_sys=True)
            else:
                runpy.run_path(target, run_name='__main__')
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (e.code is not None)
    results['%s %s' % (kind, target)] = [code, out.getvalue()]
print(json.dumps(results))
'''


@pytest.fixture(scope='module')
def help_texts():
    """{(kind, target): help text} of every command the README's shell blocks and the
    contract show, each run as ``python X.py --help`` / ``python -m M --help`` would run it."""
    wanted = sorted({command for command, _ in shell_commands(read(README))} |
                    {command for command, _, _ in contract_commands(read(CONTRACT))})
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    result = subprocess.run([sys.executable, '-c', HELP_RUNNER, json.dumps(wanted)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    texts = {}
    for kind, target in wanted:
        code, text = answers['%s %s' % (kind, target)]
        assert code == 0 and text.strip(), '%s --help: exit %s\n%s' % (target, code, text)
        texts[(kind, target)] = text
    return texts


def test_every_readme_command_knows_its_flags(help_texts):
    commands = shell_commands(read(README))
    assert len(commands) >= 15
    unknown = ['%s --%s' % (target, flag) for (kind, target), flags in commands
               for flag in flags if not flag_listed(flag, help_texts[(kind, target)])]
    assert not unknown, unknown


def test_every_flag_and_default_of_the_contract_exists(help_texts):
    commands = contract_commands(read(CONTRACT))
    assert len(commands) >= 9
    unknown = ['%s --%s' % (target, flag) for (kind, target), flags, _ in commands
               for flag in flags if not flag_listed(flag, help_texts[(kind, target)])]
    assert not unknown, unknown
    defaults = [(command, flag, value) for command, _, values in commands
                for flag, value in values.items()]
    assert len(defaults) >= 40
    wrong = ['%s --%s (%s)' % (command[1], flag, value) for command, flag, value in defaults
             if '  --%s (default: %s)\n' % (flag, value) not in help_texts[command]]
    assert not wrong, wrong


def test_contract_record_keys_are_the_converters():
    """docs/CONTRACT.md §3 names exactly the keys datasets/records.py writes."""
    from datasets import records
    section = read(CONTRACT).split('## §3 ')[1].split('\n## ')[0]
    named = set()
    for name in re.findall(r'`(image/[\w/|]+)`', section):
        head, _, tail = name.rpartition('/')
        named.update(head + '/' + part if head else part for part in tail.split('|'))
    keys = {value for key, value in vars(records).items() if key.startswith('KEY_')}
    assert named == keys


def test_every_flag_in_the_readme_prose_belongs_to_a_tool(help_texts):
    """A flag named in a sentence (``--breakdown_threshold``) is one of some tool's, or of a
    program the README names beside it (pip, docker); ``--fresh`` is demo.sh's own."""
    everything = '\n'.join(help_texts.values())
    demo = read(os.path.join(REPO_ROOT, 'scripts', 'demo.py'))
    unknown = sorted({flag for flag in FLAG.findall(prose(read(README)))
                      if not flag_listed(flag, everything) and flag not in OTHER_PROGRAMS_FLAGS
                      and "'%s'" % flag not in demo})
    assert not unknown, unknown


# ---------------------------------------------------------------------------------------------
# Tables against the report


def test_readme_tables_quote_the_report():
    readme = read(README)
    assert sum(1 for _, _, source in tables(readme) if source) >= 5
    problems = table_problems(readme)
    assert not problems, '\n'.join(problems)


def test_table_check_catches_drift(tmp_path):
    """A number the section does not hold, a table without its source and an unknown part are
    each reported; rounding to the README's precision is accepted."""
    report = tmp_path / 'REPORT.md'
    report.write_text('# Report\n\n<!-- machine: M | 2 cores | none -->\n'
                      '## CPU M, 2 cores (2026-12-05)\n\nhead 0.2793 s\n\n'
                      '<!-- part: Speed -->\n### Speed\n\n| a | b |\n|---|---|\n| x | 4.016 |\n')
    source = ('Source: [bench/REPORT.md](bench/REPORT.md), section "CPU M, 2 cores"%s.')
    good = '| a | b |\n|---|---|\n| x | 4.02 |\n\n' + source % ', part "Speed"' + '\n'
    assert table_problems(good, str(report)) == []
    whole = '| a | b |\n|---|---|\n| x | 0.279 |\n\n' + source % '' + '\n'
    assert table_problems(whole, str(report)) == []
    assert len(table_problems(good.replace('4.02', '4.03'), str(report))) == 1
    assert len(table_problems('| a | b |\n|---|---|\n| x | 0.279 |\n', str(report))) == 1
    assert 'no section' in table_problems(good.replace('Speed', 'Latency'), str(report))[0]


# ---------------------------------------------------------------------------------------------
# Python snippets


@pytest.fixture(scope='module')
def toy_checkpoint(tmp_path_factory):
    """A small SSD trained on the toy scene: it finds the scene's two objects."""
    from preprocessing import np_transform
    from test import checkpoints
    whitened = checkpoints.toy_scene() - np.asarray(np_transform.VGG_MEANS, np.float32)
    return checkpoints.make_checkpoint(str(tmp_path_factory.mktemp('readme_ckpt')), step=40,
                                       train_on=(whitened, checkpoints.TOY_LABELS,
                                                 checkpoints.TOY_BOXES))


def build_artefacts(code, folder, checkpoint, tfrecords):
    """Writes under ``folder`` each relative file ``code`` names: a ``.tflite`` exported from
    ``checkpoint`` (int8 when its path says so, calibrated on ``tfrecords``), an image of the toy
    scene. Returns the class names the snippet should then print (empty: no detection asked)."""
    import export_tflite
    from test import checkpoints
    expected = []
    for path in re.findall(r"'([\w./-]+\.(?:tflite|jpg|png))'", code):
        target = os.path.join(folder, path)
        os.makedirs(os.path.dirname(target) or folder, exist_ok=True)
        if path.endswith('.tflite'):
            name = os.path.splitext(os.path.basename(path))[0]
            export_tflite.export(checkpoint, os.path.dirname(target), model_name=name,
                                 quantization='int8' if 'int8' in path else 'none',
                                 calibration_dataset_dir=tfrecords,
                                 calibration_split_name='train', num_calibration_images=8)
            expected = [checkpoints.CLASS_NAMES[label - 1] for label in checkpoints.TOY_LABELS]
        else:
            cv2.imwrite(target, checkpoints.toy_scene()[:, :, ::-1])
    return expected


def python_snippets():
    return [code for language, code in fenced_blocks(read(README)) if language == 'python']


def test_readme_has_python_snippets():
    assert python_snippets()


@pytest.mark.parametrize('index', range(len(python_snippets())))
def test_python_snippet_runs_as_printed(index, toy_checkpoint, sample_tfrecords, tmp_path):
    code = python_snippets()[index]
    for module in re.findall(r'^(?:import|from) (\w+)', code, re.M):
        if importlib.util.find_spec(module) is None and \
                not os.path.exists(os.path.join(REPO_ROOT, module + '.py')):
            pytest.skip('%s is not installed' % module)
    expected = build_artefacts(code, str(tmp_path), toy_checkpoint, sample_tfrecords)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='3')
    result = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in expected:
        assert name in result.stdout, result.stdout


def test_readme_stays_a_guide():
    """At most 350 lines in the order a user works; measurements belong in bench/REPORT.md."""
    with open(README, encoding='utf-8') as f:
        text = f.read()
    assert len(text.splitlines()) <= 350
    headings = re.findall(r'^## (.+)$', text, re.M)
    order = ['Install', 'Your own VOC data', 'Train', 'Evaluate', 'Improve your labels', 'Detect',
             'Export', 'Serve', 'Past one machine', 'Edge formats', 'Walkthrough', 'Troubleshooting']
    assert [next(i for i, h in enumerate(headings) if h.startswith(step)) for step in order] == \
        sorted(next(i for i, h in enumerate(headings) if h.startswith(step)) for step in order)
