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
    with pytest.raises(UnicodeEncodeError):  # a text that does not encode
        files.write_text_atomically(path, 'new ' * 1000 + '\ud800')
    with open(path) as f:
        assert f.read() == 'old\n'
    assert os.listdir(str(tmp_path)) == ['report.md']


def test_bytes_that_fail_once_written_leave_the_previous_file_and_no_temporary(tmp_path,
                                                                                monkeypatch):
    path = str(tmp_path / 'model.tflite')
    files.write_bytes_atomically(path, b'old')
    with open(path, 'rb') as f:
        assert f.read() == b'old'

    def full_disk(_):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', full_disk)  # the temporary holds the new bytes by then
    with pytest.raises(OSError):
        files.write_bytes_atomically(path, b'new' * 1000)
    with open(path, 'rb') as f:
        assert f.read() == b'old'
    assert os.listdir(str(tmp_path)) == ['model.tflite']
