"""utils/files.py: a file is replaced whole or left as it was."""
import json
import os

import pytest

from utils import files


def test_json_is_written_whole_with_sorted_keys(tmp_path):
    path = str(tmp_path / 'info.json')
    files.write_json_atomically(path, {'b': 1, 'a': [1, 2]})
    with open(path) as f:
        text = f.read()
    assert json.loads(text) == {'a': [1, 2], 'b': 1} and text.index('"a"') < text.index('"b"')
    assert os.listdir(str(tmp_path)) == ['info.json']


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = str(tmp_path / 'report.md')
    files.write_text_atomically(path, 'old\n')
    with pytest.raises(UnicodeEncodeError):  # fails half-way, after the first characters
        files.write_text_atomically(path, 'new ' * 1000 + '\ud800')
    with open(path) as f:
        assert f.read() == 'old\n'
    assert os.listdir(str(tmp_path)) == ['report.md']
