"""bench/object_sizes.py: object sizes per class and split, and their best SSD300 anchors."""
import glob
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bench import object_sizes
from nets import ssd_params

PARAMS = ssd_params.SSD300_PARAMS


def test_a_box_equal_to_an_anchor_is_matched_by_it_on_its_layer():
    anchor_boxes, layer_index = object_sizes.anchor_layers(PARAMS)
    assert len(anchor_boxes) == 8732 and layer_index[0] == 0 and layer_index[-1] == 5
    # block11 has one cell (centre 0.5); its first anchor is the square of side 261/300.
    half = 261. / 300 / 2
    whole_image_box = np.array([[0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half]], np.float32)
    # A 6-pixel square in a corner: its best anchor is block4's 21-pixel square at the centre
    # (4, 4) px, the IoU 36 / 441 (the smaller box lies inside it).
    tiny_box = np.array([[1. / 300, 1. / 300, 7. / 300, 7. / 300]], np.float32)
    sizes = object_sizes.class_sizes('Truck', np.concatenate([whole_image_box, tiny_box]),
                                     anchor_boxes, layer_index, 0.5, 6)
    assert sizes.objects == 2 and sizes.layers == [1, 0, 0, 0, 0, 1]
    assert sizes.median_side == pytest.approx((261. / 300 + 6. / 300) / 2, abs=1e-6)
    assert sizes.small_share == 0.5 and sizes.unmatched_share == 0.5
    assert sizes.median_best_iou == pytest.approx((1. + 36. / 441) / 2, abs=1e-5)


def _voc_sides(voc_dir, split):
    """{class: [sqrt(normalised area)]} read from the VOC XML, independently of the records."""
    with open(os.path.join(voc_dir, 'ImageSets', 'Main', split + '.txt')) as f:
        image_ids = f.read().split()
    sides = {}
    for image_id in image_ids:
        root = ET.parse(os.path.join(voc_dir, 'Annotations', image_id + '.xml')).getroot()
        width, height = (float(root.find('size/' + k).text) for k in ('width', 'height'))
        for obj in root.findall('object'):
            box = {k: float(obj.find('bndbox/' + k).text) for k in ('xmin', 'ymin', 'xmax', 'ymax')}
            area = (box['xmax'] - box['xmin']) / width * (box['ymax'] - box['ymin']) / height
            sides.setdefault(obj.find('name').text, []).append(area ** 0.5)
    return sides


def test_sizes_per_class_agree_with_the_voc_annotations(sample_voc_dir, sample_tfrecords):
    measured = object_sizes.measure(sample_tfrecords, ['train', 'test'], 0.5)
    for split in ('train', 'test'):
        expected = _voc_sides(sample_voc_dir, split)
        assert sorted(s.name for s in measured[split]) == sorted(expected)
        for sizes in measured[split]:
            assert sizes.objects == len(expected[sizes.name]) == sum(sizes.layers)
            # VOC pixel boxes are 1-based; the records' normalised ones differ by about a pixel.
            assert sizes.median_side == pytest.approx(np.median(expected[sizes.name]), abs=0.02)
    table = object_sizes.markdown_table(measured, PARAMS)
    assert len(table) == 2 + sum(len(t) for t in measured.values())


def test_an_unknown_split_is_a_usage_error(sample_tfrecords, capsys):
    assert object_sizes.main(['object_sizes.py', '--tfrecords_dir=%s' % sample_tfrecords,
                              '--splits=train,val']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: --splits:') and "'val'" in err and len(err.splitlines()) == 1


def test_crops_show_each_class_object_by_object(sample_voc_dir, sample_tfrecords, tmp_path,
                                                monkeypatch, capsys):
    """--crops_dir: one sheet per class and split, each crop the size of its VOC box (within a
    pixel) and captioned with its side; at most --crops_per_sheet crops."""
    sheets = {}

    def capture(path, crops, captions, title, **_):
        sheets[os.path.basename(path)] = (crops, captions)
        return path
    monkeypatch.setattr(object_sizes.visualization, 'save_crop_sheet', capture)
    assert object_sizes.main(['object_sizes.py', '--tfrecords_dir=%s' % sample_tfrecords,
                              '--splits=test', '--crops_dir=%s' % tmp_path,
                              '--crops_per_sheet=3']) == 0
    expected = _voc_sides(sample_voc_dir, 'test')
    assert sorted(sheets) == sorted('%s_test.png' % name for name in expected)
    assert capsys.readouterr().out.count('crops: ') == len(expected)
    for name, sides in expected.items():
        crops, captions = sheets['%s_test.png' % name]
        assert len(crops) == len(captions) == min(3, len(sides))
        for crop, caption, side in zip(crops, captions, sides):   # record order = VOC order
            height, width = crop.shape[:2]
            assert crop.dtype == np.uint8 and crop.shape[2] == 3
            assert float(caption.split(',')[0]) == pytest.approx(side, abs=0.011)
            assert int(caption.split(', ')[1].split()[0]) == pytest.approx(width, abs=1)


def test_a_crop_sheet_is_a_png_with_one_cell_per_crop(tmp_path):
    from utils import visualization
    crops = [np.full((10 + 5 * i, 20, 3), 40 * i, np.uint8) for i in range(4)]
    path = visualization.save_crop_sheet(str(tmp_path / 'sheet.png'), crops,
                                         ['crop %d' % i for i in range(4)], 'four crops',
                                         columns=3, cell_px=50)
    import matplotlib.image
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (2 * (50 + 14) + 24, 3 * 50)   # 2 rows of 3 columns
    for value in (40, 120):   # the second and the fourth crop are drawn
        assert np.any(np.all(np.abs(pixels[..., :3] * 255 - value) < 2, axis=-1))
