"""The size of an encoded image read from its first bytes, without decoding it (standard library).

The model server and the web page call ``check_image_pixels`` on every image they receive, so a
small file that declares a huge picture is refused before anything allocates its pixels; the
exported ``serving_default`` graph does the same in TensorFlow ops (``export_saved_model``).
Both read sizes through one table, ``FORMATS``: each format's signature and, for every header
layout it has, where height and width sit (offset, width in bytes, byte order, bit field).
Formats are recognised by their signature, as ``tf.io.decode_image`` does: PNG, GIF, BMP and
WebP have their size at fixed places; JPEG has it in its first frame marker, found by walking
the markers; JPEG XL is refused (its size is not stored at a fixed place); bytes with no known
signature are not images and are left to the caller.
"""
import collections
import struct

from utils.errors import ToolkitError

DEFAULT_MAX_IMAGE_PIXELS = 50 * 1000 * 1000
PIXELS_FLAG = '--max_image_pixels'

Field = collections.namedtuple('Field', 'offset size byte_order signed shift mask add')
Field.__new__.__defaults__ = (False, 0, None, 0)
Field.__doc__ = """An unsigned integer of ``size`` bytes at ``offset``, ``byte_order`` 'big' or
'little'. ``signed``: two's complement, and the size is its magnitude (a BMP stores a negative
height for rows kept top-down). Then ``(value >> shift) & mask`` (mask None: all bits) ``+ add``
(WebP stores some sizes minus one)."""

Layout = collections.namedtuple('Layout', 'when height width')
Layout.__doc__ = """One header layout: used when every ``(offset, bytes)`` of ``when`` matches
the data; ``height`` and ``width`` are ``Field``s."""

ImageFormat = collections.namedtuple('ImageFormat', 'name signature layouts')
ImageFormat.__doc__ = """``signature``: ``(offset, bytes)`` pairs that all match the data of this
format; ``layouts``: its ``Layout``s, tried in order (empty: the size is not at a fixed place)."""

_RIFF_WEBP = ((0, b'RIFF'), (8, b'WEBP'))
JPEG = ImageFormat('JPEG', ((0, b'\xff\xd8\xff'),), ())  # size in the first frame marker
FORMATS = (
    JPEG,
    ImageFormat('PNG', ((0, b'\x89PNG\r\n\x1a\n'),), (
        Layout(((12, b'IHDR'),), Field(20, 4, 'big'), Field(16, 4, 'big')),)),
    ImageFormat('GIF', ((0, b'GIF8'),), (
        Layout((), Field(8, 2, 'little'), Field(6, 2, 'little')),)),  # logical screen
    ImageFormat('BMP', ((0, b'BM'),), (
        # OS/2 1.x BITMAPCOREHEADER (12 bytes): unsigned 16-bit width and height.
        Layout(((14, b'\x0c\x00\x00\x00'),), Field(20, 2, 'little'), Field(18, 2, 'little')),
        # BITMAPINFOHEADER and its successors (40 bytes and more): signed 32-bit.
        Layout((), Field(22, 4, 'little', signed=True), Field(18, 4, 'little', signed=True)))),
    ImageFormat('WebP', _RIFF_WEBP, (
        # Extended: 24-bit canvas width - 1 and height - 1.
        Layout(((12, b'VP8X'),), Field(27, 3, 'little', add=1), Field(24, 3, 'little', add=1)),
        # Lossless: 14-bit width - 1 and height - 1 after the signature byte 0x2f.
        Layout(((12, b'VP8L'),), Field(21, 4, 'little', shift=14, mask=0x3FFF, add=1),
               Field(21, 4, 'little', mask=0x3FFF, add=1)),
        # Lossy: 14-bit width and height after the frame tag and the start code (2 bits scale).
        Layout(((12, b'VP8 '),), Field(28, 2, 'little', mask=0x3FFF),
               Field(26, 2, 'little', mask=0x3FFF)))),
    ImageFormat('JPEG XL', ((0, b'\xff\x0a'),), ()),
    ImageFormat('JPEG XL', ((0, b'\x00\x00\x00\x0cJXL \r\n\x87\n'),), ()),
)
# The bytes the table reads at most: the end of its farthest field or signature.
HEADER_BYTES = max([f.offset + f.size for fmt in FORMATS for layout in fmt.layouts
                    for f in (layout.height, layout.width)] +
                   [offset + len(magic) for fmt in FORMATS
                    for offset, magic in fmt.signature + sum((l.when for l in fmt.layouts), ())])

# JPEG start-of-frame markers (C4 = DHT, C8 = JPG, CC = DAC are not frames).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and the restart markers.
_STANDALONE_MARKERS = frozenset([0x01] + list(range(0xD0, 0xD8)))
_END_OF_IMAGE, _START_OF_SCAN = 0xD9, 0xDA


class ImageHeaderError(ToolkitError, ValueError):
    """An image whose header is unreadable or declares more pixels than allowed."""


def _unpack(fmt, data, offset, name):
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise ImageHeaderError('%s header is cut short' % name)


def _jpeg_size(data):
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (_END_OF_IMAGE, _START_OF_SCAN):
            break
        length, = _unpack('>H', data, position + 2, 'JPEG')
        if marker in _SOF_MARKERS:
            return _unpack('>HH', data, position + 5, 'JPEG')
        if length < 2:
            break
        position += 2 + length
    raise ImageHeaderError('JPEG header has no readable frame size')


def _matches(data, pairs):
    return all(data[offset:offset + len(magic)] == magic for offset, magic in pairs)


def read_field(data, field, name):
    """The value of ``field`` (a ``Field``) in ``data``; ImageHeaderError when cut short."""
    chunk = data[field.offset:field.offset + field.size]
    if len(chunk) < field.size:
        raise ImageHeaderError('%s header is cut short' % name)
    value = int.from_bytes(chunk, field.byte_order, signed=field.signed)
    value = abs(value) >> field.shift
    return (value if field.mask is None else value & field.mask) + field.add


def _format_of(data):
    return next((fmt for fmt in FORMATS if _matches(data, fmt.signature)), None)


def image_format(data):
    """'JPEG', 'PNG', 'GIF', 'BMP', 'WebP' or 'JPEG XL' from the signature of ``data``; None
    for bytes with no image signature."""
    fmt = _format_of(data)
    return fmt.name if fmt is not None else None


def image_size(data):
    """``(format name, height, width)`` read from the header of encoded image bytes.

    Returns None when ``data`` has no image signature. Raises ImageHeaderError when it has one
    but the size cannot be read (cut short, malformed, or JPEG XL).
    """
    fmt = _format_of(data)
    if fmt is None:
        return None
    if fmt is JPEG:
        height, width = _jpeg_size(data)
        return fmt.name, height, width
    if not fmt.layouts:
        raise ImageHeaderError('%s images are not accepted: their size cannot be read before '
                               'decoding' % fmt.name)
    layout = next((layout for layout in fmt.layouts if _matches(data, layout.when)), None)
    if layout is None:
        chunks = [magic.decode('ascii').strip() for known in fmt.layouts
                  for _, magic in known.when]
        raise ImageHeaderError('%s header has no %s chunk' % (fmt.name, ' or '.join(chunks)))
    return (fmt.name, read_field(data, layout.height, fmt.name),
            read_field(data, layout.width, fmt.name))


def check_image_pixels(data, max_pixels, what):
    """Reads the size of the image ``data`` and refuses it above ``max_pixels`` pixels.

    ``what`` names the image in messages ("uploaded file 'a.png'", "input 'x' element 0").
    Returns ``(height, width)``, or None when ``data`` is not an image. Raises ImageHeaderError
    naming ``what``, the size and the ``--max_image_pixels`` limit.
    """
    try:
        size = image_size(data)
    except ImageHeaderError as error:
        raise ImageHeaderError('%s: %s' % (what, error))
    if size is None:
        return None
    name, height, width = size
    if height * width > max_pixels:
        raise ImageHeaderError('%s: %s image of %dx%d = %d pixels exceeds the limit of %d pixels '
                               '(%s)' % (what, name, width, height, width * height, max_pixels,
                                         PIXELS_FLAG))
    return height, width
