"""Shared fixtures: the shared real data (skipped when absent), a small generated dataset,
``declared_png`` (a few kilobytes declaring a huge picture) and ``value_after_importing`` (what a
fresh interpreter holds once it imported some modules)."""
import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')


def value_after_importing(module_names, expression):
    """Imports ``module_names`` in a fresh interpreter (repository root as working folder) and
    returns the JSON value of ``expression`` there, where ``modules`` lists the imported modules."""
    code = ('import importlib, json, sys\n'
            'modules = [importlib.import_module(name) for name in sys.argv[1:]]\n'
            'print(json.dumps(%s))' % expression)
    result = subprocess.run([sys.executable, '-c', code] + list(module_names), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def shared_path(*parts):
    """Path under ../shared/data, or a clean skip when that folder is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip('shared data not available: %s' % path)
    return path


def declared_png(height, width):
    """A valid black 1-bit PNG of ``height`` x ``width``: 17 KB for 12000 x 12000, whose decoding
    would take 432 MB as RGB."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    rows = zlib.compress(b'\0' * ((width + 7) // 8 + 1) * height, 9)
    header = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', rows) +
            chunk(b'IEND', b''))


@pytest.fixture(scope='session')
def sample_voc_dir(tmp_path_factory):
    """A generated VOC folder (vehicle classes, splits train/test), shared by the whole session."""
    from datasets.write_dataset import sample_data
    out = str(tmp_path_factory.mktemp('sample_voc'))
    sample_data.generate_voc_dataset(out, num_images=24, seed=7)
    return out


@pytest.fixture(scope='session')
def sample_tfrecords(sample_voc_dir, tmp_path_factory):
    """The generated VOC folder converted to TFRecords (`vehicle` dataset, splits train and test)."""
    from datasets.write_dataset import dataset_to_tfrecords
    out = str(tmp_path_factory.mktemp('sample_tfrecords'))
    for split in ('train', 'test'):
        dataset_to_tfrecords.convert(sample_voc_dir, out, 'vehicle', split=split, samples_per_file=8)
    return out
