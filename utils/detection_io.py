"""Image listing and printed detection lines shared by detector.py and serving/client.py.

Standard library only (callers pass NumPy arrays): no TensorFlow, no matplotlib, so the REST
client and the web page (serving/Dockerfile) can import it without them.
"""
import os

from utils.errors import ToolkitError

# Image files of a folder that are processed (what tf.io.decode_image reads).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp')
# Known image formats that are not read, and what to do about them.
_UNSUPPORTED = {'.tif': 'TIFF is not read: convert it to PNG or JPEG',
                '.tiff': 'TIFF is not read: convert it to PNG or JPEG',
                '.heic': 'HEIC is not read: convert it to JPEG',
                '.heif': 'HEIF is not read: convert it to JPEG'}


class ImagePathError(ToolkitError, ValueError):
    """A bad ``--image_path`` (missing, or a folder without images); one-line message."""


def list_images(image_path):
    """``(images, others)``: the files to process (``[image_path]`` for a file, the sorted
    images of a folder) and the folder's other files (sorted), which callers report with
    ``unsupported_reason``: together they are every file of the folder."""
    if os.path.isfile(image_path):
        return [image_path], []
    if os.path.isdir(image_path):
        try:
            names = os.listdir(image_path)
        except OSError as e:
            raise ImagePathError('--image_path %s: cannot list this folder: %s'
                                 % (image_path, e.strerror))
        files = sorted(os.path.join(image_path, name) for name in names
                       if os.path.isfile(os.path.join(image_path, name)))
        images = [path for path in files if path.lower().endswith(IMAGE_EXTENSIONS)]
        if not images:
            raise ImagePathError('--image_path %s: no image files (%s) in this folder'
                                 % (image_path, ', '.join(IMAGE_EXTENSIONS)))
        return images, [path for path in files if path not in images]
    raise ImagePathError('--image_path %s: no such file or folder' % image_path)


def unsupported_reason(path):
    """Why a file of an image folder is not processed (one phrase)."""
    extension = os.path.splitext(path)[1].lower()
    return _UNSUPPORTED.get(extension, 'not an image file of a format read here (%s)'
                            % ', '.join(IMAGE_EXTENSIONS))


def class_label(label, class_names=None):
    """The name of class id ``label`` (1-based, no background), or the id itself as text when
    ``class_names`` is missing or has no entry for it."""
    label = int(label)
    if class_names and 0 < label <= len(class_names):
        return class_names[label - 1]
    return str(label)


def format_detections(name, height, width, boxes, scores, classes, class_names=None):
    """The printed lines for one image: a header ``name (WxH): N detection(s)``, then class,
    score and pixel box ``[ymin, xmin, ymax, xmax]`` per detection."""
    count = len(scores)
    lines = ['%s (%dx%d): %d detection%s' % (name, width, height, count, '' if count == 1 else 's')]
    for box, score, label in zip(boxes, scores, classes):
        lines.append('  %-14s %.3f  [ymin %.1f, xmin %.1f, ymax %.1f, xmax %.1f]'
                     % ((class_label(label, class_names), score) + tuple(box)))
    return lines
