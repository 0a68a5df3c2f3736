"""EXIF orientation of JPEG photos: read it from the bytes, turn pixels upright (NumPy only).

A phone stores a portrait photo as landscape pixels plus an EXIF ``Orientation`` tag (1..8)
telling viewers how to turn it. TensorFlow's and OpenCV's decoders (with
``IMREAD_IGNORE_ORIENTATION``) give the stored pixels; viewers show them turned. The tools turn
them upright before detection so that pictures and boxes look as every photo viewer shows them.

Each orientation is an optional transpose followed by optional flips (``UPRIGHT_STEPS``), so
NumPy (``upright``) and the TensorFlow graph (``detector.py``) apply the same table.
"""
import struct

import numpy as np

UPRIGHT = 1
_ORIENTATION_TAG = 0x0112
# orientation -> (transpose, flip up-down, flip left-right) turning stored pixels upright.
UPRIGHT_STEPS = {
    1: (False, False, False),
    2: (False, False, True),    # mirrored
    3: (False, True, True),     # rotated 180
    4: (False, True, False),    # mirrored upside down
    5: (True, False, False),    # transposed
    6: (True, False, True),     # stored 90 degrees counter-clockwise: turn clockwise
    7: (True, True, True),      # transverse
    8: (True, True, False),     # stored 90 degrees clockwise: turn counter-clockwise
}


def _tiff_orientation(tiff):
    """The Orientation of a TIFF (EXIF) block's first IFD, or UPRIGHT."""
    order = {b'II': '<', b'MM': '>'}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return UPRIGHT
    offset = struct.unpack(order + 'I', tiff[4:8])[0]
    if offset + 2 > len(tiff):
        return UPRIGHT
    count = struct.unpack(order + 'H', tiff[offset:offset + 2])[0]
    for entry in range(offset + 2, min(offset + 2 + 12 * count, len(tiff) - 11), 12):
        tag, kind = struct.unpack(order + 'HH', tiff[entry:entry + 4])
        if tag == _ORIENTATION_TAG and kind == 3:  # SHORT, stored in the value field
            value = struct.unpack(order + 'H', tiff[entry + 8:entry + 10])[0]
            return value if value in UPRIGHT_STEPS else UPRIGHT
    return UPRIGHT


def orientation(data):
    """EXIF orientation (1..8) of encoded image bytes; 1 (upright) when the image is not a JPEG,
    has no EXIF block or no valid tag."""
    if data[:2] != b'\xff\xd8':
        return UPRIGHT
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: no metadata after it
            break
        length = struct.unpack('>H', data[position + 2:position + 4])[0]
        segment = data[position + 4:position + 2 + length]
        if marker == 0xE1 and segment[:6] == b'Exif\0\0':
            return _tiff_orientation(segment[6:])
        position += 2 + length
    return UPRIGHT


def swaps_sides(value):
    """Whether turning upright swaps height and width (orientations 5 to 8)."""
    return UPRIGHT_STEPS.get(value, UPRIGHT_STEPS[UPRIGHT])[0]


def upright(image, value):
    """Stored pixels ``[H, W, C]`` (NumPy) of orientation ``value`` → the upright picture."""
    transpose, flip_ud, flip_lr = UPRIGHT_STEPS.get(value, UPRIGHT_STEPS[UPRIGHT])
    if transpose:
        image = np.swapaxes(image, 0, 1)
    if flip_ud:
        image = image[::-1]
    if flip_lr:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)
