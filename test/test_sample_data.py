"""The generated sample dataset: layout, exact boxes, reproducibility, CLI errors."""
import filecmp
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np
import pytest

from datasets import dataset_config
from datasets.write_dataset import sample_data

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _objects(xml_path):
    root = ElementTree.parse(xml_path).getroot()
    size = (int(root.find('size/height').text), int(root.find('size/width').text))
    objects = [(node.find('name').text,
                tuple(int(node.find('bndbox/' + key).text) for key in ('xmin', 'ymin', 'xmax', 'ymax')))
               for node in root.findall('object')]
    return size, objects


def test_layout_splits_and_annotations(sample_voc_dir):
    ids = sorted(name[:-4] for name in os.listdir(os.path.join(sample_voc_dir, 'Annotations')))
    assert ids == sorted(name[:-4] for name in os.listdir(os.path.join(sample_voc_dir, 'JPEGImages')))
    assert len(ids) == 24

    def split(name):
        with open(os.path.join(sample_voc_dir, 'ImageSets', 'Main', name + '.txt')) as handle:
            return handle.read().split()
    train, test = split('train'), split('test')
    assert sorted(train + test) == sorted(split('trainval')) == ids
    assert not set(train) & set(test)
    assert len(test) == round(0.2 * 24)

    for image_id in ids:
        size, objects = _objects(os.path.join(sample_voc_dir, 'Annotations', image_id + '.xml'))
        image = cv2.imread(os.path.join(sample_voc_dir, 'JPEGImages', image_id + '.jpg'))
        assert image.shape[:2] == size
        assert 300 <= min(size) and max(size) <= 500
        assert 1 <= len(objects) <= 4
        for name, (xmin, ymin, xmax, ymax) in objects:
            assert name in dataset_config.VEHICLE_CLASSES
            assert 1 <= xmin < xmax <= size[1] and 1 <= ymin < ymax <= size[0]
            side = max((xmax - xmin + 1) / size[1], (ymax - ymin + 1) / size[0])
            assert 0.18 <= side <= 0.7


def test_boxes_are_exact_and_objects_barely_overlap(monkeypatch):
    # On a black background every non-black pixel belongs to a vehicle: each box edge must
    # touch drawn pixels and the ring just outside it (away from other boxes) must be empty.
    monkeypatch.setattr(sample_data, '_background',
                        lambda h, w, rng: np.zeros((h, w, 3), np.uint8))
    seen = set()
    for index in range(30):
        image, objects = sample_data.generate_image(np.random.RandomState([3, index]))
        drawn = image.any(axis=2)
        boxes = [(x0 - 1, y0 - 1, x1 - 1, y1 - 1) for _, (x0, y0, x1, y1) in objects]  # 0-based
        others_mask = np.zeros_like(drawn)
        for name, (x0, y0, x1, y1) in zip([o[0] for o in objects], boxes):
            seen.add(name)
            inside = drawn[y0:y1 + 1, x0:x1 + 1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            others_mask[:] = False
            for j, (a0, b0, a1, b1) in enumerate(boxes):
                if j != i:
                    others_mask[b0:b1 + 1, a0:a1 + 1] = True
            ring = np.zeros_like(drawn)
            ring[max(y0 - 1, 0):y1 + 2, max(x0 - 1, 0):x1 + 2] = True
            ring[y0:y1 + 1, x0:x1 + 1] = False
            assert not (drawn & ring & ~others_mask).any()
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
                ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
                area = min((a[2] - a[0] + 1) * (a[3] - a[1] + 1), (b[2] - b[0] + 1) * (b[3] - b[1] + 1))
                assert max(iw, 0) * max(ih, 0) / area <= 0.12
    assert seen == set(dataset_config.VEHICLE_CLASSES)


def test_classes_differ_in_colour():
    # Mean colour of each class drawing (a learnability proxy): pairwise far apart in BGR.
    means = {}
    for name in dataset_config.VEHICLE_CLASSES:
        patch, mask = sample_data.draw_vehicle(name, 200, 100, np.random.RandomState(0))
        means[name] = patch[mask].reshape(-1, 3).mean(axis=0)
    names = sorted(means)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.linalg.norm(means[a] - means[b]) > 30, (a, b)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    first = sample_data.generate_voc_dataset(str(tmp_path / 'a'), num_images=4, seed=5)
    second = sample_data.generate_voc_dataset(str(tmp_path / 'b'), num_images=4, seed=5)
    other = sample_data.generate_voc_dataset(str(tmp_path / 'c'), num_images=4, seed=6)
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        names = sorted(os.listdir(os.path.join(first, sub)))
        match, mismatch, errors = filecmp.cmpfiles(os.path.join(first, sub),
                                                   os.path.join(second, sub), names, shallow=False)
        assert match == names and not mismatch and not errors
    assert not filecmp.cmp(os.path.join(first, 'JPEGImages', '000000.jpg'),
                           os.path.join(other, 'JPEGImages', '000000.jpg'), shallow=False)


def test_refuses_a_folder_that_already_holds_data(tmp_path):
    sample_data.generate_voc_dataset(str(tmp_path), num_images=1)
    with pytest.raises(sample_data.SampleDataError, match='output_dir'):
        sample_data.generate_voc_dataset(str(tmp_path), num_images=1)
    with pytest.raises(sample_data.SampleDataError, match='num_images'):
        sample_data.generate_voc_dataset(str(tmp_path / 'x'), num_images=0)


def test_cli_writes_and_reports_errors_in_one_line(tmp_path):
    script = os.path.join(REPO_ROOT, 'datasets', 'write_dataset', 'sample_data.py')
    out = str(tmp_path / 'cli')
    done = subprocess.run([sys.executable, script, '--output_dir=' + out, '--num_images=2'],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(os.path.join(out, 'JPEGImages'))) == ['000000.jpg', '000001.jpg']
    again = subprocess.run([sys.executable, script, '--output_dir=' + out, '--num_images=2'],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1
    assert again.stderr.startswith('error: --output_dir=') and again.stderr.count('\n') == 1
