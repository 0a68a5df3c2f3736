"""bench/error_crops.py: the wrong detections and the objects not found, cropped per class."""
import json
import os

import numpy as np
import pytest

from bench import error_crops
from datasets import records
from utils import voc_metric


def _split(tfrecords_dir, split='test'):
    """[(file name, height, width, boxes [N, 4] pixels, labels [N])] in record order."""
    with open(os.path.join(tfrecords_dir, 'dataset_description.json')) as f:
        description = json.load(f)
    images = []
    for name in description['splits'][split]['files']:
        for _, raw in records.iter_records(os.path.join(tfrecords_dir, name)):
            parsed = records.parse_proto(raw)
            height, width = parsed['height'], parsed['width']
            images.append((os.path.basename(parsed['filename']), height, width,
                           parsed['bboxes'] * [height, width, height, width], parsed['labels']))
    return description['class_names'], images


@pytest.fixture
def sheets(monkeypatch):
    """The sheets the script would save: {file name: (crops, captions)}."""
    saved = {}

    def capture(path, crops, captions, title, **_):
        saved[os.path.basename(path)] = (crops, captions)
        return path
    monkeypatch.setattr(error_crops.visualization, 'save_crop_sheet', capture)
    return saved


def test_wrong_detections_and_unfound_objects_are_cropped(sample_tfrecords, tmp_path, sheets,
                                                          capsys):
    """The first image's first object: found by a detection at .9, a duplicate at .8 and a
    background box at .7 far from everything in the corner; its other objects are not detected.
    Every other image: its objects detected exactly (correct, nothing to crop)."""
    class_names, images = _split(sample_tfrecords)
    entries = []
    for index, (name, height, width, boxes, labels) in enumerate(images):
        if index == 0:
            first = boxes[0]
            det_boxes = [first, first, [0, 0, 6, 6]]
            det_labels = [labels[0]] * 3
            scores = [.9, .8, .7]
        else:
            det_boxes, det_labels, scores = boxes, labels, np.ones(len(labels))
        entries.append({'image': name, 'height': height, 'width': width, 'boxes': det_boxes,
                        'scores': scores, 'classes': det_labels})
    path = str(tmp_path / 'detections.json')
    voc_metric.write_detections_file(path, entries, class_names)
    status = error_crops.main(['error_crops.py', '--detections_file=%s' % path,
                               '--tfrecords_dir=%s' % sample_tfrecords, '--split=test',
                               '--output_dir=%s' % (tmp_path / 'out')])
    assert status == 0, capsys.readouterr().err
    _, height, width, boxes, labels = images[0]
    first_class = class_names[labels[0] - 1]
    crops, captions = sheets['%s_detections.png' % first_class]
    assert captions == ['0.80 duplicate', '0.70 background']   # highest score first
    # The duplicate is the first object's box widened by the margin, clipped to the image.
    ymin, xmin, ymax, xmax = np.round(boxes[0] + [-4, -4, 4, 4]).astype(int)
    expected = (min(ymax, height) - max(ymin, 0), min(xmax, width) - max(xmin, 0))
    assert crops[0].shape[:2] == expected
    assert len(labels) > 1   # the sample's first test image has objects left to miss
    unfound = {}
    for label, box in zip(labels[1:], boxes[1:]):
        unfound.setdefault(class_names[label - 1], []).append(box)
    objects = {name[:-len('_objects.png')]: sheet for name, sheet in sheets.items()
               if name.endswith('_objects.png')}
    assert sorted(objects) == sorted(unfound)
    for name, (crops, captions) in objects.items():
        assert len(crops) == len(unfound[name])
        assert all(caption.startswith('missed, ') for caption in captions)
    assert capsys.readouterr().out.count('crops: ') == len(sheets)


def test_an_image_without_an_entry_and_bad_flags_fail_in_one_line(sample_tfrecords, tmp_path,
                                                                  capsys):
    class_names, images = _split(sample_tfrecords)
    path = str(tmp_path / 'detections.json')
    voc_metric.write_detections_file(path, [], class_names)
    common = ['--tfrecords_dir=%s' % sample_tfrecords, '--output_dir=%s' % tmp_path]
    assert error_crops.main(['error_crops.py', '--detections_file=%s' % path, '--split=test']
                            + common) == 1
    err = capsys.readouterr().err.strip()
    assert err == 'error: %s: no entry for image %s of split test' % (path, images[0][0])
    assert error_crops.main(['error_crops.py', '--detections_file=%s' % path, '--split=val']
                            + common) == 2
    assert "--split: no split 'val'" in capsys.readouterr().err
    assert error_crops.main(['error_crops.py', '--detections_file=%s' % path, '--split=test',
                             '--per_sheet=0'] + common) == 2
    assert capsys.readouterr().err.strip() == 'error: --per_sheet must be >= 1, got 0'
    assert not os.path.exists(str(tmp_path / 'Car_objects.png'))
