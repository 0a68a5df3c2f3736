"""``--class_weights``: how much each class's cross-entropy counts in the SSD loss.

    ''                   every class 1 (the paper's loss)
    balanced             n_objects / (n_classes * n_objects_of_class), over the training split's
                         objects (scikit-learn's "balanced"): a class with half the average
                         count weighs 2, and the weights average 1 over the objects
    Truck=3,Bus=2        named classes, the others 1

The background (the mined negatives) keeps weight 1. Resolved once, before the graph is built,
into ``num_classes`` floats for ``nets.ssd_losses`` (index 0: the background).
"""
import collections
import math
import os

from datasets import records
from utils import cli

BALANCED = 'balanced'


def parse(text, class_names):
    """``{class name: weight}`` of a ``name=weight`` list, or ``BALANCED``, or ``{}`` for ''.
    ``cli.UsageError`` (one line naming the flag) for an unknown class or a weight that is not a
    positive number."""
    text = (text or '').strip()
    if text == BALANCED:
        return BALANCED
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(','))):
        name, _, value = item.partition('=')
        name = name.strip()
        if name not in class_names:
            raise cli.UsageError('--class_weights=%s: unknown class %r (classes: %s)'
                                 % (text, name, ', '.join(class_names)))
        try:
            weight = float(value)
        except ValueError:
            weight = 0.
        if not (weight > 0 and math.isfinite(weight)):
            raise cli.UsageError('--class_weights=%s: %r needs a positive, finite weight '
                                 '(name=weight, or %s)' % (text, item, BALANCED))
        weights[name] = weight
    return weights


def balanced(objects_per_class, class_names):
    """``{class name: weight}``: total / (classes present * count) for each class present; a
    class without training objects gets 1 (it is never a target)."""
    present = [name for name in class_names if objects_per_class.get(name, 0) > 0]
    total = sum(objects_per_class[name] for name in present)
    return {name: total / (len(present) * objects_per_class[name]) if name in present else 1.
            for name in class_names}


def count_objects(spec):
    """``Counter`` of class name → objects in the split's records (``spec``: a DatasetSpec),
    past its ``skipped_records``; a corrupt record not listed there raises CorruptRecordError."""
    skipped = {(os.path.abspath(fault.shard), fault.index) for fault in spec.skipped_records}
    names = spec.labels_to_names
    counts = collections.Counter()
    for path in spec.data_sources:
        try:
            for index, raw in records.iter_records(path):
                if (os.path.abspath(path), index) not in skipped:
                    counts.update(names.get(int(label), 'class_%d' % label)
                                  for label in records.parse_proto(raw)['labels'])
        except records.CorruptRecordError as error:
            if (os.path.abspath(path), error.fault.index) not in skipped:
                raise
    return counts


def resolve(text, spec, num_classes):
    """``(weights, line)``: ``num_classes`` floats for the loss (index 0: background) and a log
    line, or ``(None, None)`` when every class weighs 1."""
    class_names = list(spec.class_names)
    weights = parse(text, class_names)
    source = ''
    if weights == BALANCED:
        counts = count_objects(spec)
        weights = balanced(counts, class_names)
        source = ' (%s over %d training objects)' % (BALANCED, sum(counts.values()))
    if not weights:
        return None, None
    per_class = [weights.get(name, 1.) for name in class_names]
    line = 'class weights%s: %s' % (source, ', '.join(
        '%s %.2f' % item for item in zip(class_names, per_class)))
    return [1.] + (per_class + [1.] * num_classes)[:num_classes - 1], line
