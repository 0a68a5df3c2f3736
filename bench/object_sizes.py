"""Object sizes and anchor coverage per class and split: does the training set look like val?

    python bench/object_sizes.py --tfrecords_dir=DIR [--splits=train,val] [--match_threshold=0.5]
        [--crops_dir=DIR]

Reads every record of the splits (``dataset_description.json`` of ``--tfrecords_dir`` names the
classes) and prints, per class: objects, the median side (the square root of the box area, as a
fraction of the image side), the share of small objects (side below ``SMALL_SIDE``), the median
IoU of an object's best SSD300 anchor, the share of objects whose best anchor stays below
``--match_threshold`` (they are matched to that one anchor only) and the feature layer of the best
anchor (block4 is the 38x38 layer of the smallest anchors). A class whose objects are large in
train and small in val is what SSD's zoom-out augmentation is for; objects no anchor reaches are
what the anchor sizes are for. With ``--crops_dir`` it also draws each class's objects of each
split side by side (``<class>_<split>.png``): a class whose train and val objects are different
things (lorries in train, pickups in val) is what no augmentation fixes.
"""
import collections
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402

from bench import common  # noqa: E402
from datasets import records  # noqa: E402
from nets import anchors as anchors_lib  # noqa: E402
from nets import ssd_params  # noqa: E402
from utils import boxes as boxes_lib  # noqa: E402
from utils import cli  # noqa: E402
from utils import error_breakdown  # noqa: E402
from utils import ssd_defaults  # noqa: E402
from utils import visualization  # noqa: E402

SMALL_SIDE = error_breakdown.SIZE_BUCKETS[0][1]   # the evaluator's small objects: side < 0.1
PARAMS = ssd_params.SSD300_PARAMS

ClassSizes = collections.namedtuple(
    'ClassSizes', 'name objects median_side small_share median_best_iou unmatched_share layers')
ClassSizes.__doc__ = """One class of one split: ``objects``, ``median_side`` (sqrt of the
normalised box area), ``small_share`` (side < SMALL_SIDE), ``median_best_iou`` (of each object
with its best anchor), ``unmatched_share`` (best IoU < the match threshold) and ``layers``
(objects per feature layer of their best anchor, in ``feat_layers`` order)."""


def anchor_layers(params):
    """(anchor boxes [M, 4] normalised ``[ymin, xmin, ymax, xmax]``, feature-layer index [M])."""
    layers = anchors_lib.anchors_all_layers(params)
    layer_index = np.concatenate([np.full(anchors_lib.anchor_grid(layer)[0].size, i)
                                  for i, layer in enumerate(layers)])
    return anchors_lib.flat_anchor_boxes(layers), layer_index


def best_anchors(boxes, anchor_boxes):
    """(best IoU [N], index of the best anchor [N]) of ``boxes`` [N, 4] against ``anchor_boxes``."""
    overlaps = boxes_lib.iou(boxes, anchor_boxes)
    return overlaps.max(axis=1), overlaps.argmax(axis=1)


def class_sizes(name, boxes, anchor_boxes, layer_index, match_threshold, num_layers):
    """``ClassSizes`` of one class's ``boxes`` [N, 4] (normalised, N >= 1)."""
    sides = error_breakdown.relative_side(boxes)
    best_iou, best = best_anchors(boxes, anchor_boxes)
    return ClassSizes(name, len(boxes), float(np.median(sides)), float(np.mean(sides < SMALL_SIDE)),
                      float(np.median(best_iou)), float(np.mean(best_iou < match_threshold)),
                      np.bincount(layer_index[best], minlength=num_layers).tolist())


def split_boxes(tfrecords_dir, files):
    """{label: boxes [N, 4]} of every object in the shards ``files`` of ``tfrecords_dir``."""
    per_label = collections.defaultdict(list)
    for name in files:
        for _, raw in records.iter_records(os.path.join(tfrecords_dir, name)):
            parsed = records.parse_proto(raw)
            for box, label in zip(parsed['bboxes'], parsed['labels']):
                per_label[int(label)].append(box)
    return {label: np.asarray(boxes, np.float32) for label, boxes in per_label.items()}


def save_crops(tfrecords_dir, split, files, class_names, crops_dir, limit):
    """Writes ``<crops_dir>/<class>_<split>.png``: the first ``limit`` objects of each class in
    the shards ``files`` (record order), each captioned with its side and width in pixels.
    Returns the paths written."""
    crops = collections.defaultdict(list)
    for name in files:
        for _, raw in records.iter_records(os.path.join(tfrecords_dir, name)):
            parsed = records.parse_proto(raw)
            wanted = [i for i, label in enumerate(parsed['labels'])
                      if len(crops[int(label)]) < limit]
            if not wanted:
                continue
            image = np.asarray(PIL.Image.open(io.BytesIO(parsed['encoded'])).convert('RGB'))
            height, width = image.shape[:2]
            for i in wanted:
                box = parsed['bboxes'][i] * [height, width, height, width]
                side = error_breakdown.relative_side(parsed['bboxes'][i:i + 1])[0]
                crops[int(parsed['labels'][i])].append((visualization.crop_box(image, box),
                                                        '%.2f, %d px' % (side, box[3] - box[1])))
    paths = []
    for label, items in sorted(crops.items()):
        class_name = class_names[label - 1]
        path = os.path.join(crops_dir, visualization.safe_filename(
            '%s_%s.png' % (class_name, split)))
        paths.append(visualization.save_crop_sheet(
            path, [crop for crop, _ in items], [caption for _, caption in items],
            '%s, %s split: first %d objects (side = sqrt(box area / image area), width)'
            % (class_name, split, len(items))))
    return paths


def markdown_table(sizes_by_split, params):
    """Lines of one table: a row per (class, split)."""
    layers = ', '.join(params.feat_layers)
    lines = ['| class | split | objects | median side | side < %.1f | median best-anchor IoU | '
             'best IoU < threshold | best anchor per layer (%s) |' % (SMALL_SIDE, layers),
             '|---|---|---|---|---|---|---|---|']
    rows = sorted(((sizes.name, split, sizes) for split, table in sizes_by_split.items()
                   for sizes in table), key=lambda row: (row[0], row[1]))
    for name, split, sizes in rows:
        lines.append('| %s | %s | %d | %.2f | %.0f %% | %.2f | %.0f %% | %s |' % (
            name, split, sizes.objects, sizes.median_side, 100 * sizes.small_share,
            sizes.median_best_iou, 100 * sizes.unmatched_share,
            ' / '.join(str(n) for n in sizes.layers)))
    return lines


def measure(tfrecords_dir, splits, match_threshold, params=PARAMS):
    """{split: [ClassSizes per class present]} of ``tfrecords_dir``."""
    class_names, files = common.tfrecords_splits(tfrecords_dir, splits, '--splits')
    anchor_boxes, layer_index = anchor_layers(params)
    result = collections.OrderedDict()
    for split in splits:
        result[split] = [class_sizes(class_names[label - 1], boxes, anchor_boxes, layer_index,
                                     match_threshold, len(params.feat_layers))
                         for label, boxes in sorted(split_boxes(tfrecords_dir,
                                                                files[split]).items())]
    return result


def define_flags():
    """The script's flags (a ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Data')
    common.tfrecords_dir_flag(flag_set)
    flag_set.string_list('splits', ['train', 'val'], 'Splits to compare, comma-separated.')
    flag_set.group('Pictures')
    flag_set.string('crops_dir', None, 'Also write <class>_<split>.png here: the objects of each '
                    'class cropped side by side, to see whether train and val show the same '
                    'things.')
    flag_set.integer('crops_per_sheet', 60, 'Objects per class and split on a crops sheet.')
    flag_set.group('Anchors')
    flag_set.float('match_threshold', ssd_defaults.MATCH_THRESHOLD,
                   "IoU from which an anchor is a positive (the trainer's --match_threshold).")
    return flag_set


def _run(options):
    if not options.tfrecords_dir:
        raise cli.UsageError('--tfrecords_dir is required')
    if options.crops_per_sheet < 1:
        raise cli.UsageError('--crops_per_sheet must be >= 1, got %d' % options.crops_per_sheet)
    class_names, files = common.tfrecords_splits(options.tfrecords_dir, options.splits,
                                                 '--splits')
    sizes_by_split = measure(options.tfrecords_dir, options.splits, options.match_threshold)
    for split, table in sizes_by_split.items():
        for sizes in table:
            common.report('object_median_side.%s.%s' % (split, sizes.name), sizes.median_side,
                          'of image side', '%d objects, %.0f %% below %.1f' % (
                              sizes.objects, 100 * sizes.small_share, SMALL_SIDE))
    print('\n'.join(markdown_table(sizes_by_split, PARAMS)))
    if options.crops_dir:
        os.makedirs(options.crops_dir, exist_ok=True)
        for split in options.splits:
            for path in save_crops(options.tfrecords_dir, split, files[split], class_names,
                                   options.crops_dir, options.crops_per_sheet):
                print('crops: %s' % path)
    return 0


main = cli.make_main(__doc__, define_flags, _run)


if __name__ == '__main__':
    sys.exit(main())
