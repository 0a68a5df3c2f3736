"""batch_detect.py: Beam's RunInference over an export's serving_default gives, per image, the
same detections (JSON keys, pixel boxes) as detector.py --json on the checkpoint it was exported
from; its flags and Beam's options are told apart; bad flags are one line. Skipped without
Apache Beam (requirements-beam.txt)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import batch_detect
from test.conftest import REPO_ROOT
from utils import voc_metric
from test.test_export import KEEP_TOP_K, SELECT_THRESHOLD, exported_model

SHARED_IMAGES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..',
                             'shared', 'data', 'test_images')


def test_own_flags_and_beam_options_are_told_apart():
    flag_values = batch_detect.define_flags().values
    own, beam_args = batch_detect.split_argv(
        ['batch_detect.py', '--model_dir=m', '--input_pattern', '*.jpg', '--runner=FlinkRunner',
         '--num_shards=2', '--flink_master=host:8081', '--help'], flag_values)
    assert own == ['batch_detect.py', '--model_dir=m', '--input_pattern', '*.jpg',
                   '--num_shards=2', '--help']
    assert beam_args == ['--runner=FlinkRunner', '--flink_master=host:8081']


@pytest.mark.parametrize('args, message', [
    ([], 'error: --model_dir is required'),
    (['--model_dir=/no/such', '--input_pattern=x', '--output_path=y'],
     'error: --model_dir=/no/such is not an export version folder (no saved_model.pb)'),
])
def test_bad_flags_are_one_line(args, message, capsys):
    assert batch_detect.main(['batch_detect.py'] + args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]


beam = pytest.importorskip('apache_beam')


def test_default_runner_is_the_direct_runner_on_every_core():
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    options = batch_detect.pipeline_options([])
    assert options.view_as(StandardOptions).runner == 'DirectRunner'
    assert options.view_as(DirectOptions).direct_num_workers == os.cpu_count()
    options = batch_detect.pipeline_options(['--runner=DataflowRunner', '--project=p'])
    assert options.view_as(StandardOptions).runner == 'DataflowRunner'
    assert options.get_all_options()['project'] == 'p'


@pytest.fixture(scope='module')
def export_case(tmp_path_factory):
    return exported_model(tmp_path_factory)


def _images(export_case, tmp_path):
    """The folder of images both tools read: the shared test images (a few) if present, else the
    export test's generated ones; and an unreadable file among them."""
    folder = tmp_path / 'images'
    folder.mkdir()
    shared = sorted(os.listdir(SHARED_IMAGES))[:3] if os.path.isdir(SHARED_IMAGES) else []
    sources = [os.path.join(SHARED_IMAGES, n) for n in shared] or export_case[3]
    for path in sources:
        (folder / os.path.basename(path)).write_bytes(open(path, 'rb').read())
    return folder, [os.path.basename(p) for p in sources]


def test_detections_equal_the_detectors_on_the_same_model(export_case, tmp_path, capsys):
    import detector
    prefix, _, version_dir, _ = export_case
    folder, names = _images(export_case, tmp_path)
    output_dir = tmp_path / 'detector'
    assert detector.main(['detector.py', '--ckpt_path=%s' % prefix, '--image_path=%s' % folder,
                          '--output_dir=%s' % output_dir, '--json', '--noshow',
                          '--precision=float32', '--select_threshold=%g' % SELECT_THRESHOLD,
                          '--keep_top_k=%d' % KEEP_TOP_K]) == 0
    with open(output_dir / voc_metric.DETECTIONS_JSON) as f:
        expected = {entry['image']: entry for entry in json.load(f)['images']}
    (folder / 'notes.jpg').write_bytes(b'not an image')
    output = tmp_path / 'batch' / 'detections.jsonl'
    # As a user runs it: a process of its own (the test modules turn eager execution off in
    # this one, and Beam's TensorFlow handler needs it on).
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'batch_detect.py'), '--model_dir=%s' % version_dir,
         '--input_pattern=%s' % (folder / '*'), '--output_path=%s' % output,
         '--direct_num_workers=1', '--direct_running_mode=in_memory'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'skipped %s: not a readable image' % (folder / 'notes.jpg') in result.stderr
    with open(output) as f:
        lines = [json.loads(line) for line in f]
    assert sorted(line['image'] for line in lines) == sorted(names) == sorted(expected)
    assert sum(len(line['scores']) for line in lines) > 0
    for line in lines:
        reference = expected[line['image']]
        assert set(line) == set(reference) == set(batch_detect.DETECTION_KEYS)
        assert (line['height'], line['width']) == (reference['height'], reference['width'])
        assert line['classes'] == reference['classes']
        np.testing.assert_allclose(line['scores'], reference['scores'], atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.reshape(line['boxes'], (-1, 4)),
                                   np.reshape(reference['boxes'], (-1, 4)), atol=1e-2, rtol=0)


def test_no_matching_file_is_one_line(export_case, tmp_path, capsys):
    status = batch_detect.main(['batch_detect.py', '--model_dir=%s' % export_case[2],
                                '--input_pattern=%s' % (tmp_path / 'none' / '*.jpg'),
                                '--output_path=%s' % (tmp_path / 'out.jsonl'),
                                '--direct_running_mode=in_memory'])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and err[0].startswith('error: batch detection of')
