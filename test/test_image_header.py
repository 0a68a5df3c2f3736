"""utils/image_header.py: image sizes read from headers (against real encoders), refusals."""
import cv2
import numpy as np
import pytest

from test.conftest import declared_png, encoded_images
from utils import image_header

IMAGE = np.random.RandomState(0).randint(0, 255, (20, 30, 3)).astype(np.uint8)


@pytest.mark.parametrize('name, data', sorted(encoded_images(IMAGE).items()))
def test_size_from_the_header_equals_the_decoded_size(name, data):
    assert image_header.image_size(data) == (name.split()[0], 20, 30)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (20, 30, 3)


def test_every_layout_of_the_table_is_exercised():
    """Each ``Layout`` of ``FORMATS`` is the one that reads one of the encoded images."""
    used = set()
    for data in encoded_images(IMAGE).values():
        fmt = image_header._format_of(data)
        used.update(id(layout) for layout in fmt.layouts
                    if all(data[o:o + len(m)] == m for o, m in layout.when))
    assert used >= {id(layout) for fmt in image_header.FORMATS for layout in fmt.layouts}


def test_os2_bitmap_sizes_are_16_bit():
    """BITMAPCOREHEADER: WORD width at 18 and height at 20; a 32-bit read would take the height
    for the high half of the width."""
    data = encoded_images(np.zeros((2, 300, 3), np.uint8))['BMP OS/2']
    assert data[14:22] == b'\x0c\0\0\0' + b'\x2c\x01' + b'\x02\0'
    assert image_header.image_size(data) == ('BMP', 2, 300)


def test_declared_size_is_read_without_decoding():
    data = declared_png(12000, 12000)
    assert len(data) < 20000
    assert image_header.image_size(data) == ('PNG', 12000, 12000)


def test_limit_names_the_flag_and_non_images_pass():
    with pytest.raises(image_header.ImageHeaderError) as raised:
        image_header.check_image_pixels(declared_png(12000, 12000), 50000000, "file 'a.png'")
    assert str(raised.value) == (
        "file 'a.png': PNG image of 12000x12000 = 144000000 pixels exceeds the limit of 50000000 "
        "pixels (--max_image_pixels)")
    assert image_header.check_image_pixels(declared_png(20, 30), 600, 'x') == (20, 30)
    assert image_header.check_image_pixels(b'plain text', 1, 'x') is None


@pytest.mark.parametrize('data, fragment', [
    (b'\x89PNG\r\n\x1a\n' + b'x' * 30, 'PNG header has no IHDR chunk'),
    (declared_png(20, 30)[:20], 'PNG header is cut short'),
    (b'\xff\xd8\xff\xe0\x00\x10JFIF', 'JPEG header has no readable frame size'),
    (b'GIF89a\x01', 'GIF header is cut short'),
    (b'RIFF\0\0\0\0WEBPVP8Z', 'WebP header has no VP8X or VP8L or VP8 chunk'),
    (b'BM' + b'\0' * 12 + b'\x28\0\0\0' + b'\0' * 5, 'BMP header is cut short'),
    (b'\xff\x0a\xfa\x7f', 'JPEG XL images are not accepted'),
])
def test_unreadable_headers_are_refused(data, fragment):
    with pytest.raises(image_header.ImageHeaderError, match='^x: ' + fragment):
        image_header.check_image_pixels(data, 10 ** 9, 'x')
