"""The size of an encoded image read from its first bytes, without decoding it (standard library).

The model server and the web page call ``check_image_pixels`` on every image they receive, so a
small file that declares a huge picture is refused before anything allocates its pixels.
Formats are recognised by their signature, as ``tf.io.decode_image`` does: JPEG, PNG, GIF, BMP
and WebP have their size read from the header; JPEG XL is refused (its size is not stored at a
fixed place); bytes with no known signature are not images and are left to the caller.
"""
import struct

from utils.errors import ToolkitError

DEFAULT_MAX_IMAGE_PIXELS = 50 * 1000 * 1000
PIXELS_FLAG = '--max_image_pixels'
# The pixels of all the images of one request (declared by their headers): one picture of the
# largest size, or eight 12 MP phone photos.
DEFAULT_MAX_REQUEST_PIXELS = 100 * 1000 * 1000
REQUEST_PIXELS_FLAG = '--max_request_pixels'

_JPEG = b'\xff\xd8\xff'
_PNG = b'\x89PNG\r\n\x1a\n'
_JXL = (b'\xff\x0a', b'\x00\x00\x00\x0cJXL \r\n\x87\n')
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


def _png_size(data):
    if data[12:16] != b'IHDR':
        raise ImageHeaderError('PNG header has no IHDR chunk')
    width, height = _unpack('>II', data, 16, 'PNG')
    return height, width


def _gif_size(data):
    width, height = _unpack('<HH', data, 6, 'GIF')
    return height, width


def _bmp_size(data):
    header_size, = _unpack('<I', data, 14, 'BMP')
    width, height = _unpack('<HH' if header_size == 12 else '<ii', data, 18, 'BMP')
    return abs(height), abs(width)  # a negative height means rows stored top-down


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b'VP8X':  # extended: 24-bit canvas width - 1 and height - 1
        low_w, high_w, low_h, high_h = _unpack('<HBHB', data, 24, 'WebP')
        return (low_h | high_h << 16) + 1, (low_w | high_w << 16) + 1
    if chunk == b'VP8L':  # lossless: 14-bit width - 1 and height - 1 after the signature byte
        bits, = _unpack('<I', data, 21, 'WebP')
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b'VP8 ':  # lossy: 14-bit width and height after the frame tag and start code
        width, height = _unpack('<HH', data, 26, 'WebP')
        return height & 0x3FFF, width & 0x3FFF
    raise ImageHeaderError('WebP header has no VP8, VP8L or VP8X chunk')


def image_format(data):
    """'JPEG', 'PNG', 'GIF', 'BMP', 'WebP' or 'JPEG XL' from the signature of ``data``; None
    for bytes with no image signature."""
    if data.startswith(_JPEG):
        return 'JPEG'
    if data.startswith(_PNG):
        return 'PNG'
    if data.startswith(b'GIF8'):
        return 'GIF'
    if data.startswith(b'BM'):
        return 'BMP'
    if data.startswith(b'RIFF') and data[8:12] == b'WEBP':
        return 'WebP'
    if data.startswith(_JXL):
        return 'JPEG XL'
    return None


_SIZE_READERS = {'JPEG': _jpeg_size, 'PNG': _png_size, 'GIF': _gif_size, 'BMP': _bmp_size,
                 'WebP': _webp_size}


def image_size(data):
    """``(format, height, width)`` read from the header of encoded image bytes.

    Returns None when ``data`` has no image signature. Raises ImageHeaderError when it has one
    but the size cannot be read (cut short, malformed, or JPEG XL).
    """
    name = image_format(data)
    if name is None:
        return None
    if name not in _SIZE_READERS:
        raise ImageHeaderError('%s images are not accepted: their size cannot be read before '
                               'decoding' % name)
    height, width = _SIZE_READERS[name](data)
    return name, height, width


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
