"""docs/readme_fragments/label_audit.md: every command shown names a tool of the repository and
only flags that tool defines; audit_labels.py --help lists its flags by theme."""
import importlib.util
import os
import re
import shlex
import subprocess
import sys

from test.conftest import REPO_ROOT

GUIDE = os.path.join(REPO_ROOT, 'docs', 'readme_fragments', 'label_audit.md')


def _commands():
    with open(GUIDE) as f:
        text = f.read()
    blocks = re.findall(r'```bash\n(.*?)```', text, re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def _flag_names(script):
    spec = importlib.util.spec_from_file_location('guide_' + os.path.basename(script)[:-3],
                                                  os.path.join(REPO_ROOT, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return set(module.define_flags().values)


def test_guide_is_short_and_its_commands_use_existing_flags():
    with open(GUIDE) as f:
        assert len(f.read().splitlines()) <= 30
    commands = _commands()
    assert [c[1] for c in commands] == [
        'eval_ssd_network.py', 'audit_labels.py', 'detector.py',
        'datasets/write_dataset/dataset_to_tfrecords.py', 'train_ssd_network.py']
    for command in commands:
        assert command[0] == 'python' and os.path.isfile(os.path.join(REPO_ROOT, command[1]))
        defined = _flag_names(command[1])
        for arg in command[2:]:
            name = arg[2:].split('=', 1)[0]
            assert name in defined or (name.startswith('no') and name[2:] in defined), \
                (command[1], arg)


def test_audit_labels_help_runs():
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'audit_labels.py'),
                             '--help'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for flag in ('--dataset_dir', '--split', '--detections_file', '--output_dir',
                 '--confident_score', '--out_of_fold', '--top'):
        assert flag in result.stdout
    assert 'did NOT train on' in result.stdout
