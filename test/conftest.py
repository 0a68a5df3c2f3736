"""Shared fixtures: the shared real data (skipped when absent), a small generated dataset,
``declared_png`` (a few kilobytes declaring a huge picture), ``encoded_images`` (one picture in
every header layout ``utils/image_header.py`` knows) and ``value_after_importing`` (what a fresh
interpreter holds once it imported some modules)."""
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')


def value_after_importing(module_names, expression):
    """Imports ``module_names`` in a fresh interpreter (repository root as working folder) and
    returns the JSON value of ``expression`` there, where ``modules`` lists the imported modules."""
    code = ('import importlib, json, sys\n'
            'modules = [importlib.import_module(name) for name in sys.argv[1:]]\n'
            'print(json.dumps(%s))' % expression)
    result = subprocess.run([sys.executable, '-c', code] + list(module_names), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def shared_path(*parts):
    """Path under ../shared/data, or a clean skip when that folder is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip('shared data not available: %s' % path)
    return path


def declared_png(height, width):
    """A valid black 1-bit PNG of ``height`` x ``width``: 17 KB for 12000 x 12000, whose decoding
    would take 432 MB as RGB."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    rows = zlib.compress(b'\0' * ((width + 7) // 8 + 1) * height, 9)
    header = struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', rows) +
            chunk(b'IEND', b''))


def _bmp(image, core_header=False, top_down=False):
    """A 24-bit BMP of RGB uint8 ``image [H, W, 3]``, written by hand: with the 12-byte OS/2
    BITMAPCOREHEADER (unsigned 16-bit sizes) or the 40-byte BITMAPINFOHEADER (signed 32-bit;
    a negative height stores the rows top-down)."""
    height, width = image.shape[:2]
    row_bytes = (width * 3 + 3) // 4 * 4  # rows are padded to 4 bytes
    order = range(height) if top_down else range(height - 1, -1, -1)
    pixels = b''.join(image[y, :, ::-1].tobytes().ljust(row_bytes, b'\0') for y in order)
    if core_header:
        info = struct.pack('<IHHHH', 12, width, height, 1, 24)
    else:
        info = struct.pack('<IiiHHIIiiII', 40, width, -height if top_down else height, 1, 24, 0,
                           len(pixels), 2835, 2835, 0, 0)
    offset = 14 + len(info)
    return b'BM' + struct.pack('<IHHI', offset + len(pixels), 0, 0, offset) + info + pixels


def encoded_images(image):
    """{name: bytes} of RGB uint8 ``image`` in every header layout the size reader knows; the
    first word of a name is the format. OpenCV and Pillow encode; the BMPs are written by hand
    (neither encoder writes the OS/2 header or top-down rows)."""
    import cv2
    from PIL import Image
    bgr = image[:, :, ::-1]
    images = {name: cv2.imencode(ext, bgr, params)[1].tobytes() for name, ext, params in (
        ('JPEG', '.jpg', []), ('PNG', '.png', []), ('BMP', '.bmp', []),
        ('WebP lossy', '.webp', [cv2.IMWRITE_WEBP_QUALITY, 80]),
        ('WebP lossless', '.webp', [cv2.IMWRITE_WEBP_QUALITY, 101]))}
    exif = b'Exif\0\0' + b'\0' * 40
    for name, fmt, options in (('GIF', 'GIF', {}), ('JPEG progressive', 'JPEG',
                                                     {'progressive': True}),
                               ('JPEG with EXIF', 'JPEG', {'exif': exif}),
                               ('WebP extended', 'WEBP', {'exif': exif})):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, fmt, **options)
        images[name] = buffer.getvalue()
    images['BMP OS/2'] = _bmp(image, core_header=True)
    images['BMP top-down'] = _bmp(image, top_down=True)
    return images


@pytest.fixture(scope='session')
def sample_voc_dir(tmp_path_factory):
    """A generated VOC folder (vehicle classes, splits train/test), shared by the whole session."""
    from datasets.write_dataset import sample_data
    out = str(tmp_path_factory.mktemp('sample_voc'))
    sample_data.generate_voc_dataset(out, num_images=24, seed=7)
    return out


@pytest.fixture(scope='session')
def sample_tfrecords(sample_voc_dir, tmp_path_factory):
    """The generated VOC folder converted to TFRecords (`vehicle` dataset, splits train and test)."""
    from datasets.write_dataset import dataset_to_tfrecords
    out = str(tmp_path_factory.mktemp('sample_tfrecords'))
    for split in ('train', 'test'):
        dataset_to_tfrecords.convert(sample_voc_dir, out, 'vehicle', split=split, samples_per_file=8)
    return out
