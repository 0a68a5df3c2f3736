"""The evaluator's errors as pictures: per class, the wrong detections that score highest and the
objects it did not find, cropped from the images.

    python bench/error_crops.py --detections_file=output/eval/detections.json \
        --tfrecords_dir=Images/tfrecords --split=val [--score_threshold=0.5] \
        [--output_dir=output/error_crops] [--per_sheet=50]

``--detections_file`` is what eval_ssd_network.py writes beside results.json (or detector.py
--json on the same images); ``--tfrecords_dir`` and ``--split`` the records it was scored on.
The kinds and outcomes are the evaluator's error breakdown (``utils/error_breakdown.py``) at
``--score_threshold``. Writes into ``--output_dir``, per class:

- ``<class>_detections.png``: its kept detections that are not correct (duplicate, on another
  class's object, poor box, background), highest score first, captioned with score and kind.
  Background detections that show a vehicle are objects the annotators left out: they lower the
  AP without the detector being wrong.
- ``<class>_objects.png``: its objects not found (wrong class, poor box, missed), in record
  order, captioned with the outcome and the side (``sqrt(box area / image area)``).
"""
import collections
import heapq
import io
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402

from bench import common  # noqa: E402
from datasets import records  # noqa: E402
from utils import cli  # noqa: E402
from utils import error_breakdown  # noqa: E402
from utils import visualization  # noqa: E402
from utils import voc_metric  # noqa: E402

MARGIN = 4   # pixels of context around each crop
KIND_NAMES = {'duplicate': 'duplicate', 'other_object': 'on %s', 'poor_box': 'poor box',
              'background': 'background'}
OUTCOME_NAMES = {'wrong_class': 'called %s', 'poor_box': 'poor box', 'missed': 'missed'}


def _records(tfrecords_dir, split):
    """(class names, iterator of the parsed records of ``split``)."""
    class_names, files = common.tfrecords_splits(tfrecords_dir, [split], '--split')
    return class_names, (records.parse_proto(raw) for name in files[split]
                         for _, raw in records.iter_records(os.path.join(tfrecords_dir, name)))


class ErrorCrops(object):
    """Collects, per class, the ``per_sheet`` highest-scored wrong detections and the first
    ``per_sheet`` objects not found, image by image."""

    def __init__(self, class_names, score_threshold, per_sheet):
        self.class_names = class_names
        self.score_threshold = score_threshold
        self.per_sheet = per_sheet
        self.detections = collections.defaultdict(list)   # label -> heap of (score, n, crop, caption)
        self.objects = collections.defaultdict(list)      # label -> [(crop, caption)]
        self._order = itertools.count()   # breaks score ties in the heaps

    def _name(self, label):
        return self.class_names[label - 1]

    def _wanted(self, label, score):
        heap = self.detections[label]
        return len(heap) < self.per_sheet or score > heap[0][0]

    def add(self, image_bytes, gt_boxes, gt_labels, gt_difficult, det_boxes, det_scores,
            det_labels):
        """One image: its encoded bytes, ground truth and detections in pixels."""
        kept = det_scores >= self.score_threshold
        boxes, scores, labels = det_boxes[kept], det_scores[kept], det_labels[kept]
        outcomes = error_breakdown.image_outcomes(gt_boxes, gt_labels, gt_difficult, boxes,
                                                  labels, scores,
                                                  voc_metric.DEFAULT_IOU_THRESHOLD)
        correct = error_breakdown.DETECTION_KINDS.index('correct')
        wrong = [i for i in range(len(scores)) if outcomes.kind[i] not in (-1, correct) and
                 self._wanted(labels[i], scores[i])]
        found = error_breakdown.OUTCOMES.index('found')
        unfound = [i for i in range(len(gt_labels)) if outcomes.outcome[i] != found and
                   not gt_difficult[i] and len(self.objects[gt_labels[i]]) < self.per_sheet]
        if not wrong and not unfound:
            return
        image = np.asarray(PIL.Image.open(io.BytesIO(image_bytes)).convert('RGB'))
        for i in wrong:
            kind = error_breakdown.DETECTION_KINDS[outcomes.kind[i]]
            caption = '%.2f %s' % (scores[i], KIND_NAMES[kind].replace(
                '%s', self._name(outcomes.on_class[i]) if outcomes.on_class[i] else ''))
            item = (scores[i], next(self._order), visualization.crop_box(image, boxes[i], MARGIN),
                    caption)
            heap = self.detections[labels[i]]
            (heapq.heappush if len(heap) < self.per_sheet else heapq.heappushpop)(heap, item)
        sides = error_breakdown.relative_side(gt_boxes, *image.shape[:2])
        for i in unfound:
            outcome = error_breakdown.OUTCOMES[outcomes.outcome[i]]
            caption = '%s, %.2f' % (OUTCOME_NAMES[outcome].replace(
                '%s', self._name(outcomes.called[i]) if outcomes.called[i] else ''), sides[i])
            self.objects[gt_labels[i]].append(
                (visualization.crop_box(image, gt_boxes[i], MARGIN), caption))

    def save(self, output_dir):
        """Writes the sheets; returns their paths."""
        paths = []
        for label, heap in sorted(self.detections.items()):
            items = sorted(heap, key=lambda item: (-item[0], item[1]))
            paths.append(visualization.save_crop_sheet(
                os.path.join(output_dir, visualization.safe_filename(
                    '%s_detections.png' % self._name(label))),
                [item[2] for item in items], [item[3] for item in items],
                '%s: the %d highest-scored detections >= %g that are not correct'
                % (self._name(label), len(items), self.score_threshold)))
        for label, items in sorted(self.objects.items()):
            if items:
                paths.append(visualization.save_crop_sheet(
                    os.path.join(output_dir, visualization.safe_filename(
                        '%s_objects.png' % self._name(label))),
                    [crop for crop, _ in items], [caption for _, caption in items],
                    '%s: %d objects not found at score >= %g (outcome, side)'
                    % (self._name(label), len(items), self.score_threshold)))
        return paths


def define_flags():
    """The script's flags (a ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('What was evaluated')
    flag_set.string('detections_file', None, 'The evaluator\'s detections.json (or detector.py '
                    '--json output) for the images of --split.')
    common.tfrecords_dir_flag(flag_set)
    flag_set.string('split', 'val', 'Split the detections were made on.')
    flag_set.float('score_threshold', error_breakdown.DEFAULT_SCORE_THRESHOLD,
                   "Detections kept (your detector's --select_threshold).")
    flag_set.group('Output')
    flag_set.string('output_dir', os.path.join('output', 'error_crops'),
                    'Folder for <class>_detections.png and <class>_objects.png.')
    flag_set.integer('per_sheet', 50, 'Crops per sheet.')
    return flag_set


def _run(options):
    if not options.detections_file or not options.tfrecords_dir:
        raise cli.UsageError('--detections_file and --tfrecords_dir are required')
    if not 0. <= options.score_threshold <= 1.:
        raise cli.UsageError('--score_threshold must be in [0, 1], got %g'
                             % options.score_threshold)
    if options.per_sheet < 1:
        raise cli.UsageError('--per_sheet must be >= 1, got %d' % options.per_sheet)
    class_names, parsed_records = _records(options.tfrecords_dir, options.split)
    detections, _ = voc_metric.read_detections_file(options.detections_file)
    crops = ErrorCrops(class_names, options.score_threshold, options.per_sheet)
    for parsed in parsed_records:
        name = os.path.basename(parsed['filename'])
        if name not in detections:
            raise voc_metric.MetricInputError('%s: no entry for image %s of split %s'
                                              % (options.detections_file, name, options.split))
        size = [parsed['height'], parsed['width']] * 2
        entry = detections[name]
        crops.add(parsed['encoded'], parsed['bboxes'].astype(np.float64) * size, parsed['labels'],
                  parsed['difficult'].astype(bool), entry['boxes'], entry['scores'],
                  entry['classes'])
    os.makedirs(options.output_dir, exist_ok=True)
    for path in crops.save(options.output_dir):
        print('crops: %s' % path)
    return 0


main = cli.make_main(__doc__, define_flags, _run)


if __name__ == '__main__':
    sys.exit(main())
