"""TensorBoard summaries of one evaluation, beside the training ones: ``<train_dir>/eval_<split>/``
(TensorBoard shows it as the run ``eval_<split>`` next to the training run ``.``).

At the global step of the evaluated checkpoint:
- scalars ``mAP@0.5/VOC07``, ``mAP@0.5/VOC10+``, ``mAP@0.5/COCO``, ``mAP@0.75/COCO``,
  ``mAP@[.5:.95]/COCO``, per class ``AP@0.5_VOC07/<class>`` and ``AP@[.5:.95]_COCO/<class>``,
  and ``recall_by_size/<class>/<small|medium|large>``: the share of the class's objects of that
  size found at the detector's threshold (``utils/error_breakdown.py``);
- a precision-recall curve per class (PR-curve plugin, ``PR/<class>``): precision and recall of
  the detections scoring at least each of ``PR_CURVE_THRESHOLDS`` thresholds evenly spaced in
  [0, 1], counted against the class's positives at IoU 0.5 (true negatives do not exist for
  detection and are written as 0);
- images ``detections/<image>``: the ground truth (left) beside the detections scoring at least
  ``DRAWN_MIN_SCORE`` (right).
"""
import os
import time

import numpy as np
import tensorflow.compat.v1 as tf
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.pr_curve import summary as pr_curve_summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from datasets import records
from utils import visualization

SUMMARY_DIR_PREFIX = 'eval_'
PR_CURVE_THRESHOLDS = 101
DRAWN_MIN_SCORE = 0.5
DRAWN_MAX_SIDE = 480   # pixels of each half of a summary image


def summary_dir(train_dir, split_name):
    """``<train_dir>/eval_<split_name>``."""
    return os.path.join(train_dir, SUMMARY_DIR_PREFIX + split_name)


def scalars(results):
    """``[(tag, value)]`` of the evaluation's mAPs and per-class APs (None values left out)."""
    values = [('mAP@0.5/VOC07', results['map_voc07']), ('mAP@0.5/VOC10+', results['map_voc2010']),
              ('mAP@0.5/COCO', results['map_coco_50']), ('mAP@0.75/COCO', results['map_coco_75']),
              ('mAP@[.5:.95]/COCO', results['map_coco'])]
    for name, entry in results['classes'].items():
        values += [('AP@0.5_VOC07/%s' % name, entry['ap_voc07']),
                   ('AP@[.5:.95]_COCO/%s' % name, entry['ap_coco'])]
    for name, entry in results.get('breakdown', {'classes': {}})['classes'].items():
        values += [('recall_by_size/%s/%s' % (name, bucket), size['found'] / float(size['objects']))
                   for bucket, size in entry['by_size'].items() if size['objects']]
    return [(tag, value) for tag, value in values if value is not None]


def pr_curve_counts(entry, num_thresholds=PR_CURVE_THRESHOLDS):
    """TP, FP, TN, FN counts, precision and recall (each ``[num_thresholds]`` float64) of one
    class's ``VOCMetric.evaluate()`` entry at score thresholds ``k / (num_thresholds - 1)``
    (a detection counts at a threshold when its score is at least the threshold)."""
    scores, recall = entry['scores'], entry['recall']
    positives = entry['num_positives']
    thresholds = np.arange(num_thresholds) / (num_thresholds - 1.)   # k/(n-1), nearest floats
    # Scores are in descending order: the first k detections pass threshold t.
    passing = np.searchsorted(-scores, -thresholds, side='right')
    tp_after = np.concatenate(([0.], np.round(recall * positives)))
    tp = tp_after[passing]
    fp = passing - tp
    return {'true_positive_counts': tp, 'false_positive_counts': fp,
            'true_negative_counts': np.zeros(num_thresholds),
            'false_negative_counts': positives - tp,
            'precision': tp / np.maximum(tp + fp, 1.), 'recall': tp / float(positives)}


def _image_summary(tag, pixels):
    return tf.Summary.Value(tag=tag, image=tf.Summary.Image(
        height=pixels.shape[0], width=pixels.shape[1], colorspace=3,
        encoded_image_string=visualization.encode_png(pixels)))


def side_by_side(kept, class_names, min_score=DRAWN_MIN_SCORE, max_side=DRAWN_MAX_SIDE):
    """uint8 ``[H, W, 3]``: an ``Evaluation.images`` item's ground truth beside its detections
    scoring at least ``min_score``."""
    drawn = kept['scores'] >= min_score
    halves = [visualization.detections_figure(kept['pixels'], kept['gt_boxes'], kept['gt_labels'],
                                              None, class_names, 'ground truth', max_side),
              visualization.detections_figure(kept['pixels'], kept['boxes'][drawn],
                                              kept['classes'][drawn], kept['scores'][drawn],
                                              class_names, 'detections >= %.2f' % min_score,
                                              max_side)]
    pixels = [visualization.figure_pixels(figure) for figure in halves]
    height = max(p.shape[0] for p in pixels)
    return np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0)))
                           for p in pixels], axis=1)


def evaluation_summary(results, kept_images=(), class_names=()):
    """The ``tf.Summary`` of one evaluation (``DetectionMetrics.evaluate()`` results and
    ``Evaluation.images``)."""
    summary = tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=value)
                                for tag, value in scalars(results)])
    for name, entry in results['classes'].items():
        if entry['num_positives'] > 0:
            summary.MergeFrom(pr_curve_summary.raw_data_pb(
                'PR/%s' % name, num_thresholds=PR_CURVE_THRESHOLDS, display_name='PR %s' % name,
                description='Precision-recall of %s at IoU 0.5 against the score threshold'
                            % name, **pr_curve_counts(entry)))
    for kept in kept_images:
        summary.value.extend([_image_summary('detections/%s' % kept['image'],
                                             side_by_side(kept, class_names))])
    return summary


def read_scalars(directory, tags):
    """``{tag: [(step, value)]}`` of the scalar summaries ``tags`` in the event files of
    ``directory`` (e.g. ``summary_dir(train_dir, 'val')``), in step order; the last value written
    at a step wins (an evaluation repeated after a resume). Tags never written map to ``[]``."""
    series = {tag: {} for tag in tags}
    for path in sorted(tf.gfile.Glob(os.path.join(directory, 'events.out.tfevents.*'))):
        for _, raw in records.iter_records(path):   # event files are TFRecord-framed
            event = event_pb2.Event.FromString(raw)
            for value in event.summary.value:
                if value.tag in series and value.HasField('simple_value'):
                    series[value.tag][event.step] = value.simple_value
    return {tag: sorted(points.items()) for tag, points in series.items()}


class SummaryWriter(object):
    """Appends evaluation summaries to a new event file in ``directory``."""

    def __init__(self, directory):
        self._writer = EventFileWriter(directory)

    def write(self, step, summary):
        """Writes ``summary`` (a ``tf.Summary``) at global ``step`` and flushes it."""
        self._writer.add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step),
            summary=summary_pb2.Summary.FromString(summary.SerializeToString())))
        self._writer.flush()

    def close(self):
        self._writer.close()
