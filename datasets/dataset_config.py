"""Class lists of the built-in datasets, labels-file reading and the TFRecord keys (no TensorFlow).

Label ids: 0 is the background ('none', never stored in records); class i of a list has id i + 1.
Clients (serving, web page) import this module, so it must stay free of TensorFlow.
"""
import os

from utils.errors import ToolkitError

BACKGROUND_NAME = 'none'

# Pascal VOC's 20 classes, alphabetical: ids 1..20 as in the VOC devkit and SSD-Tensorflow.
PASCALVOC_2007_CLASSES = (
    'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor')

# The classes of the shared Open Images vehicle set (and of the generated sample data).
VEHICLE_CLASSES = ('Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck')

BUILTIN_CLASSES = {
    'pascalvoc_2007': PASCALVOC_2007_CLASSES,
    'vehicle': VEHICLE_CLASSES,
}

# tf.train.Example keys (SPEC section 3); the converter writes them, input_pipeline reads them.
KEY_ENCODED = 'image/encoded'
KEY_FORMAT = 'image/format'
KEY_FILENAME = 'image/filename'
KEY_HEIGHT = 'image/height'
KEY_WIDTH = 'image/width'
KEY_CHANNELS = 'image/channels'
KEY_SHAPE = 'image/shape'
KEY_YMIN = 'image/object/bbox/ymin'
KEY_XMIN = 'image/object/bbox/xmin'
KEY_YMAX = 'image/object/bbox/ymax'
KEY_XMAX = 'image/object/bbox/xmax'
KEY_LABEL = 'image/object/bbox/label'
KEY_LABEL_TEXT = 'image/object/bbox/label_text'
KEY_DIFFICULT = 'image/object/bbox/difficult'
KEY_TRUNCATED = 'image/object/bbox/truncated'


class DatasetConfigError(ToolkitError, ValueError):
    """A class list or labels file that cannot be used; the message names the file or dataset."""


def read_labels_file(path):
    """Reads a labels file: one class name per line, line 1 = id 1. Returns a list of names.

    Surrounding whitespace and trailing blank lines are ignored; a blank line between names,
    a duplicate name, the background name or an empty file is an error (ids would be ambiguous).
    """
    if not os.path.isfile(path):
        raise DatasetConfigError('labels file %s: no such file' % path)
    with open(path, encoding='utf-8-sig') as handle:
        lines = [line.strip() for line in handle.read().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise DatasetConfigError('labels file %s: no class names' % path)
    for number, name in enumerate(lines, start=1):
        if not name:
            raise DatasetConfigError('labels file %s: line %d is blank (one class name per line)'
                                     % (path, number))
        if name == BACKGROUND_NAME:
            raise DatasetConfigError('labels file %s: line %d: %r is reserved for the background'
                                     % (path, number, name))
    duplicates = sorted({name for name in lines if lines.count(name) > 1})
    if duplicates:
        raise DatasetConfigError('labels file %s: duplicate class names %s' % (path, duplicates))
    return lines


def class_names_for(dataset_name, labels_file=None):
    """Class names (id order, no background): the labels file if given, else the built-in list."""
    if labels_file:
        return read_labels_file(labels_file)
    if dataset_name not in BUILTIN_CLASSES:
        raise DatasetConfigError(
            'dataset %r has no built-in class list (known: %s); give a labels file'
            % (dataset_name, ', '.join(sorted(BUILTIN_CLASSES))))
    return list(BUILTIN_CLASSES[dataset_name])


def labels_to_names(class_names):
    """{0: 'none', 1: class_names[0], ...}."""
    mapping = {0: BACKGROUND_NAME}
    mapping.update({index: name for index, name in enumerate(class_names, start=1)})
    return mapping


def names_to_labels(class_names):
    """{class_names[0]: 1, ...} (background excluded)."""
    return {name: index for index, name in enumerate(class_names, start=1)}
