"""detector.py end to end: pictures per image, printed pixel boxes, garbage files reported and skipped."""
import json
import os
import subprocess
import sys

import cv2
import matplotlib.image as mpimg
import numpy as np
import pytest

import detector
from test.conftest import REPO_ROOT, shared_path
from test.checkpoints import CLASS_NAMES, make_checkpoint


@pytest.fixture(scope='module')
def checkpoint_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp('detector_ckpt'))
    make_checkpoint(directory)
    return directory


def run_script(*args):
    """``python detector.py args`` in a headless subprocess (the real command line)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', MPLBACKEND='Agg')
    env.pop('DISPLAY', None)
    env.pop('WAYLAND_DISPLAY', None)
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'detector.py')] + list(args),
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


def run_in_process(capsys, *args):
    """The same through ``detector.main`` (no new TensorFlow start-up): (status, stdout, stderr).
    float32 (no --precision=auto line on stderr, detections comparable with float32 figures)."""
    status = detector.main(['detector.py', '--noshow', '--precision=float32'] + list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _printed_detections(stdout):
    """Parses the printed lines back: {image: [(class, score, [ymin, xmin, ymax, xmax])]}."""
    found, current = {}, None
    for line in stdout.splitlines():
        if not line.startswith('  '):
            current = line.split(' (')[0]
            found[current] = []
        else:
            name, score, box = line.split(None, 2)
            values = [float(part.split()[1]) for part in box.strip('[]').split(',')]
            found[current].append((name, float(score), values))
    return found


def test_folder_with_garbage_file(checkpoint_dir, tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.RandomState(0)
    cv2.imwrite(str(images / 'wide.jpg'), rng.randint(0, 255, (90, 240, 3)).astype(np.uint8))
    cv2.imwrite(str(images / 'tall.png'), rng.randint(0, 255, (200, 120, 3)).astype(np.uint8))
    (images / 'broken.jpg').write_bytes(b'this is not a JPEG')
    (images / 'notes.txt').write_text('reported: not an image extension')
    out = tmp_path / 'out'

    status, stdout, stderr = run_script('--ckpt_path=%s' % checkpoint_dir,
                                        '--image_path=%s' % images, '--output_dir=%s' % out,
                                        '--select_threshold=0.3', '--keep_top_k=10', '--json')

    assert status == 0, stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith('error:')]
    assert len(error_lines) == 2 and 'notes.txt: not an image file' in error_lines[0]
    assert 'broken.jpg: not a readable image (Unknown image file format' in error_lines[1]
    assert '2 of 4 files processed' in stderr
    assert '(skipped: 1 unreadable, 1 not an image format read here)' in stderr
    assert sorted(os.listdir(str(out))) == ['detections.json', 'tall.png', 'wide.png']
    assert mpimg.imread(str(out / 'wide.png')).shape[:2] == (90, 240)
    assert mpimg.imread(str(out / 'tall.png')).shape[:2] == (200, 120)

    printed = _printed_detections(stdout)
    with open(str(out / 'detections.json')) as f:
        saved = json.load(f)
    assert saved['class_names'] == CLASS_NAMES
    entries = {entry['image']: entry for entry in saved['images']}
    assert sorted(printed) == sorted(entries) == ['tall.png', 'wide.jpg']
    for name, entry in entries.items():
        height, width = entry['height'], entry['width']
        assert (height, width) == ((90, 240) if name == 'wide.jpg' else (200, 120))
        assert len(printed[name]) == len(entry['scores']) > 0
        for (class_name, score, box), saved_box, saved_score, label in zip(
                printed[name], entry['boxes'], entry['scores'], entry['classes']):
            assert class_name == CLASS_NAMES[label - 1]
            assert score == pytest.approx(saved_score, abs=1e-3) and score > 0.3
            np.testing.assert_allclose(box, saved_box, atol=0.06)
            # Boxes are clipped to the original image, in its pixels.
            assert 0 <= box[0] <= box[2] <= height and 0 <= box[1] <= box[3] <= width
        assert entry['scores'] == sorted(entry['scores'], reverse=True)


def test_only_garbage_exits_nonzero(checkpoint_dir, tmp_path, capsys):
    garbage = tmp_path / 'garbage.png'
    garbage.write_bytes(b'\x89PNG but not really')
    status, _, stderr = run_in_process(capsys, '--ckpt_path=%s' % checkpoint_dir,
                                       '--image_path=%s' % garbage,
                                       '--output_dir=%s' % (tmp_path / 'out'))
    assert status == 1
    assert stderr.splitlines()[0] == ('error: %s: not a readable image (Unknown image file format. '
                                      'One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required.), '
                                      'skipped' % garbage)


def test_bad_flags_and_missing_model(tmp_path, capsys):
    out = '--output_dir=%s' % (tmp_path / 'out')
    status, _, stderr = run_in_process(capsys, '--ckpt_path=%s' % tmp_path,
                                       '--image_path=%s' % tmp_path, out)
    assert status == 1   # as the help says: no image could be processed
    assert stderr.strip() == ('error: --image_path %s: no image files (.jpg, .jpeg, .png, .bmp, '
                              '.gif, .webp) in this folder' % tmp_path)
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.zeros((8, 8, 3), np.uint8))
    status, _, stderr = run_in_process(capsys, '--ckpt_path=%s' % tmp_path,
                                       '--image_path=%s' % tmp_path, out)
    assert not (tmp_path / 'out').exists()
    assert status == 1 and stderr.strip() == 'error: no checkpoint in directory %s' % tmp_path
    status, _, stderr = run_in_process(capsys, '--image_path=%s' % tmp_path, out)
    assert status == 2 and stderr.strip() == ('error: --ckpt_path is required (checkpoint prefix '
                                              'or training directory)')
    status, _, stderr = run_in_process(capsys, '--select_threshold=abc')
    assert status == 2 and stderr.startswith('error:') and 'select_threshold' in stderr
    assert detector.main(['detector.py', '--help']) == 0
    assert '--select_threshold (default: 0.5)' in capsys.readouterr().out


def test_shared_test_images(checkpoint_dir, tmp_path, capsys):
    folder = shared_path('test_images')
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith('.jpg'))
    status, stdout, stderr = run_in_process(capsys, '--ckpt_path=%s' % checkpoint_dir,
                                            '--image_path=%s' % folder, '--output_dir=%s' % tmp_path,
                                            '--keep_top_k=3')  # an untrained net finds hundreds
    assert status == 0, stderr
    assert sorted(_printed_detections(stdout)) == names
    assert sorted(os.listdir(str(tmp_path))) == sorted(n[:-4] + '.png' for n in names)
    for name in names:
        height, width = cv2.imread(os.path.join(folder, name)).shape[:2]
        assert mpimg.imread(str(tmp_path / (name[:-4] + '.png'))).shape[:2] == (height, width)
