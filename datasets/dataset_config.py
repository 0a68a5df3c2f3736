"""Class lists of the built-in datasets and labels-file reading (no TensorFlow).

The TFRecord keys live in datasets/records.py.

Label ids: 0 is the background ('none', never stored in records); class i of a list has id i + 1.
Clients (serving, web page) import this module, so it must stay free of TensorFlow.
"""
import os

from utils.errors import ToolkitError

BACKGROUND_NAME = 'none'
# Names label maps give the background; class 0 is implicit here, so a labels file naming it
# would shift every id by one.
BACKGROUND_NAMES = (BACKGROUND_NAME, 'background', '__background__')
# --class_weights takes "name=weight,name=weight": a class name cannot hold these.
NAME_SEPARATORS = (',', '=')

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

class DatasetConfigError(ToolkitError, ValueError):
    """A class list or labels file that cannot be used; the message names the file or dataset."""


def read_labels_file(path):
    """Reads a labels file: one class name per line, line 1 = id 1. Returns a list of names.

    Surrounding whitespace and trailing blank lines are ignored; a blank line between names,
    a duplicate name, a background name (``BACKGROUND_NAMES``: the background is id 0 without a
    line), a name with a comma or ``=`` (``--class_weights`` could not name it) or an empty file
    is an error (ids would be ambiguous).
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
        if name.lower() in BACKGROUND_NAMES:
            raise DatasetConfigError('labels file %s: line %d: %r is the background, which has '
                                     'id 0 and no line: remove it (line 1 is class id 1)'
                                     % (path, number, name))
        separators = [c for c in NAME_SEPARATORS if c in name]
        if separators:
            raise DatasetConfigError('labels file %s: line %d: %r holds %r, which '
                                     '--class_weights uses between names and weights'
                                     % (path, number, name, separators[0]))
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
