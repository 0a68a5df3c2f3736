"""docs/readme_fragments/scale_out.md: every command it shows runs (its ``--help``) and every flag
it gives exists, in the tool's own flags or, for batch_detect.py, in Beam's pipeline options;
every file it names exists."""
import os
import re
import shlex
import subprocess
import sys

import pytest

from test.conftest import REPO_ROOT

FRAGMENT = os.path.join(REPO_ROOT, 'docs', 'readme_fragments', 'scale_out.md')


def _commands():
    """The ``python <tool>.py ...`` commands of the fragment's bash blocks (continuations
    joined, a leading ``VAR=value`` assignment dropped) as argument lists."""
    with open(FRAGMENT) as f:
        text = f.read()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for words in (shlex.split(line) for line in _shell_lines(block)):
            while words and re.match(r'^\w+=', words[0]):
                words = words[1:]
            if words[:1] == ['python']:
                commands.append(words[1:])
    return commands


def _shell_lines(block):
    """The commands of a bash block: lines split at newlines outside quotes, continuations
    joined."""
    lines, current, quote = [], '', None
    for char in block.replace('\\\n', ' '):
        if char in '\'"' and quote in (None, char):
            quote = None if quote else char
        if char == '\n' and quote is None:
            lines.append(current)
            current = ''
        else:
            current += char
    return [line for line in lines + [current] if line.strip()]


def _help(tool):
    result = subprocess.run([sys.executable, tool, '--help'], cwd=REPO_ROOT, text=True,
                            capture_output=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout + result.stderr


def _beam_options():
    beam_options = pytest.importorskip('apache_beam.options.pipeline_options')
    return set(beam_options.PipelineOptions([]).get_all_options())


def test_the_fragment_is_short():
    with open(FRAGMENT) as f:
        assert len(f.read().splitlines()) <= 40


def test_every_command_runs_and_every_flag_exists():
    commands = _commands()
    assert {c[0] for c in commands} == {'train_ssd_network.py', 'batch_detect.py'}
    for command in commands:
        help_text = _help(command[0])
        for arg in command[1:]:
            name = arg[2:].split('=', 1)[0]
            if '--%s' % name in help_text:
                continue
            assert command[0] == 'batch_detect.py' and name in _beam_options(), \
                '%s has no flag --%s' % (command[0], name)


def test_named_files_exist():
    with open(FRAGMENT) as f:
        text = f.read()
    for path in re.findall(r'`((?:kubernetes/)?[\w./-]+\.(?:yaml|txt|Dockerfile))`', text):
        relative = path if '/' in path else os.path.join('kubernetes', path)
        if not os.path.exists(os.path.join(REPO_ROOT, relative)):
            assert os.path.exists(os.path.join(REPO_ROOT, path)), path
