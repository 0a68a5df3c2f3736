"""Reads one Pascal-VOC example (XML annotation + image) into a validated record, or a skip reason.

No TensorFlow here: the converter runs this in worker processes, which must start fast.

Box convention. VOC XML boxes are 1-based pixel coordinates (``xmin``/``ymin`` of the first pixel
column/row is 1, ``xmax = width`` touches the right border). Like SSD-Tensorflow's converter, the
record stores them normalised *literally*, without the -1 shift:
``[ymin / height, xmin / width, ymax / height, xmax / width]``, then clipped to [0, 1].
``height``/``width`` come from the decoded image, never from the XML ``<size>`` (which may be
missing or wrong). A box that has no area after clipping, or a non-finite coordinate (``nan``,
``inf``), is dropped and counted.

Images are looked up by the annotation id in ``JPEGImages/`` (as the VOC devkit does), whatever
the XML ``<filename>`` says. JPEG bytes are stored unchanged when the file is a complete JPEG;
other formats (PNG, BMP) are re-encoded as JPEG; undecodable or truncated files are skipped.

Phone photos: a JPEG whose EXIF orientation swaps its sides (5 to 8) and whose ``<size>`` is the
upright size was annotated upright (as a viewer shows it): its pixels are stored upright
(re-encoded). When ``<size>`` is the stored size, the annotation refers to the stored pixels and
they are kept. Both cases are counted in the summary.
"""
import collections
import math
import os
import xml.etree.ElementTree as ElementTree

import cv2
import numpy as np

from utils import exif
from utils.errors import ToolkitError

# Extensions tried for an image id, best first (a .jpg beside a .png of the same id wins).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
JPEG_QUALITY = 95

# Skip categories (the converter's summary groups skipped images by these).
SKIP_NO_IMAGE = 'annotation without image'
SKIP_NO_ANNOTATION = 'image without annotation'
SKIP_BAD_XML = 'unreadable annotation'
SKIP_BAD_IMAGE = 'corrupt or unsupported image'
SKIP_NO_OBJECTS = 'no usable object'

# Events counted on converted images (not reasons to skip).
EVENT_BOX_CLIPPED = 'boxes clipped to the image'
EVENT_ZERO_AREA = 'zero-area boxes dropped'
EVENT_NON_FINITE = 'boxes with non-finite coordinates dropped'
EVENT_UNKNOWN_CLASS = 'objects of unknown classes dropped'
EVENT_REENCODED = 'non-JPEG images re-encoded as JPEG'
EVENT_SIZE_FIXED = 'missing or wrong <size> (decoded size used)'
EVENT_FILENAME_DIFFERS = '<filename> differs from the image on disk'
EVENT_EXIF_TURNED = 'EXIF-rotated photos annotated upright (stored upright)'
EVENT_EXIF_KEPT = 'EXIF-rotated photos annotated on the stored pixels (kept as stored)'
EVENT_EMPTY_KEPT = 'images without any object kept (background only)'

VocObject = collections.namedtuple('VocObject', 'name box difficult truncated')
VocObject.__doc__ = """One XML object; ``box`` is the raw (xmin, ymin, xmax, ymax) in 1-based pixels."""

Annotation = collections.namedtuple('Annotation', 'image_id xml_path filename size objects')
Annotation.__doc__ = """A parsed XML; ``size`` is (height, width) from ``<size>``, or None."""

VocRecord = collections.namedtuple(
    'VocRecord', 'image_id filename encoded height width channels labels label_texts bboxes '
                 'difficult truncated')
VocRecord.__doc__ = """What one tf.train.Example holds; ``bboxes`` is a list of normalised
[ymin, xmin, ymax, xmax] (one per object, same order as ``labels``)."""

ReadResult = collections.namedtuple('ReadResult', 'image_id record skip_category skip_detail events')
ReadResult.__doc__ = """``record`` is a VocRecord, or None with ``skip_category``/``skip_detail``
saying why; ``events`` is a dict event name -> count."""


class VocFormatError(ToolkitError, ValueError):
    """A file that cannot be used; the message says what is wrong with it."""


def _text(element, path, where, required=True):
    """Stripped text of ``element.find(path)``; ``where`` ("file: object N") prefixes errors."""
    node = element.find(path)
    if node is None or node.text is None or not node.text.strip():
        if required:
            raise VocFormatError('%s: missing <%s>' % (where, path))
        return None
    return node.text.strip()


def _number(element, path, where):
    text = _text(element, path, where)
    try:
        return float(text)
    except ValueError:
        raise VocFormatError('%s: <%s> is %r, not a number' % (where, path, text))


def _flag(element, path, where):
    text = _text(element, path, where, required=False)
    if text is None:
        return 0
    try:
        return int(float(text))
    except ValueError:
        raise VocFormatError('%s: <%s> is %r, not 0 or 1' % (where, path, text))


def _size(root):
    """(height, width) from <size>, or None when absent or not two positive integers."""
    try:
        height = int(float(root.find('size/height').text))
        width = int(float(root.find('size/width').text))
    except (AttributeError, TypeError, ValueError):
        return None
    return (height, width) if height > 0 and width > 0 else None


def parse_annotation(xml_path):
    """Parses a VOC XML file into an Annotation; raises VocFormatError naming the file and field."""
    image_id = os.path.splitext(os.path.basename(xml_path))[0]
    try:
        root = ElementTree.parse(xml_path).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise VocFormatError('%s: not a readable XML file (%s)' % (xml_path, error))
    objects = []
    for number, node in enumerate(root.findall('object'), start=1):
        where = '%s: object %d' % (xml_path, number)
        name = _text(node, 'name', where)
        box = tuple(_number(node, 'bndbox/' + key, where) for key in ('xmin', 'ymin', 'xmax', 'ymax'))
        objects.append(VocObject(name, box, _flag(node, 'difficult', where),
                                 _flag(node, 'truncated', where)))
    return Annotation(image_id, xml_path, _text(root, 'filename', xml_path, required=False),
                      _size(root), objects)


def index_images(image_dir):
    """Maps image id (file name without extension) -> path of its best image file in ``image_dir``."""
    rank = {ext: position for position, ext in enumerate(IMAGE_EXTENSIONS)}
    best = {}
    for name in sorted(os.listdir(image_dir)) if os.path.isdir(image_dir) else ():  # stable ties
        stem, ext = os.path.splitext(name)
        ext = ext.lower()
        if ext in rank and (stem not in best or rank[ext] < rank[best[stem][0]]):
            best[stem] = (ext, name)
    return {stem: os.path.join(image_dir, name) for stem, (_, name) in best.items()}


def _jpeg_is_complete(data):
    """True when the last end-of-image marker follows the last start-of-scan marker.

    Inside entropy-coded data 0xFF is always byte-stuffed, so these two markers cannot occur
    there by accident; a truncated file loses its final EOI (an EXIF thumbnail's EOI comes
    before the main image's SOS).
    """
    return data.rfind(b'\xff\xd9') > data.rfind(b'\xff\xda') >= 0


def _orientation_event(orientation, stored_size, annotated_size):
    """The EXIF event of a photo (None when its orientation does not swap its sides, or when
    ``<size>`` matches neither frame): EVENT_EXIF_TURNED or EVENT_EXIF_KEPT."""
    if not exif.swaps_sides(orientation) or stored_size[0] == stored_size[1]:
        return None
    if annotated_size == stored_size[::-1]:
        return EVENT_EXIF_TURNED
    return EVENT_EXIF_KEPT if annotated_size == stored_size else None


def load_image(path, annotated_size=None):
    """Returns (jpeg_bytes, height, width, reencoded, exif_event) for an image file;
    VocFormatError if unusable.

    The stored pixel grid (what ``tf.io.decode_jpeg`` returns) is kept, unless the EXIF
    orientation swaps the sides and ``annotated_size`` (``<size>``, (height, width)) is the
    upright size: then the image is turned upright. ``exif_event`` says which (or None).
    """
    with open(path, 'rb') as handle:
        data = handle.read()
    if not data:
        raise VocFormatError('%s: empty file' % path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8),
                         cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise VocFormatError('%s: not a decodable image' % path)
    orientation = exif.orientation(data)
    event = _orientation_event(orientation, image.shape[:2], annotated_size)
    if data[:3] == b'\xff\xd8\xff':
        if not _jpeg_is_complete(data):
            raise VocFormatError('%s: truncated JPEG (no end-of-image marker)' % path)
        if event != EVENT_EXIF_TURNED:
            return data, image.shape[0], image.shape[1], False, event
        image = exif.upright(image, orientation)
    ok, encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise VocFormatError('%s: could not re-encode as JPEG' % path)
    return encoded.tobytes(), image.shape[0], image.shape[1], event is None, event


def normalise_box(box, height, width):
    """(xmin, ymin, xmax, ymax) 1-based pixels -> ([ymin, xmin, ymax, xmax] in [0, 1], clipped?)."""
    xmin, ymin, xmax, ymax = box
    raw = [ymin / height, xmin / width, ymax / height, xmax / width]
    clipped = [min(max(value, 0.0), 1.0) for value in raw]
    return clipped, clipped != raw


def make_record(annotation, image_path, names_to_labels, keep_empty=False):
    """Builds the record of one annotated image -> ReadResult (record, or skip reason).

    Objects whose class is not in ``names_to_labels`` are dropped and counted (the converter
    stops before this point unless the user asked to skip unknown classes). An image left
    without any object is skipped (SKIP_NO_OBJECTS), or with ``keep_empty`` kept as a record of
    zero boxes (background only: every anchor a negative in training) and counted.
    """
    events = collections.Counter()
    image_id = annotation.image_id
    if image_path is None:
        return ReadResult(image_id, None, SKIP_NO_IMAGE,
                          '%s: no image %s.* in JPEGImages' % (annotation.xml_path, image_id), {})
    try:
        encoded, height, width, reencoded, exif_event = load_image(image_path, annotation.size)
    except (VocFormatError, OSError) as error:
        return ReadResult(image_id, None, SKIP_BAD_IMAGE, str(error), {})
    events[EVENT_REENCODED] += int(reencoded)
    if exif_event:
        events[exif_event] += 1
    events[EVENT_SIZE_FIXED] += int(annotation.size != (height, width))
    events[EVENT_FILENAME_DIFFERS] += int(
        annotation.filename is not None and annotation.filename != os.path.basename(image_path))
    labels, texts, bboxes, difficult, truncated = [], [], [], [], []
    for obj in annotation.objects:
        if obj.name not in names_to_labels:
            events[EVENT_UNKNOWN_CLASS] += 1
            continue
        if not all(math.isfinite(value) for value in obj.box):
            events[EVENT_NON_FINITE] += 1
            continue
        bbox, was_clipped = normalise_box(obj.box, height, width)
        if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
            events[EVENT_ZERO_AREA] += 1
            continue
        events[EVENT_BOX_CLIPPED] += int(was_clipped)
        labels.append(names_to_labels[obj.name])
        texts.append(obj.name)
        bboxes.append(bbox)
        difficult.append(obj.difficult)
        truncated.append(obj.truncated)
    if not labels and keep_empty:
        events[EVENT_EMPTY_KEPT] += 1
    events = {name: count for name, count in events.items() if count}
    if not labels and not keep_empty:
        return ReadResult(image_id, None, SKIP_NO_OBJECTS,
                          '%s: no object left to train on (%d in the XML; --keep_empty_images keeps it)'
                          % (annotation.xml_path, len(annotation.objects)), events)
    record = VocRecord(image_id, os.path.basename(image_path), encoded, height, width, 3,
                       labels, texts, bboxes, difficult, truncated)
    return ReadResult(image_id, record, None, None, events)


def read_example(task):
    """Worker entry point: ``task = (annotation, image_path, names_to_labels, keep_empty)`` ->
    ReadResult."""
    return make_record(*task)
