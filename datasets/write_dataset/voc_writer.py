"""Writes Pascal VOC annotation XML: the inverse of ``voc_reader.py`` (NumPy only, no TensorFlow).

Box convention (the one ``voc_reader.py`` reads). The reader stores an XML value ``v`` as the
normalised ``v / size`` and the toolkit's pixel boxes are ``normalised * size``, so a pixel box
``[ymin, xmin, ymax, xmax]`` (continuous, the frame of the detector and the evaluator) IS the
XML's frame: the XML holds its values rounded to integers, kept inside VOC's 1-based range
(``1 <= xmin < xmax <= width``, the same for y). Reading such an XML back gives the pixel box
within one pixel (half a pixel of rounding; a box touching the left or top border moves to 1).
"""
import xml.etree.ElementTree as ElementTree

import numpy as np


def voc_box(box, height, width):
    """``box`` ``[ymin, xmin, ymax, xmax]`` in pixels of a ``height x width`` image → the XML's
    ``(xmin, ymin, xmax, ymax)`` integers, 1-based, each side at least one pixel long."""
    ymin, xmin, ymax, xmax = (float(value) for value in np.asarray(box, np.float64))

    def side(low, high, size):
        low = int(min(max(round(low), 1), size - 1))
        return low, int(min(max(round(high), low + 1), size))
    xmin, xmax = side(xmin, xmax, width)
    ymin, ymax = side(ymin, ymax, height)
    return xmin, ymin, xmax, ymax


def annotation_xml(filename, height, width, objects, folder=None, database=None):
    """The annotation text of one image: ``<filename>``, ``<size>`` (width, height, depth 3) and
    one ``<object>`` per ``(class name, (xmin, ymin, xmax, ymax))`` of ``objects`` (XML integers,
    see ``voc_box``) with ``<difficult>0``. ``folder`` and ``database`` (``<source>``) are
    written when given."""
    root = ElementTree.Element('annotation')
    if folder is not None:
        ElementTree.SubElement(root, 'folder').text = folder
    ElementTree.SubElement(root, 'filename').text = filename
    if database is not None:
        source = ElementTree.SubElement(root, 'source')
        ElementTree.SubElement(source, 'database').text = database
    size = ElementTree.SubElement(root, 'size')
    for tag, value in (('width', width), ('height', height), ('depth', 3)):
        ElementTree.SubElement(size, tag).text = str(int(value))
    ElementTree.SubElement(root, 'segmented').text = '0'
    for name, box in objects:
        node = ElementTree.SubElement(root, 'object')
        for tag, text in (('name', name), ('pose', 'Unspecified'), ('truncated', '0'),
                          ('difficult', '0')):
            ElementTree.SubElement(node, tag).text = text
        bndbox = ElementTree.SubElement(node, 'bndbox')
        for tag, value in zip(('xmin', 'ymin', 'xmax', 'ymax'), box):
            ElementTree.SubElement(bndbox, tag).text = str(int(value))
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding='unicode') + '\n'


def detections_xml(filename, height, width, boxes, classes, class_names):
    """``annotation_xml`` of detections: ``boxes [D, 4]`` pixels ``[ymin, xmin, ymax, xmax]``,
    ``classes [D]`` ids 1..N naming ``class_names[id - 1]``."""
    objects = [(class_names[int(label) - 1], voc_box(box, height, width))
               for box, label in zip(np.asarray(boxes).reshape(-1, 4), classes)]
    return annotation_xml(filename, height, width, objects)
