"""voc_reader: XML parsing, image checks, box normalisation and per-image skip reasons."""

import cv2
import numpy as np
import pytest

from datasets.write_dataset import voc_reader

NAMES = {'car': 1, 'bus': 2}


def _xml(path, objects, size=(375, 500), filename='img.jpg'):
    size_xml = '' if size is None else (
        '<size><width>%d</width><height>%d</height><depth>3</depth></size>' % (size[1], size[0]))
    body = ''.join(
        '<object><name>%s</name><difficult>%d</difficult><truncated>%d</truncated>'
        '<bndbox><xmin>%s</xmin><ymin>%s</ymin><xmax>%s</xmax><ymax>%s</ymax></bndbox></object>'
        % ((name, difficult, truncated) + tuple(box)) for name, box, difficult, truncated in objects)
    with open(path, 'w') as handle:
        handle.write('<annotation><filename>%s</filename>%s%s</annotation>'
                     % (filename, size_xml, body))
    return str(path)


def _jpeg(path, height, width, ext='.jpg'):
    image = np.random.RandomState(0).randint(0, 255, (height, width, 3)).astype(np.uint8)
    cv2.imwrite(str(path), image)
    return str(path)


def test_normalise_box_divides_literally_then_clips():
    # Hand-worked: 1-based VOC box (xmin 1, ymin 96, xmax 191, ymax 361) in a 375 x 500 image.
    box, clipped = voc_reader.normalise_box((1, 96, 191, 361), 375, 500)
    assert box == [96 / 375, 1 / 500, 361 / 375, 191 / 500] and not clipped
    assert voc_reader.normalise_box((1, 1, 500, 375), 375, 500) == ([1 / 375, 1 / 500, 1.0, 1.0],
                                                                    False)
    box, clipped = voc_reader.normalise_box((-10, 20, 520, 400), 375, 500)
    assert box == [20 / 375, 0.0, 1.0, 1.0] and clipped


def test_parse_annotation_fields_and_defaults(tmp_path):
    path = _xml(tmp_path / 'a.xml', [('car', (1, 2, 30.5, 40), 1, 0), ('bus', (5, 6, 7, 8), 0, 1)])
    annotation = voc_reader.parse_annotation(path)
    assert annotation.image_id == 'a' and annotation.filename == 'img.jpg'
    assert annotation.size == (375, 500)
    assert annotation.objects == [voc_reader.VocObject('car', (1.0, 2.0, 30.5, 40.0), 1, 0),
                                  voc_reader.VocObject('bus', (5.0, 6.0, 7.0, 8.0), 0, 1)]
    assert voc_reader.parse_annotation(_xml(tmp_path / 'b.xml', [], size=None)).size is None


@pytest.mark.parametrize('content, message', [
    ('<annotation><object><name>car</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>2</xmax>'
     '<ymax>3</ymax></bndbox></object></annotation>', "object 1: <bndbox/xmin> is 'a'"),
    ('<annotation><object><bndbox><xmin>1</xmin></bndbox></object></annotation>',
     'object 1: missing <name>'),
    ('<annotation><object><name>car</name></object></annotation>', 'object 1: missing <bndbox/xmin>'),
    ('<annotation><unclosed></annotation>', 'not a readable XML file'),
])
def test_parse_annotation_errors_name_file_and_field(tmp_path, content, message):
    path = tmp_path / 'bad.xml'
    path.write_text(content)
    with pytest.raises(voc_reader.VocFormatError) as error:
        voc_reader.parse_annotation(str(path))
    assert str(path) in str(error.value) and message in str(error.value)


def test_index_images_prefers_jpg_and_ignores_other_files(tmp_path):
    for name in ('a.png', 'a.jpg', 'b.PNG', 'c.txt', 'd.jpeg'):
        (tmp_path / name).write_bytes(b'x')
    index = voc_reader.index_images(str(tmp_path))
    assert index == {'a': str(tmp_path / 'a.jpg'), 'b': str(tmp_path / 'b.PNG'),
                     'd': str(tmp_path / 'd.jpeg')}
    assert voc_reader.index_images(str(tmp_path / 'missing')) == {}


def test_load_image_keeps_jpeg_reencodes_png_rejects_garbage(tmp_path):
    jpeg = _jpeg(tmp_path / 'a.jpg', 20, 30)
    data, height, width, reencoded, _ = voc_reader.load_image(jpeg)
    assert data == open(jpeg, 'rb').read() and (height, width, reencoded) == (20, 30, False)

    image = np.zeros((12, 16, 3), np.uint8)
    image[:, 8:] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / 'b.png'), image)
    data, height, width, reencoded, _ = voc_reader.load_image(str(tmp_path / 'b.png'))
    assert data[:3] == b'\xff\xd8\xff' and (height, width, reencoded) == (12, 16, True)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(decoded.astype(int) - image).mean() < 10

    whole = open(jpeg, 'rb').read()
    (tmp_path / 'c.jpg').write_bytes(whole[:len(whole) // 2])
    (tmp_path / 'd.jpg').write_bytes(b'this is not an image')
    (tmp_path / 'e.jpg').write_bytes(b'')
    for name, message in (('c.jpg', 'truncated JPEG|not a decodable'),
                          ('d.jpg', 'not a decodable image'), ('e.jpg', 'empty file')):
        with pytest.raises(voc_reader.VocFormatError, match=message):
            voc_reader.load_image(str(tmp_path / name))


def test_truncated_jpeg_rejected_even_when_the_decoder_recovers_it(tmp_path, monkeypatch):
    # OpenCV 4 returns a grey-filled image for a truncated JPEG, while tf.io.decode_jpeg fails:
    # the end-of-image check must catch it whatever the decoder does.
    whole = open(_jpeg(tmp_path / 'a.jpg', 20, 30), 'rb').read()
    monkeypatch.setattr(voc_reader.cv2, 'imdecode', lambda data, flags: np.zeros((20, 30, 3)))
    for cut in (2, len(whole) // 2):
        (tmp_path / 'cut.jpg').write_bytes(whole[:-cut])
        with pytest.raises(voc_reader.VocFormatError, match='truncated JPEG'):
            voc_reader.load_image(str(tmp_path / 'cut.jpg'))
    assert voc_reader.load_image(str(tmp_path / 'a.jpg'))[0] == whole


def test_make_record_boxes_labels_and_events(tmp_path):
    image = _jpeg(tmp_path / 'x.jpg', 100, 200)
    xml = _xml(tmp_path / 'x.xml', [
        ('car', (11, 21, 60, 80), 0, 1),       # normal
        ('bus', (150, 50, 230, 90), 1, 0),     # crosses the right border: clipped
        ('car', (40, 40, 40, 70), 0, 0),       # zero width: dropped
        ('tram', (1, 1, 5, 5), 0, 0),          # unknown class: dropped
    ], size=(50, 50), filename='x.png')        # wrong <size>, <filename> differs from disk
    result = voc_reader.make_record(voc_reader.parse_annotation(xml), image, NAMES)
    record = result.record
    assert result.skip_category is None
    assert (record.height, record.width, record.channels, record.filename) == (100, 200, 3, 'x.jpg')
    assert record.labels == [1, 2] and record.label_texts == ['car', 'bus']
    assert record.difficult == [0, 1] and record.truncated == [1, 0]
    np.testing.assert_allclose(record.bboxes, [[0.21, 0.055, 0.8, 0.3], [0.5, 0.75, 0.9, 1.0]])
    assert result.events == {
        voc_reader.EVENT_BOX_CLIPPED: 1, voc_reader.EVENT_ZERO_AREA: 1,
        voc_reader.EVENT_UNKNOWN_CLASS: 1, voc_reader.EVENT_SIZE_FIXED: 1,
        voc_reader.EVENT_FILENAME_DIFFERS: 1}


def test_make_record_skip_reasons(tmp_path):
    image = _jpeg(tmp_path / 'x.jpg', 40, 40)
    empty = voc_reader.parse_annotation(_xml(tmp_path / 'e.xml', [('car', (5, 5, 5, 9), 0, 0)]))
    result = voc_reader.make_record(empty, image, NAMES)
    assert (result.record, result.skip_category) == (None, voc_reader.SKIP_NO_OBJECTS)
    good = voc_reader.parse_annotation(_xml(tmp_path / 'g.xml', [('car', (5, 5, 9, 9), 0, 0)]))
    result = voc_reader.make_record(good, None, NAMES)
    assert result.skip_category == voc_reader.SKIP_NO_IMAGE and 'g.xml' in result.skip_detail
    (tmp_path / 'bad.jpg').write_bytes(b'\xff\xd8\xff garbage')
    result = voc_reader.make_record(good, str(tmp_path / 'bad.jpg'), NAMES)
    assert result.skip_category == voc_reader.SKIP_BAD_IMAGE and 'bad.jpg' in result.skip_detail


def test_non_finite_coordinates_are_dropped_and_counted(tmp_path):
    image = _jpeg(tmp_path / 'x.jpg', 100, 200)
    xml = _xml(tmp_path / 'x.xml', [
        ('car', ('nan', 21, 60, 80), 0, 0),
        ('car', (11, 21, 'inf', 80), 0, 0),     # would be clipped to the border otherwise
        ('bus', (11, '-Infinity', 60, 80), 0, 0),
        ('car', (11, 21, 60, 80), 0, 0),
    ], size=(100, 200), filename='x.jpg')
    result = voc_reader.make_record(voc_reader.parse_annotation(xml), image, NAMES)
    assert result.record.labels == [1]
    assert np.isfinite(result.record.bboxes).all()
    assert result.events == {voc_reader.EVENT_NON_FINITE: 3}
