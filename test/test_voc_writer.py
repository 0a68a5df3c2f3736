"""VOC XML written back: voc_writer's boxes read by voc_reader, and detector.py --annotations_dir →
XML → converter → records holding the detector's boxes and classes."""
import json
import os

import cv2
import numpy as np
import pytest

import detector
from datasets import records
from datasets.write_dataset import dataset_to_tfrecords
from datasets.write_dataset import voc_reader
from datasets.write_dataset import voc_writer
from preprocessing import np_transform
from test import checkpoints


def test_voc_box_rounds_and_stays_inside_the_image():
    # [ymin, xmin, ymax, xmax] pixels -> (xmin, ymin, xmax, ymax) 1-based XML integers.
    assert voc_writer.voc_box([10.4, 20.6, 50.5, 80.2], 100, 200) == (21, 10, 80, 50)
    # Touching the top-left border: 1-based, so 0 becomes 1; past the far border: the size.
    assert voc_writer.voc_box([-3., 0., 120., 230.], 100, 200) == (1, 1, 200, 100)
    # A box thinner than a pixel keeps one pixel, also at the far border.
    assert voc_writer.voc_box([5.2, 199.9, 5.3, 200.], 100, 200) == (199, 5, 200, 6)


def test_written_xml_reads_back_within_a_pixel(tmp_path):
    height, width = 240, 320
    boxes = np.array([[10.3, 20.7, 100.2, 150.6], [0., 0., 240., 320.], [50., 60., 50.4, 61.]])
    text = voc_writer.detections_xml('a.jpg', height, width, boxes, [2, 5, 1],
                                     checkpoints.CLASS_NAMES)
    path = tmp_path / 'a.xml'
    path.write_text(text)
    annotation = voc_reader.parse_annotation(str(path))
    assert annotation.filename == 'a.jpg' and annotation.size == (height, width)
    assert [obj.name for obj in annotation.objects] == ['Bus', 'Truck', 'Ambulance']
    assert all(obj.difficult == 0 for obj in annotation.objects)
    for obj, box in zip(annotation.objects, boxes):
        normalised, _ = voc_reader.normalise_box(obj.box, height, width)
        back = np.asarray(normalised) * [height, width, height, width]
        assert np.all(np.abs(back - box) <= 1.0), (back, box)
        assert back[2] > back[0] and back[3] > back[1]


@pytest.fixture(scope='module')
def trained_checkpoint(tmp_path_factory):
    """A small SSD trained on the toy scene: it finds its two objects confidently."""
    directory = str(tmp_path_factory.mktemp('voc_writer_ckpt'))
    whitened = checkpoints.toy_scene() - np.asarray(np_transform.VGG_MEANS, np.float32)
    checkpoints.make_checkpoint(directory, step=40, train_on=(
        whitened, checkpoints.TOY_LABELS, checkpoints.TOY_BOXES))
    return directory


def _read_split(records_dir, split):
    description = json.load(open(os.path.join(records_dir, 'dataset_description.json')))
    parsed = []
    for name in description['splits'][split]['files']:
        for _, raw in records.iter_records(os.path.join(records_dir, name)):
            parsed.append(records.parse_proto(raw))
    return parsed


def test_detector_annotations_round_trip_through_the_converter(trained_checkpoint, tmp_path,
                                                                capsys):
    voc = tmp_path / 'voc'
    (voc / 'JPEGImages').mkdir(parents=True)
    # The toy scene stretched to 360 x 450 (height x width): pixel and normalised frames differ.
    scene = cv2.resize(checkpoints.toy_scene(), (450, 360), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(voc / 'JPEGImages' / 'scene.jpg'), scene[:, :, ::-1])
    out = tmp_path / 'out'

    status = detector.main(['detector.py', '--noshow', '--precision=float32',
                            '--ckpt_path=%s' % trained_checkpoint,
                            '--image_path=%s' % (voc / 'JPEGImages'), '--output_dir=%s' % out,
                            '--select_threshold=0.5', '--json',
                            '--annotations_dir=%s' % (voc / 'Annotations')])
    capsys.readouterr()
    assert status == 0
    assert os.listdir(str(voc / 'Annotations')) == ['scene.xml']  # no temporary left
    detections = json.load(open(str(out / 'detections.json')))['images'][0]
    assert sorted(detections['classes']) == sorted(checkpoints.TOY_LABELS.tolist())

    summary = dataset_to_tfrecords.convert(str(voc), str(tmp_path / 'records'), 'vehicle',
                                           show_progress=False, num_workers=0)
    assert summary.records_written == 1
    (record,) = _read_split(str(tmp_path / 'records'), dataset_to_tfrecords.ALL_SPLIT)
    assert (record['height'], record['width']) == (360, 450)
    assert record['labels'].tolist() == detections['classes']
    back = record['bboxes'].astype(np.float64) * [360, 450, 360, 450]
    np.testing.assert_allclose(back, detections['boxes'], atol=1.0)


def test_annotations_dir_that_cannot_be_created(trained_checkpoint, tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('a file where the folder should go')
    cv2.imwrite(str(tmp_path / 'a.jpg'), checkpoints.toy_scene())
    status = detector.main(['detector.py', '--noshow', '--precision=float32',
                            '--ckpt_path=%s' % trained_checkpoint,
                            '--image_path=%s' % (tmp_path / 'a.jpg'),
                            '--output_dir=%s' % (tmp_path / 'out'),
                            '--annotations_dir=%s' % (blocker / 'sub')])
    err = capsys.readouterr().err
    # Like --output_dir: a folder that cannot be made is exit 1, checked before the model loads.
    assert status == 1
    assert err.strip().splitlines()[-1] == ('error: --annotations_dir=%s: %s is a file, not a '
                                            'folder' % (blocker / 'sub', blocker))
    assert not (tmp_path / 'out').exists()
