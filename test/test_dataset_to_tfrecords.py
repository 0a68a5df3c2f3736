"""dataset_to_tfrecords: record contents against the XML, real data, bad input, atomic output."""
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np
import pytest
import tensorflow as tf

from datasets import dataset_config
from datasets import records
from datasets.utils import dataset_utils
from datasets.write_dataset import dataset_to_tfrecords as converter
from test.conftest import shared_path

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, 'datasets', 'write_dataset', 'dataset_to_tfrecords.py')


def read_examples(output_dir, split):
    """All records of a split (description order) as dicts of Python values."""
    with open(os.path.join(output_dir, dataset_utils.DESCRIPTION_FILENAME)) as handle:
        files = json.load(handle)['splits'][split]['files']
    examples = []
    for name in files:
        for raw in tf.compat.v1.io.tf_record_iterator(os.path.join(output_dir, name)):
            feature = tf.train.Example.FromString(raw).features.feature
            examples.append({key: list(getattr(value, value.WhichOneof('kind')).value)
                             for key, value in feature.items()})
    return examples


def check_against_xml(examples, voc_dir, class_names):
    """Every object of every record has its XML class and box / decoded image size (1e-6)."""
    for example in examples:
        image = cv2.imdecode(np.frombuffer(example['image/encoded'][0], np.uint8), cv2.IMREAD_COLOR)
        height, width = image.shape[:2]
        assert example['image/shape'] == [height, width, 3]
        assert (example['image/height'], example['image/width']) == ([height], [width])
        image_id = os.path.splitext(example['image/filename'][0].decode())[0]
        root = ElementTree.parse(os.path.join(voc_dir, 'Annotations', image_id + '.xml')).getroot()
        objects = root.findall('object')
        assert len(objects) == len(example['image/object/bbox/label'])
        for i, obj in enumerate(objects):
            name = obj.find('name').text
            assert example['image/object/bbox/label_text'][i].decode() == name
            assert example['image/object/bbox/label'][i] == class_names.index(name) + 1
            for key, size in (('ymin', height), ('xmin', width), ('ymax', height), ('xmax', width)):
                expected = min(max(float(obj.find('bndbox/' + key).text) / size, 0.0), 1.0)
                assert abs(example['image/object/bbox/' + key][i] - expected) < 1e-6


def test_shared_vehicles_trainval(tmp_path):
    voc_dir = shared_path('vehicles_openimages')
    summary = converter.convert(voc_dir, str(tmp_path), 'vehicle', split='trainval',
                                num_workers=2, show_progress=False)
    assert summary.records_written == 628 and summary.images_skipped == 0
    examples = read_examples(str(tmp_path), 'trainval')
    assert len(examples) == 628
    check_against_xml(examples, voc_dir, list(dataset_config.VEHICLE_CLASSES))
    # Records come in sorted id order.
    ids = [example['image/filename'][0] for example in examples]
    assert ids == sorted(ids)


def test_shared_voc2007_subset_trainval(tmp_path):
    voc_dir = shared_path('voc2007_subset')
    summary = converter.convert(voc_dir, str(tmp_path), 'pascalvoc_2007', split='trainval',
                                num_workers=1, show_progress=False)
    assert summary.records_written == 400
    assert summary.shards == ['pascalvoc_2007_trainval_000.tfrecord',
                              'pascalvoc_2007_trainval_001.tfrecord']
    check_against_xml(read_examples(str(tmp_path), 'trainval'), voc_dir,
                      list(dataset_config.PASCALVOC_2007_CLASSES))


def test_sample_splits_description_and_record_keys(sample_voc_dir, sample_tfrecords):
    with open(os.path.join(sample_tfrecords, dataset_utils.DESCRIPTION_FILENAME)) as handle:
        description = json.load(handle)
    assert description['dataset_name'] == 'vehicle'
    assert description['class_names'] == list(dataset_config.VEHICLE_CLASSES)
    for split in ('train', 'test'):
        with open(os.path.join(sample_voc_dir, 'ImageSets', 'Main', split + '.txt')) as handle:
            ids = handle.read().split()
        info = description['splits'][split]
        assert info['num_samples'] == len(ids)
        assert info['files'] == ['vehicle_%s_%03d.tfrecord' % (split, i)
                                 for i in range((len(ids) + 7) // 8)]
        examples = read_examples(sample_tfrecords, split)
        assert info['num_objects'] == sum(len(e['image/object/bbox/label']) for e in examples)
        assert sorted(os.path.splitext(e['image/filename'][0].decode())[0] for e in examples) == \
            sorted(ids)
        check_against_xml(examples, sample_voc_dir, list(dataset_config.VEHICLE_CLASSES))
    assert set(read_examples(sample_tfrecords, 'test')[0]) == {
        getattr(records, key) for key in dir(records) if key.startswith('KEY_')}


def test_same_input_same_bytes_with_any_worker_count(sample_voc_dir, tmp_path):
    outputs = []
    for workers in (1, 2):
        out = str(tmp_path / str(workers))
        converter.convert(sample_voc_dir, out, 'vehicle', split='train', samples_per_file=5,
                          num_workers=workers, show_progress=False)
        outputs.append(out)
    names = sorted(os.listdir(outputs[0]))
    assert names == sorted(os.listdir(outputs[1])) and len(names) == 5
    for name in names:
        with open(os.path.join(outputs[0], name), 'rb') as a, \
                open(os.path.join(outputs[1], name), 'rb') as b:
            assert a.read() == b.read(), name


def _write_jpeg(path, height, width, value=90):
    image = np.full((height, width, 3), value, np.uint8)
    image[::7] = 200  # some structure so the JPEG is not trivial
    cv2.imwrite(str(path), image)


def _write_xml(path, objects, filename, size=None):
    size_xml = '' if size is None else (
        '<size><width>%d</width><height>%d</height><depth>3</depth></size>' % size)
    body = ''.join('<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin>'
                   '<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
                   % ((name,) + box) for name, box in objects)
    path.write_text('<annotation><filename>%s</filename>%s%s</annotation>'
                    % (filename, size_xml, body))


@pytest.fixture
def messy_voc_dir(tmp_path):
    """Real-world mess: large frames, XML naming .png files stored as .jpg, orphans, bad files."""
    root = tmp_path / 'messy'
    (root / 'Annotations').mkdir(parents=True)
    (root / 'JPEGImages').mkdir()
    ann, img = root / 'Annotations', root / 'JPEGImages'
    _write_jpeg(img / 'frame1.jpg', 1080, 1920)
    _write_xml(ann / 'frame1.xml', [('Car', (101, 201, 500, 700)), ('Truck', (1500, 300, 1920, 1080))],
               'frame1.png', (1920, 1080))
    _write_jpeg(img / 'frame2.jpg', 1080, 1920)
    _write_xml(ann / 'frame2.xml', [('Bus', (1, 1, 960, 540))], 'frame2.png')      # no <size>
    _write_jpeg(img / 'wrongsize.jpg', 120, 160)
    _write_xml(ann / 'wrongsize.xml', [('Car', (11, 21, 80, 60))], 'wrongsize.jpg', (1920, 1080))
    _write_jpeg(img / 'clip.jpg', 100, 100)
    _write_xml(ann / 'clip.xml', [('Car', (-5, 50, 150, 120)), ('Car', (10, 10, 10, 50))],
               'clip.jpg', (100, 100))                                               # 1 zero-area
    _write_jpeg(img / 'onlyzero.jpg', 100, 100)
    _write_xml(ann / 'onlyzero.xml', [('Car', (30, 30, 20, 40))], 'onlyzero.jpg')
    _write_xml(ann / 'noimage.xml', [('Car', (1, 1, 9, 9))], 'noimage.jpg')
    image = np.zeros((64, 48, 3), np.uint8)
    cv2.imwrite(str(img / 'png.png'), image)
    _write_xml(ann / 'png.xml', [('Bus', (5, 6, 40, 60))], 'png.png')
    (img / 'garbage.jpg').write_bytes(b'\x00' * 100)
    _write_xml(ann / 'garbage.xml', [('Car', (1, 1, 9, 9))], 'garbage.jpg')
    _write_jpeg(img / 'truncated.jpg', 200, 200)
    data = (img / 'truncated.jpg').read_bytes()
    (img / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    _write_xml(ann / 'truncated.xml', [('Car', (1, 1, 9, 9))], 'truncated.jpg')
    _write_jpeg(img / 'badxml.jpg', 50, 50)
    (ann / 'badxml.xml').write_text('<annotation><object>')
    _write_jpeg(img / 'orphan.jpg', 50, 50)
    return str(root)


def test_messy_folder_converts_what_it_can_and_says_why(messy_voc_dir, tmp_path):
    out = str(tmp_path / 'out')
    summary = converter.convert(messy_voc_dir, out, 'vehicle', num_workers=1, show_progress=False)
    assert summary.split == 'all' and summary.records_written == 5
    skipped = {category: len(details) for category, details in summary.skipped.items()}
    assert skipped == {
        'image without annotation': 1,          # orphan.jpg
        'unreadable annotation': 1,             # badxml.xml
        'annotation without image': 1,          # noimage.xml
        'corrupt or unsupported image': 2,      # garbage.jpg, truncated.jpg
        'no usable object': 1}                  # onlyzero.xml
    assert summary.events == {
        '<filename> differs from the image on disk': 2, 'boxes clipped to the image': 1,
        'zero-area boxes dropped': 2, 'missing or wrong <size> (decoded size used)': 4,
        'non-JPEG images re-encoded as JPEG': 1}
    examples = {os.path.splitext(e['image/filename'][0].decode())[0]: e
                for e in read_examples(out, 'all')}
    assert sorted(examples) == ['clip', 'frame1', 'frame2', 'png', 'wrongsize']
    assert examples['frame1']['image/shape'] == [1080, 1920, 3]
    np.testing.assert_allclose(examples['frame1']['image/object/bbox/xmax'], [500 / 1920, 1.0])
    np.testing.assert_allclose(examples['wrongsize']['image/object/bbox/ymax'], [60 / 120])
    clip = examples['clip']
    assert [clip['image/object/bbox/' + k][0] for k in ('ymin', 'xmin', 'ymax', 'xmax')] == \
        [0.5, 0.0, 1.0, 1.0]
    assert examples['png']['image/encoded'][0][:3] == b'\xff\xd8\xff'
    assert examples['png']['image/shape'] == [64, 48, 3]
    report = str(summary)
    assert 'images skipped: 6' in report and 'garbage.jpg' in report and 'orphan.jpg' in report


def test_unknown_classes_stop_unless_skipped(sample_voc_dir, tmp_path):
    voc = str(tmp_path / 'voc')
    shutil.copytree(sample_voc_dir, voc)
    xml_path = os.path.join(voc, 'Annotations', '000000.xml')
    with open(xml_path) as handle:
        text = handle.read()
    with open(xml_path, 'w') as handle:
        handle.write(text.replace('<name>', '<name>Tram', 1).replace('</name>Tram', '</name>'))
    out = str(tmp_path / 'out')
    with pytest.raises(converter.ConversionError, match=r'class names not in .*: \w*Tram\w* \(1\)'):
        converter.convert(voc, out, 'vehicle', split='trainval', show_progress=False)
    assert not os.path.exists(out)
    summary = converter.convert(voc, out, 'vehicle', split='trainval', num_workers=1,
                                skip_unknown_classes=True, show_progress=False)
    assert summary.events['objects of unknown classes dropped'] == 1


def test_custom_labels_file_sets_the_ids(sample_voc_dir, tmp_path):
    labels = tmp_path / 'labels.txt'
    names = list(reversed(dataset_config.VEHICLE_CLASSES))
    labels.write_text('\n'.join(names) + '\n\n')
    out = str(tmp_path / 'out')
    converter.convert(sample_voc_dir, out, 'toy_vehicles', split='test', labels_file=str(labels),
                      num_workers=1, show_progress=False)
    assert sorted(os.listdir(out)) == ['dataset_description.json', 'toy_vehicles_test_000.tfrecord']
    check_against_xml(read_examples(out, 'test'), sample_voc_dir, names)
    with pytest.raises(dataset_config.DatasetConfigError, match='no built-in class list'):
        converter.convert(sample_voc_dir, out, 'toy_vehicles', split='test', show_progress=False)


def test_bad_split_arguments(sample_voc_dir, tmp_path):
    voc = str(tmp_path / 'voc')
    shutil.copytree(sample_voc_dir, voc)
    open(os.path.join(voc, 'ImageSets', 'Main', 'empty.txt'), 'w').close()
    with pytest.raises(converter.ConversionError, match='--split=empty: .* lists no image ids'):
        converter.convert(voc, str(tmp_path / 'o'), 'vehicle', split='empty')
    with pytest.raises(converter.ConversionError,
                       match=r'--split=val: no file .* \(available splits: empty, test, train, '
                             r'trainval\)'):
        converter.convert(voc, str(tmp_path / 'o'), 'vehicle', split='val')
    with pytest.raises(converter.ConversionError, match='samples_per_file'):
        converter.convert(voc, str(tmp_path / 'o'), 'vehicle', samples_per_file=0)
    with pytest.raises(converter.ConversionError, match='--num_workers=-1'):
        converter.convert(voc, str(tmp_path / 'o'), 'vehicle', num_workers=-1)
    with pytest.raises(converter.ConversionError, match='no Annotations folder'):
        converter.convert(str(tmp_path), str(tmp_path / 'o'), 'vehicle')


def test_all_images_skipped_is_an_error_and_writes_nothing(tmp_path):
    voc = tmp_path / 'voc'
    (voc / 'Annotations').mkdir(parents=True)
    _write_xml(voc / 'Annotations' / 'a.xml', [('Car', (1, 1, 9, 9))], 'a.jpg')
    with pytest.raises(converter.ConversionError, match='no image could be converted '
                                                        r'\(annotation without image: 1\)'):
        converter.convert(str(voc), str(tmp_path / 'out'), 'vehicle', show_progress=False)
    assert os.listdir(str(tmp_path / 'out')) == []


def test_interrupted_run_leaves_earlier_output_untouched(sample_voc_dir, tmp_path, monkeypatch):
    out = str(tmp_path / 'out')
    converter.convert(sample_voc_dir, out, 'vehicle', split='train', samples_per_file=4,
                      num_workers=1, show_progress=False)
    before = {name: open(os.path.join(out, name), 'rb').read() for name in os.listdir(out)}
    serialize, calls = converter.records.serialize_example, []

    def interrupt_after_six(record):
        calls.append(record.image_id)
        if len(calls) > 6:
            raise KeyboardInterrupt
        return serialize(record)

    monkeypatch.setattr(converter.records, 'serialize_example', interrupt_after_six)
    with pytest.raises(KeyboardInterrupt):
        converter.convert(sample_voc_dir, out, 'vehicle', split='train', samples_per_file=2,
                          num_workers=1, show_progress=False)
    after = {name: open(os.path.join(out, name), 'rb').read() for name in os.listdir(out)}
    assert after == before


def test_reconversion_replaces_shards_and_merges_splits(sample_voc_dir, tmp_path):
    out = str(tmp_path / 'out')
    converter.convert(sample_voc_dir, out, 'vehicle', split='train', samples_per_file=3,
                      num_workers=1, show_progress=False)
    converter.convert(sample_voc_dir, out, 'vehicle', split='test', num_workers=1,
                      show_progress=False)
    converter.convert(sample_voc_dir, out, 'vehicle', split='train', num_workers=1,
                      show_progress=False)
    assert sorted(os.listdir(out)) == ['dataset_description.json', 'vehicle_test_000.tfrecord',
                                       'vehicle_train_000.tfrecord']
    description = dataset_utils.read_description(out)
    assert sorted(description['splits']) == ['test', 'train']
    labels = tmp_path / 'labels.txt'
    labels.write_text('Car\nBus\n')
    with pytest.raises(dataset_utils.DatasetError, match='use another output folder'):
        converter.convert(sample_voc_dir, out, 'vehicle', split='test', labels_file=str(labels),
                          skip_unknown_classes=True, show_progress=False)
    assert dataset_utils.read_description(out) == description


def _run_cli(*args):
    return subprocess.run([sys.executable, SCRIPT] + list(args), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_converts_messy_folder_with_summary_and_zero_exit(messy_voc_dir, tmp_path):
    done = _run_cli('--dataset_dir=' + messy_voc_dir, '--output_dir=' + str(tmp_path / 'out'),
                    '--dataset_name=vehicle', '--num_workers=1', '--samples_per_file=4')
    assert done.returncode == 0, done.stderr
    assert 'vehicle/all: 5 records' in done.stdout and 'images skipped: 6' in done.stdout
    assert sorted(os.listdir(str(tmp_path / 'out'))) == [
        'dataset_description.json', 'vehicle_all_000.tfrecord', 'vehicle_all_001.tfrecord']


@pytest.mark.parametrize('flags, message', [
    (['--dataset_dir=/nonexistent'], 'error: --dataset_dir=/nonexistent: no Annotations folder'),
    (['--dataset_name=mine'], "error: dataset 'mine' has no built-in class list"),
    (['--labels_file=/nonexistent.txt'], 'error: labels file /nonexistent.txt: no such file'),
    (['--split=nope'], 'error: --split=nope: no file'),
])
def test_cli_bad_input_one_line_error(sample_voc_dir, tmp_path, flags, message):
    args = ['--dataset_dir=' + sample_voc_dir, '--output_dir=' + str(tmp_path / 'o')] + flags
    done = _run_cli(*args)
    assert done.returncode == 1
    assert done.stderr.startswith(message) and done.stderr.count('\n') == 1, done.stderr
    assert 'Traceback' not in done.stderr


def test_automatic_worker_count_grows_with_the_image_count(sample_voc_dir, tmp_path, monkeypatch):
    seen = []
    read = converter._read_records
    monkeypatch.setattr(converter, '_read_records',
                        lambda tasks, workers: seen.append(workers) or read(tasks, 1))
    monkeypatch.setattr(converter, '_available_cpus', lambda: 2)
    convert = converter.convert
    convert(sample_voc_dir, str(tmp_path / 'a'), 'vehicle', split='train', show_progress=False)
    monkeypatch.setattr(converter, 'IMAGES_PER_AUTO_WORKER', 9)   # 19 train images -> 2 workers
    convert(sample_voc_dir, str(tmp_path / 'b'), 'vehicle', split='train', show_progress=False)
    monkeypatch.setattr(converter, 'IMAGES_PER_AUTO_WORKER', 5)   # would be 3, capped at 2 CPUs
    convert(sample_voc_dir, str(tmp_path / 'c'), 'vehicle', split='train', show_progress=False)
    convert(sample_voc_dir, str(tmp_path / 'd'), 'vehicle', split='train', num_workers=1,
            show_progress=False)
    assert seen == [1, 2, 2, 1]


# SIGTERM arrives while the third record is read: the CLI must clean up like Ctrl-C.
_SIGTERM_DURING_CONVERSION = '''
import os, signal, sys
from datasets.write_dataset import dataset_to_tfrecords as converter, voc_reader
read, calls = voc_reader.read_example, []
def read_then_terminate(task):
    calls.append(task)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGTERM)
    return read(task)
voc_reader.read_example = read_then_terminate
sys.exit(converter.main(['dataset_to_tfrecords.py'] + sys.argv[1:]))
'''


def test_sigterm_removes_temporary_shards_like_ctrl_c(sample_voc_dir, tmp_path):
    out = tmp_path / 'out'
    done = subprocess.run(
        [sys.executable, '-c', _SIGTERM_DURING_CONVERSION, '--dataset_dir=' + sample_voc_dir,
         '--output_dir=' + str(out), '--split=train', '--num_workers=1', '--samples_per_file=1'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        'error: terminated (SIGTERM); no new shard was published')
    assert os.listdir(str(out)) == []


def test_new_run_removes_stale_temporary_shards_of_its_name(sample_voc_dir, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    stale = ['vehicle_train_000.tfrecord.tmp', 'vehicle_train_007.tfrecord.tmp']
    others = ['vehicle_test_000.tfrecord.tmp', 'voc_train_000.tfrecord.tmp', 'notes.tmp']
    for name in stale + others:
        (out / name).write_bytes(b'left by a killed run')
    converter.convert(sample_voc_dir, str(out), 'vehicle', split='train', num_workers=1,
                      show_progress=False)
    assert sorted(os.listdir(str(out))) == sorted(
        ['dataset_description.json', 'vehicle_train_000.tfrecord'] + others)
