"""Audits the labels of a TFRecords split against a detector's predictions: the boxes most likely
wrong (a swapped class, a loose or shifted box, a box on nothing) and the objects most likely left
unboxed, ranked most suspect first.

    python audit_labels.py --dataset_dir=Images/tfrecords --dataset_name=vehicle --split=val \\
        --detections_file=output/eval/detections.json [--output_dir=output/label_audit]

``--detections_file`` must come from a model that did NOT train on ``--split``: the
evaluator's ``detections.json`` (``eval_ssd_network.py --output_dir``; run it with a low
``--select_threshold`` such as its default 0.01) or ``detector.py --json`` on the split's images.
A model audits its own training labels badly (it learnt them, errors included): to audit a
training split, predict each part of it with a model trained on the other parts (k-fold: see
scripts/kfold_splits.py, then ``--out_of_fold``). A split named like a training split gets a
warning line otherwise.

Each annotated box gets a label-quality score in [0, 1] (lower: more suspect) and a kind:
``swapped`` (the model confidently calls it another class: ``suggested_class``), ``loose`` (the
model's best same-class box overlaps it poorly), ``spurious`` (the model finds nothing there);
each confident prediction that overlaps no box is a ``missing`` row (the model's box). The scores
are cleanlab's object-detection label-issue scores (utils/label_audit.py says how they map).

Writes into ``--output_dir``: ``audit.csv`` (``rank,image_id,kind,class,suggested_class,xmin,
ymin,xmax,ymax,score``, most suspect first, boxes in the VOC XML's 1-based pixels), ``audit.json``
(the same rows, cleanlab's image scores, the settings) and ``<kind>.png`` crop sheets of the
most suspect rows of each kind; prints the top ``--top`` rows.

Exit status: 0 on success, 1 when the records or the detections file cannot be used, 2 for bad
flags.
"""
import csv
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if __name__ == '__main__':  # run as a tool: no TensorFlow C++ log lines (records are read by it)
    from utils import tf_logging
    tf_logging.quiet_tensorflow()

import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402

from datasets import dataset_factory  # noqa: E402
from datasets import records  # noqa: E402
from datasets.write_dataset import voc_writer  # noqa: E402
from utils import cli  # noqa: E402
from utils import files  # noqa: E402
from utils import label_audit  # noqa: E402
from utils import visualization  # noqa: E402
from utils import voc_metric  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402

CSV_COLUMNS = ('rank', 'image_id', 'kind', 'class', 'suggested_class', 'xmin', 'ymin', 'xmax',
               'ymax', 'score')
CROP_MARGIN = 8   # pixels of context around each crop


class AuditError(ToolkitError):
    """The records or the detections cannot be audited (one-line message, exit status 1)."""


def define_flags():
    """The audit's own flags (a ``cli.FlagSet``), theme by theme."""
    flag_set = cli.FlagSet()
    flag_set.group('Labels to audit')
    flag_set.string('dataset_dir', None, 'Folder of the TFRecords and dataset_description.json.')
    flag_set.string('dataset_name', 'vehicle', 'Dataset name (as converted).')
    flag_set.string('split', None, 'Split to audit, e.g. val. Its labels must be unseen by the '
                    'model of --detections_file.')
    flag_set.group('Predictions')
    flag_set.string('detections_file', None, 'detections.json of a model that did NOT train on '
                    '--split (eval_ssd_network.py --output_dir, or detector.py --json).')
    flag_set.string('confident_score', 'auto', 'Score from which a prediction overrules the '
                    "labels: a missing box, a swapped class (cleanlab's high-probability "
                    'threshold, 0.95 there); auto: the score from which %d %% of the '
                    'predictions find a labelled object, in [--present_score, %g].'
                    % (100 * label_audit.AGREEMENT, label_audit.CONFIDENT_SCORE))
    flag_set.boolean('out_of_fold', False, 'The detections are k-fold predictions (each image '
                     'predicted by a model trained on the other folds, scripts/kfold_splits.py): '
                     'no warning for a training split.')
    flag_set.float('present_score', label_audit.PRESENT_SCORE, 'Score from which a same-class '
                   "prediction measures a box's placement (cleanlab's low-probability "
                   'threshold).')
    flag_set.group('Output')
    flag_set.string('output_dir', os.path.join('output', 'label_audit'),
                    'Folder for audit.csv, audit.json and the <kind>.png crop sheets.')
    flag_set.integer('top', 20, 'Rows printed on the terminal.')
    flag_set.integer('per_sheet', 50, 'Crops per kind sheet (the most suspect rows).')
    return flag_set


def is_training_split(split):
    """A split name that training usually reads (train, trainval, train_fold0...)."""
    return split.lower().startswith('train')


def read_split(spec):
    """The records of ``spec`` (a DatasetSpec) → list of dicts: ``image_id`` (file name without
    extension), ``name`` (file name), ``height``, ``width``, ``gt_boxes [G, 4]`` pixels,
    ``gt_labels [G]``, ``encoded`` (image bytes)."""
    images = []
    for shard in spec.data_sources:
        for _, raw in records.iter_records(shard):
            parsed = records.parse_proto(raw)
            name = os.path.basename(parsed['filename'])
            size = [parsed['height'], parsed['width']] * 2
            images.append({'image_id': os.path.splitext(name)[0], 'name': name,
                           'height': parsed['height'], 'width': parsed['width'],
                           'gt_boxes': parsed['bboxes'].astype(np.float64) * size,
                           'gt_labels': parsed['labels'], 'encoded': parsed['encoded']})
    return images


def audit_images(images, detections, path):
    """``label_audit.AuditImage`` per record, its detections from ``detections``
    (``voc_metric.read_detections_file``); ``AuditError`` naming ``path`` for an image without
    an entry or of another size."""
    audited = []
    for image in images:
        entry = detections.get(image['name'])
        if entry is None:
            raise AuditError('%s: no entry for image %s of the split (an image without '
                             'detections needs an entry with empty lists)' % (path, image['name']))
        if (entry['height'], entry['width']) != (image['height'], image['width']):
            raise AuditError('%s: image %s is %dx%d (height x width) there but %dx%d in the '
                             'records' % (path, image['name'], entry['height'], entry['width'],
                                          image['height'], image['width']))
        audited.append(label_audit.AuditImage(image['gt_boxes'], image['gt_labels'],
                                              entry['boxes'], entry['scores'], entry['classes']))
    return audited


def issue_rows(issues, images, class_names):
    """``label_audit.Issue`` list → dict rows of ``CSV_COLUMNS`` (boxes as the VOC XML holds
    them)."""
    rows = []
    for rank, issue in enumerate(issues, 1):
        image = images[issue.image_index]
        xmin, ymin, xmax, ymax = voc_writer.voc_box(issue.box, image['height'], image['width'])
        rows.append({'rank': rank, 'image_id': image['image_id'], 'kind': issue.kind,
                     'class': class_names[issue.label - 1],
                     'suggested_class': class_names[issue.suggested - 1] if issue.suggested
                     else '', 'xmin': xmin, 'ymin': ymin, 'xmax': xmax, 'ymax': ymax,
                     'score': round(issue.score, 4)})
    return rows


def format_table(rows):
    """The terminal table of ``rows``."""
    header = '%5s  %-14s %-9s %-12s %-12s %-22s %6s' % ('rank', 'image_id', 'kind', 'class',
                                                         'suggested', 'xmin,ymin,xmax,ymax',
                                                         'score')
    lines = [header]
    for row in rows:
        lines.append('%5d  %-14s %-9s %-12s %-12s %-22s %6.3f' % (
            row['rank'], row['image_id'], row['kind'], row['class'], row['suggested_class'] or '-',
            '%d,%d,%d,%d' % (row['xmin'], row['ymin'], row['xmax'], row['ymax']), row['score']))
    return '\n'.join(lines)


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def save_crop_sheets(output_dir, issues, rows, images, per_sheet):
    """``<output_dir>/<kind>.png`` per kind with rows: the ``per_sheet`` most suspect, captioned
    with rank, score and class (``> suggested`` for swapped). Returns the paths written."""
    paths = []
    for kind in label_audit.KINDS:
        chosen = [(issue, row) for issue, row in zip(issues, rows) if row['kind'] == kind]
        chosen = chosen[:per_sheet]
        if not chosen:
            continue
        crops, captions = [], []
        decoded = {}
        for issue, row in chosen:
            if issue.image_index not in decoded:
                decoded[issue.image_index] = np.asarray(PIL.Image.open(io.BytesIO(
                    images[issue.image_index]['encoded'])).convert('RGB'))
            crops.append(visualization.crop_box(decoded[issue.image_index], issue.box,
                                                CROP_MARGIN))
            captions.append('#%d  %.2f\n%s%s' % (row['rank'], row['score'], row['class'],
                                                  ' > ' + row['suggested_class']
                                                  if row['suggested_class'] else ''))
        paths.append(visualization.save_crop_sheet(
            os.path.join(output_dir, kind + '.png'), crops, captions,
            '%s: the %d most suspect (rank, score, class%s)' % (
                kind, len(chosen), ' > suggested' if kind == 'swapped' else ''),
            columns=8, cell_px=120))
    return paths


def _check_flags(options):
    for name in ('dataset_dir', 'split', 'detections_file'):
        if not getattr(options, name):
            raise cli.UsageError('--%s is required' % name)
    if not 0. <= options.present_score <= 1.:
        raise cli.UsageError('--present_score must be in [0, 1], got %g' % options.present_score)
    if options.confident_score != 'auto':
        try:
            value = float(options.confident_score)
        except ValueError:
            value = None
        if value is None or not 0. <= value <= 1.:
            raise cli.UsageError('--confident_score must be auto or a number in [0, 1], got %s'
                                 % options.confident_score)
    for name in ('top', 'per_sheet'):
        if getattr(options, name) < 1:
            raise cli.UsageError('--%s must be >= 1, got %d' % (name, getattr(options, name)))


def _run(options):
    _check_flags(options)
    spec = dataset_factory.get_dataset(options.dataset_name, options.split, options.dataset_dir)
    detections, class_names = voc_metric.read_detections_file(options.detections_file)
    if class_names is not None and list(class_names) != list(spec.class_names):
        raise AuditError('%s: class_names %s differ from dataset %s classes %s' % (
            options.detections_file, class_names, spec.dataset_name, spec.class_names))
    images = read_split(spec)
    audited = audit_images(images, detections, options.detections_file)
    num_classes = len(spec.class_names)
    confident = label_audit.confident_threshold(
        audited, floor=options.present_score) if options.confident_score == 'auto' else \
        float(options.confident_score)
    issues = label_audit.rank_issues(audited, num_classes, confident, options.present_score)
    quality, flagged = label_audit.image_quality(audited, num_classes)
    rows = issue_rows(issues, images, spec.class_names)
    warning = None
    if is_training_split(options.split) and not options.out_of_fold:
        warning = ('warning: split %s looks like a training split: audit it with predictions of '
                   'models that did not train on it (k-fold), or the model hides its own label '
                   'errors' % options.split)
        print(warning)
    try:
        os.makedirs(options.output_dir, exist_ok=True)
        files.write_text_atomically(os.path.join(options.output_dir, 'audit.csv'), csv_text(rows))
        order = np.argsort(quality, kind='stable')
        files.write_json_atomically(os.path.join(options.output_dir, 'audit.json'), {
            'dataset_name': spec.dataset_name, 'split': options.split,
            'detections_file': options.detections_file,
            'confident_score': confident, 'present_score': options.present_score,
            'warning': warning, 'columns': list(CSV_COLUMNS), 'issues': rows,
            'images': [{'image_id': images[i]['image_id'], 'quality': round(float(quality[i]), 4),
                        'flagged': bool(flagged[i])} for i in order]})
        sheets = save_crop_sheets(options.output_dir, issues, rows, images, options.per_sheet)
    except OSError as e:
        raise AuditError('--output_dir=%s: cannot write: %s' % (options.output_dir,
                                                                 e.strerror or e))
    counts = {kind: sum(row['kind'] == kind for row in rows) for kind in label_audit.KINDS}
    print('%s/%s: %d images, %d rows (%s); confident from score %.2f; cleanlab flags %d '
          'images' % (spec.dataset_name, options.split, len(images), len(rows),
                      ', '.join('%s %d' % item for item in counts.items()), confident,
                      int(flagged.sum())))
    print(format_table(rows[:options.top]))
    print('audit: %s, %s; crops: %s' % (os.path.join(options.output_dir, 'audit.csv'),
                                         os.path.join(options.output_dir, 'audit.json'),
                                         ', '.join(sheets) or 'none'))
    return 0


def main(argv=None):
    """The command line: ``main(['audit_labels.py', '--dataset_dir=...', ...])`` → exit status."""
    return cli.run(argv, define_flags(), __doc__, _run)


if __name__ == '__main__':
    sys.exit(main())
