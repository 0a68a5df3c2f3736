"""utils/image_header.py: image sizes read from headers (against real encoders), refusals."""
import io

import cv2
import numpy as np
import pytest

from test.conftest import declared_png
from utils import image_header

IMAGE = np.random.RandomState(0).randint(0, 255, (20, 30, 3)).astype(np.uint8)


def _encoded():
    from PIL import Image
    images = {name: cv2.imencode(ext, IMAGE, params)[1].tobytes() for name, ext, params in (
        ('JPEG', '.jpg', []), ('PNG', '.png', []), ('BMP', '.bmp', []),
        ('WebP', '.webp', [cv2.IMWRITE_WEBP_QUALITY, 80]),
        ('WebP lossless', '.webp', [cv2.IMWRITE_WEBP_QUALITY, 101]))}
    for name, fmt, options in (('GIF', 'GIF', {}), ('JPEG progressive', 'JPEG',
                                                     {'progressive': True}),
                               ('JPEG with EXIF', 'JPEG', {'exif': b'Exif\0\0' + b'\0' * 40})):
        buffer = io.BytesIO()
        Image.fromarray(IMAGE).save(buffer, fmt, **options)
        images[name] = buffer.getvalue()
    return images


@pytest.mark.parametrize('name, data', sorted(_encoded().items()))
def test_size_from_the_header_equals_the_decoded_size(name, data):
    assert image_header.image_size(data)[1:] == (20, 30)
    assert image_header.image_size(data)[0] == name.split()[0]
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (20, 30, 3)


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
    (b'RIFF\0\0\0\0WEBPVP8Z', 'WebP header has no VP8'),
    (b'\xff\x0a\xfa\x7f', 'JPEG XL images are not accepted'),
])
def test_unreadable_headers_are_refused(data, fragment):
    with pytest.raises(image_header.ImageHeaderError, match='^x: ' + fragment):
        image_header.check_image_pixels(data, 10 ** 9, 'x')
