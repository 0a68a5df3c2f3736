"""Faults a user meets on their own machine, through the real tools: a shard cut in half, an image
that does not decode, a full disk (a small tmpfs), phone photos with EXIF orientation, a folder
of mixed formats, TensorFlow's C++ log lines, and the pixels of one serving request.

Each case asserts the one-line message, the exit status and the files left behind.
"""
import contextlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageOps

from test.checkpoints import make_checkpoint
from test.conftest import REPO_ROOT
from utils import exif
from utils import tf_errors

TRAIN_FLAGS = ('--width_multiplier=0.125', '--batch_size=2', '--num_preprocessing_threads=2',
               '--log_every_n_steps=1', '--save_summaries_secs=600', '--seed=1',
               '--optimizer=adam', '--learning_rate=0.001', '--learning_rate_decay_type=fixed')
STEP_LINE = re.compile(r'^step (\d+): ', re.M)


def run_tool(script, *args, timeout=600):
    """``python <script> args`` as a user runs it (no TF_CPP_MIN_LOG_LEVEL of ours):
    (status, stdout, stderr)."""
    env = dict(os.environ, MPLBACKEND='Agg', PYTHONUNBUFFERED='1')
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)
    env.pop('DISPLAY', None)
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, script)] + list(args),
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def error_lines(stderr):
    """stderr without the progress bars the tools draw (tqdm's carriage-return lines) and the
    log line saying which precision --precision=auto chose."""
    return [line for line in stderr.splitlines() if line.strip() and '\r' not in line
            and not re.match(r'^[^:]+:\s+\d+%\|', line)
            and not line.startswith('precision: ')]


@contextlib.contextmanager
def small_disk(path, size, read_only=False):
    """A tmpfs of ``size`` (e.g. '3m') mounted at ``path``, standing in for a disk that fills
    (or, ``read_only``, refuses every write, root's too); a clean skip where mounting is not
    allowed."""
    os.makedirs(path, exist_ok=True)
    options = ('ro,' if read_only else '') + 'size=%s' % size
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', path],
                                           capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here (needs root)')
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', path], capture_output=True)


def resize_disk(path, size):
    subprocess.run(['mount', '-o', 'remount,size=%s' % size, path], check=True)


def record_count(path):
    """Whole records in a TFRecord file, from its framing (8-byte length, 4-byte CRC, data,
    4-byte CRC), read here without TensorFlow."""
    with open(path, 'rb') as f:
        data = f.read()
    count, offset = 0, 0
    while offset + 12 <= len(data):
        length = struct.unpack('<Q', data[offset:offset + 8])[0]
        offset += 12 + length + 4
        if offset > len(data):
            break
        count += 1
    return count


@pytest.fixture
def cut_records(sample_tfrecords, tmp_path):
    """The sample TFRecords with the second training shard cut in half (an interrupted copy)."""
    folder = str(tmp_path / 'records')
    shutil.copytree(sample_tfrecords, folder)
    shard = os.path.join(folder, 'vehicle_train_001.tfrecord')
    with open(shard, 'rb') as f:
        data = f.read()
    with open(shard, 'wb') as f:
        f.write(data[:len(data) // 2])
    lost = record_count(os.path.join(sample_tfrecords, 'vehicle_train_001.tfrecord')) - \
        record_count(shard)
    return folder, shard, lost


def _checkpoint_state(train_dir):
    """The newest checkpoint the state file names (relative to the folder)."""
    with open(os.path.join(train_dir, 'checkpoint')) as f:
        return os.path.join(train_dir, re.findall(r'^model_checkpoint_path: "(.*)"$', f.read(),
                                                  re.M)[0])


# ---- the one TensorFlow-error line -----------------------------------------------------------

def test_describe_finds_the_cause_and_the_file_in_graph_mode_errors():
    message = ('Graph execution error:\n\nDetected at node \'save/SaveV2\' defined at (most '
               'recent call last):\n    File "train.py", line 3, in <module>\nNode: '
               '\'save/SaveV2\'\n/ckpt/model.ckpt-0.data-00000-of-00001.tempstate1329; No space '
               'left on device\n\t [[{{node save/SaveV2}}]]\nHint: If you want to see a list')
    error = type('ResourceExhaustedError', (Exception,), {'message': message})()
    text = tf_errors.describe(error)
    assert text == ('No space left on device',
                    '/ckpt/model.ckpt-0.data-00000-of-00001.tempstate1329', 'save/SaveV2')
    assert tf_errors.is_disk_full(error)


def test_describe_on_real_tensorflow_errors(sample_tfrecords, tmp_path):
    import tensorflow.compat.v1 as tf
    shard = str(tmp_path / 'cut.tfrecord')
    with open(os.path.join(sample_tfrecords, 'vehicle_test_000.tfrecord'), 'rb') as f:
        data = f.read()
    with open(shard, 'wb') as f:
        f.write(data[:len(data) // 2])
    with tf.Graph().as_default(), tf.Session() as sess:
        records = tf.data.make_one_shot_iterator(tf.data.TFRecordDataset(shard)).get_next()
        decoded = tf.io.decode_jpeg(tf.constant(b'\xff\xd8\xff\xe0 not a JPEG'))
        with pytest.raises(tf.errors.DataLossError) as lost:
            while True:
                sess.run(records)
        with pytest.raises(tf.errors.InvalidArgumentError) as invalid:
            sess.run(decoded)
    assert re.match(r'^truncated record at \d+ \(read less bytes than requested\)$',
                    tf_errors.one_line(lost.value))
    assert tf_errors.describe(lost.value).node == 'IteratorGetNext'
    assert tf_errors.one_line(invalid.value) == 'jpeg::Uncompress failed. Invalid JPEG data or ' \
                                                'crop window.'


# ---- data faults ---------------------------------------------------------------------------

def test_trainer_names_a_truncated_shard_and_keeps_its_checkpoint(cut_records, tmp_path):
    folder, shard, _ = cut_records
    train_dir = str(tmp_path / 'train')
    status, _, stderr = run_tool('train_ssd_network.py', '--train_model_dir=%s' % train_dir,
                                 '--dataset_dir=%s' % folder, '--max_number_of_steps=40',
                                 *TRAIN_FLAGS)
    assert status == 1
    assert error_lines(stderr) == [
        'error: TFRecord shard %s: record %d and the rest of the shard cannot be read (truncated '
        'record at %d (read less bytes than requested)); --skip_corrupt_records trains past it'
        % (shard, record_count(shard), int(re.search(r'record at (\d+)', stderr).group(1)))]
    newest = _checkpoint_state(train_dir)
    assert os.path.exists(newest + '.index')
    assert not [n for n in os.listdir(train_dir) if 'temp' in n]


def test_trainer_skips_corrupt_records_and_logs_them(cut_records, tmp_path):
    folder, _, lost = cut_records
    status, stdout, stderr = run_tool(
        'train_ssd_network.py', '--train_model_dir=%s' % tmp_path, '--dataset_dir=%s' % folder,
        '--max_number_of_steps=3', '--skip_corrupt_records', *TRAIN_FLAGS)
    assert status == 0, stderr[-2000:]
    assert '--skip_corrupt_records: %d records skipped (shards: vehicle_train_001.tfrecord)' \
        % lost in stdout
    assert [int(s) for s in STEP_LINE.findall(stdout)] == [1, 2, 3]


def _with_undecodable_image(sample_tfrecords, folder, index=2):
    """A copy of the sample records whose test shard's record ``index`` holds bytes that are not
    an image; returns (shard path, its image id)."""
    import tensorflow.compat.v1 as tf
    from tensorflow.core.example import example_pb2
    shutil.copytree(sample_tfrecords, folder)
    shard = os.path.join(folder, 'vehicle_test_000.tfrecord')
    raws = list(tf.io.tf_record_iterator(shard))
    example = example_pb2.Example.FromString(raws[index])
    example.features.feature['image/encoded'].bytes_list.value[0] = b'\xff\xd8\xff\xe0 broken'
    raws[index] = example.SerializeToString()
    with tf.io.TFRecordWriter(shard) as writer:
        for raw in raws:
            writer.write(raw)
    return shard, example.features.feature['image/filename'].bytes_list.value[0].decode()


def test_evaluator_names_an_undecodable_image_and_skips_it_on_request(sample_tfrecords, tmp_path,
                                                                      capsys):
    import eval_ssd_network
    ckpt = str(tmp_path / 'ckpt')
    make_checkpoint(ckpt)
    shard, image_id = _with_undecodable_image(sample_tfrecords, str(tmp_path / 'records'))
    args = ['eval_ssd_network.py', '--ckpt_path=%s' % ckpt,
            '--dataset_dir=%s' % os.path.dirname(shard), '--split=test']
    status = eval_ssd_network.main(args + ['--output_dir=%s' % (tmp_path / 'a')])
    lines = error_lines(capsys.readouterr().err)
    assert status == 1
    assert lines[-1] == ('error: TFRecord shard %s: record 2, image %s, does not decode '
                         '(jpeg::Uncompress failed. Invalid JPEG data or crop window.); '
                         '--skip_corrupt_records evaluates past it' % (shard, image_id))
    assert not os.path.exists(str(tmp_path / 'a' / 'results.json'))

    out = tmp_path / 'b'
    status = eval_ssd_network.main(args + ['--output_dir=%s' % out, '--skip_corrupt_records'])
    assert status == 0
    with open(str(out / 'results.json')) as f:
        results = json.load(f)
    assert results['skipped_records'] == {'count': 1, 'shards': ['vehicle_test_000.tfrecord']}
    assert results['num_samples'] == record_count(shard) - 1
    with open(str(out / 'detections.json')) as f:
        assert image_id not in [entry['image'] for entry in json.load(f)['images']]


def test_evaluator_and_client_reader_name_a_truncated_shard(cut_records, tmp_path, capsys):
    import eval_ssd_network
    from datasets import records
    from serving.clients import client
    folder, shard, _ = cut_records
    ckpt = str(tmp_path / 'ckpt')
    make_checkpoint(ckpt)
    status = eval_ssd_network.main(['eval_ssd_network.py', '--ckpt_path=%s' % ckpt,
                                    '--dataset_dir=%s' % folder, '--split=train',
                                    '--output_dir=%s' % (tmp_path / 'out')])
    assert status == 1
    assert error_lines(capsys.readouterr().err)[-1].startswith(
        'error: TFRecord shard %s: record %d and the rest of the shard cannot be read (truncated '
        'record at' % (shard, record_count(shard)))
    with pytest.raises(records.CorruptRecordError, match=re.escape(shard)):
        list(client.read_records([shard], 100))


# ---- a full disk ---------------------------------------------------------------------------

def test_trainer_on_a_full_disk_keeps_the_last_checkpoint_and_resumes(sample_tfrecords, tmp_path):
    train_dir = str(tmp_path / 'disk')
    train = _trainer(train_dir, sample_tfrecords)
    with small_disk(train_dir, '60m'):
        status, _, stderr = train('--max_number_of_steps=2')
        assert status == 0, stderr[-2000:]
        used = shutil.disk_usage(train_dir).used
        # Room for less than one more checkpoint: the next save fails.
        resize_disk(train_dir, '%dk' % (used // 1024 + 2048))
        status, _, stderr = train('--max_number_of_steps=40', '--save_interval_secs=1')
        assert status == 1
        assert error_lines(stderr) == [
            'error: --train_model_dir=%s: cannot write: No space left on device; the newest '
            'complete checkpoint is still model.ckpt-2 (a rerun resumes from it)' % train_dir]
        assert _checkpoint_state(train_dir).endswith('model.ckpt-2')
        leftovers = [n for n in os.listdir(train_dir) if n.startswith('model.ckpt-')
                     and not n.startswith(('model.ckpt-0.', 'model.ckpt-2.'))]
        assert leftovers == []
        resize_disk(train_dir, '80m')  # space freed
        status, stdout, stderr = train('--max_number_of_steps=4')
        assert status == 0, stderr[-2000:]
        assert [int(s) for s in STEP_LINE.findall(stdout)] == [3, 4]
        assert _checkpoint_state(train_dir).endswith('model.ckpt-4')


def _trainer(train_dir, dataset_dir):
    """``train(*flags)``: the trainer on ``train_dir`` and ``dataset_dir`` with TRAIN_FLAGS."""
    def train(*extra):
        return run_tool('train_ssd_network.py', '--train_model_dir=%s' % train_dir,
                        '--dataset_dir=%s' % dataset_dir, *(TRAIN_FLAGS + extra))
    return train


def test_exporter_converter_and_detector_on_a_full_disk(sample_voc_dir, tmp_path):
    ckpt = str(tmp_path / 'ckpt')
    make_checkpoint(ckpt)
    disk = str(tmp_path / 'disk')
    with small_disk(disk, '1m'):
        status, _, stderr = run_tool('export_saved_model.py', '--ckpt_path=%s' % ckpt,
                                     '--export_dir=%s' % disk, '--model_name=cars')
        assert status == 1
        assert error_lines(stderr) == ['error: --export_dir=%s: cannot write: No space left on '
                                       'device (nothing was exported)' % disk]
        assert os.listdir(disk) == []   # not even an empty model folder

        with open(os.path.join(disk, 'filler'), 'wb') as f:  # 100 KB left: less than a shard
            f.write(b'\0' * (shutil.disk_usage(disk).free - 100 * 1024))
        status, _, stderr = run_tool('datasets/write_dataset/dataset_to_tfrecords.py',
                                     '--dataset_dir=%s' % sample_voc_dir, '--output_dir=%s' % disk,
                                     '--split=train', '--samples_per_file=100')
        assert status == 1
        assert error_lines(stderr) == ['error: --output_dir=%s: cannot write: No space left on '
                                       'device; no new shard was published' % disk]
        assert sorted(os.listdir(disk)) == ['filler']

        image = os.path.join(sample_voc_dir, 'JPEGImages', sorted(os.listdir(
            os.path.join(sample_voc_dir, 'JPEGImages')))[0])
        status, _, stderr = run_tool('detector.py', '--ckpt_path=%s' % ckpt,
                                     '--image_path=%s' % image, '--output_dir=%s' % disk,
                                     '--noshow')
        assert status == 1
        name = os.path.splitext(os.path.basename(image))[0] + '.png'
        assert error_lines(stderr)[-1] == ('error: --output_dir=%s: cannot write %s: No space '
                                           'left on device' % (disk, name))
        assert sorted(os.listdir(disk)) == ['filler']


def test_evaluator_on_a_full_disk_leaves_no_partial_output(sample_tfrecords, tmp_path, capsys):
    import eval_ssd_network
    ckpt = str(tmp_path / 'ckpt')
    make_checkpoint(ckpt)
    disk = str(tmp_path / 'disk')
    with small_disk(disk, '40k'):
        status = eval_ssd_network.main(['eval_ssd_network.py', '--ckpt_path=%s' % ckpt,
                                        '--dataset_dir=%s' % sample_tfrecords, '--split=test',
                                        '--output_dir=%s' % disk])
        assert status == 1
        assert error_lines(capsys.readouterr().err)[-1] == (
            "error: --output_dir=%s: cannot write: No space left on device (this run's files "
            "removed)" % disk)
        assert os.listdir(disk) == []


# ---- phone photos: EXIF orientation --------------------------------------------------------

def exif_jpeg(image, orientation):
    """JPEG bytes of the RGB ``image`` with an EXIF Orientation tag, written by PIL."""
    tags = Image.Exif()
    tags[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, 'JPEG', quality=95, exif=tags.tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_upright_matches_pil(orientation):
    stored = np.random.RandomState(orientation).randint(0, 255, (6, 10, 3)).astype(np.uint8)
    data = exif_jpeg(stored, orientation)
    assert exif.orientation(data) == orientation
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert('RGB'))
    assert np.array_equal(exif.upright(decoded, orientation), expected)
    assert exif.swaps_sides(orientation) == (expected.shape[:2] != decoded.shape[:2])


def test_exif_orientation_of_images_without_it():
    assert exif.orientation(b'\x89PNG\r\n\x1a\n') == 1
    assert exif.orientation(exif_jpeg(np.zeros((4, 4, 3), np.uint8), 1)[:30]) == 1
    assert exif.orientation(b'\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*garbage') == 1


def _portrait_photo():
    """A 'phone photo': upright 120 x 80 (portrait) picture stored landscape with orientation 6
    (the camera's sensor frame), and the upright picture."""
    rows, cols = np.mgrid[0:120, 0:80]
    upright = np.stack([rows * 2, cols * 3, np.full_like(rows, 90)], -1).astype(np.uint8)
    upright[10:50, 20:60] = (250, 30, 30)  # a red block near the top of the upright picture
    stored = np.rot90(upright, 1)  # orientation 6: viewers turn it clockwise
    return exif_jpeg(np.ascontiguousarray(stored), 6), upright


def test_detector_and_client_detect_phone_photos_upright(tmp_path):
    from serving.clients import client
    import cv2
    data, upright = _portrait_photo()
    decoded = client.decode_image(data)
    assert decoded.shape == (120, 80, 3)
    assert np.abs(decoded.astype(int) - upright).mean() < 8  # JPEG loss only
    sent = client.upright_bytes(data)
    assert exif.orientation(sent) == 1
    assert cv2.imdecode(np.frombuffer(sent, np.uint8), cv2.IMREAD_COLOR).shape == (120, 80, 3)

    ckpt = str(tmp_path / 'ckpt')
    make_checkpoint(ckpt)
    photo = tmp_path / 'phone.jpg'
    photo.write_bytes(data)
    status, stdout, stderr = run_tool('detector.py', '--ckpt_path=%s' % ckpt,
                                      '--image_path=%s' % photo, '--output_dir=%s' % tmp_path,
                                      '--noshow', '--select_threshold=0.99')
    assert status == 0, stderr
    assert 'phone.jpg (80x120):' in stdout  # width x height of the upright picture
    import matplotlib.image as mpimg
    picture = mpimg.imread(str(tmp_path / 'phone.png'))
    assert picture.shape[0] > picture.shape[1]  # drawn portrait


def test_web_api_reports_the_upright_size_and_orientation():
    from serving.clients import client, web
    data, _ = _portrait_photo()
    sent = []

    def detect(encoded, name):
        sent.append(client.decode_image(client.upright_bytes(encoded)).shape)
        return client.Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                 np.zeros(0, np.int64))
    app = web.create_app(detect, ['Car']).test_client()
    response = app.post('/api/detect', data={'image': (io.BytesIO(data), 'phone.jpg')})
    assert response.get_json() == {'width': 80, 'height': 120, 'orientation': 6,
                                   'detections': []}
    assert sent == [(120, 80, 3)]


def test_converter_stores_photos_annotated_upright_upright(tmp_path):
    from datasets.write_dataset import voc_reader
    import cv2
    data, upright = _portrait_photo()
    path = tmp_path / 'phone.jpg'
    path.write_bytes(data)
    encoded, height, width, reencoded, event = voc_reader.load_image(str(path), (120, 80))
    assert (height, width, event) == (120, 80, voc_reader.EVENT_EXIF_TURNED)
    stored = cv2.cvtColor(cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR),
                          cv2.COLOR_BGR2RGB)
    assert np.abs(stored.astype(int) - upright).mean() < 8
    encoded, height, width, reencoded, event = voc_reader.load_image(str(path), (80, 120))
    assert (height, width, event, encoded) == (80, 120, voc_reader.EVENT_EXIF_KEPT, data)
    assert voc_reader.load_image(str(path), None)[3:] == (False, None)


# ---- an image folder, and TensorFlow's C++ log lines ---------------------------------------

def test_detector_reads_or_reports_every_file_of_a_folder(tmp_path):
    import cv2
    ckpt = str(tmp_path / 'ckpt')
    make_checkpoint(ckpt)
    folder = tmp_path / 'photos'
    folder.mkdir()
    picture = np.random.RandomState(1).randint(0, 255, (60, 90, 3)).astype(np.uint8)
    for index, ext in enumerate(('.jpg', '.png', '.bmp', '.webp', '.webp', '.jpeg')):
        cv2.imwrite(str(folder / ('p%d%s' % (index, ext))), picture)
    Image.fromarray(picture).save(str(folder / 'p6.gif'))
    Image.fromarray(picture).save(str(folder / 'scan.tiff'))
    Image.fromarray(picture).save(str(folder / 'scan2.tif'))
    whole = cv2.imencode('.jpg', picture)[1].tobytes()
    (folder / 'cut.jpg').write_bytes(whole[:len(whole) // 2])  # a truncated JPEG
    (folder / 'garbage.jpg').write_bytes(b'\xff\xd8\xff\xe0' + b'garbage' * 10)
    (folder / 'notes.txt').write_text('not a picture')
    status, stdout, stderr = run_tool('detector.py', '--ckpt_path=%s' % ckpt,
                                      '--image_path=%s' % folder, '--output_dir=%s' %
                                      (tmp_path / 'out'), '--noshow')
    assert status == 0, stderr
    lines = error_lines(stderr)
    assert lines == [
        'error: %s: not an image file of a format read here (.jpg, .jpeg, .png, .bmp, .gif, '
        '.webp), skipped' % (folder / 'notes.txt'),
        'error: %s: TIFF is not read: convert it to PNG or JPEG, skipped' % (folder / 'scan.tiff'),
        'error: %s: TIFF is not read: convert it to PNG or JPEG, skipped' % (folder / 'scan2.tif'),
        'error: %s: not a readable image (jpeg::Uncompress failed. Invalid JPEG data or crop '
        'window.), skipped' % (folder / 'cut.jpg'),
        'error: %s: not a readable image (jpeg::Uncompress failed. Invalid JPEG data or crop '
        'window.), skipped' % (folder / 'garbage.jpg'),
        '7 of 12 files processed, pictures in %s (skipped: 2 unreadable, 3 not an image format '
        'read here)' % (tmp_path / 'out')]  # no TensorFlow or libjpeg line among them
    assert len(os.listdir(str(tmp_path / 'out'))) == 7


# The tools, and the benchmarks that import TensorFlow before parsing their flags.
@pytest.mark.parametrize('script', [
    'eval_ssd_network.py', 'train_ssd_network.py', 'detector.py', 'export_saved_model.py',
    'export_tflite.py', 'bench/bench_learning.py', 'bench/bench_network.py',
    'bench/bench_peak.py', 'bench/bench_serving.py', 'bench/bench_tflite.py',
    'bench/bench_training.py'])
def test_help_prints_no_tensorflow_log_line(script):
    status, stdout, stderr = run_tool(script, '--help')
    assert status == 0 and stdout and stderr == '', (script, stderr)


# ---- pixels per serving request ------------------------------------------------------------

def test_server_refuses_a_request_over_the_total_pixel_limit():
    import grpc
    from serving.errors import ServingError
    from serving.server import servable
    from serving.server.limits import RequestLimits
    from test.serving_fixtures import sample_jpeg
    images = np.array([sample_jpeg(20, 30, i) for i in range(3)], dtype=object)
    limits = RequestLimits(max_image_pixels=600, max_batch_rows=8, max_tensor_elements=100,
                           max_request_pixels=1800)
    servable.check_images('serving_default', 'encoded_image', images, limits)
    with pytest.raises(ServingError, match=re.escape(
            'the images of one request hold 1800 pixels, more than the limit of 1799 '
            '(--max_request_pixels)')) as refused:
        servable.check_images('serving_default', 'encoded_image', images,
                              limits._replace(max_request_pixels=1799))
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_exported_graph_refuses_a_request_over_the_total_pixel_limit():
    import tensorflow.compat.v1 as tf
    import export_saved_model as export
    from test.serving_fixtures import sample_jpeg
    images = [sample_jpeg(20, 30, i) for i in range(3)]
    with tf.Graph().as_default(), tf.Session() as sess:
        encoded = tf.placeholder(tf.string, [None])
        within = export._assert_request_pixels(encoded, 1800, 600)
        above = export._assert_request_pixels(encoded, 1799, 600)
        sess.run(within, {encoded: images})
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
                'encoded_image: the images of one request hold 1800 pixels, more than the limit '
                'of 1799 (--max_request_pixels)')):
            sess.run(above, {encoded: images})
