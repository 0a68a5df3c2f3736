"""The markdown of the fine-tuning benchmark (``bench/bench_finetune.py``): its figure lines and
its parts of this machine's section of ``bench/REPORT.md``.

- the ablation table (``ABLATION_SECTION``): one row per run and CPU (``ablation_row``, kept by
  ``write_ablation_row``, rows of other runs and dates kept), and how far the seeds of the same
  factors spread (``seed_spread``);
- for the recipe run, its section (``RECIPE_SECTION``): AP per class, the evaluator's error
  breakdown at the detector's threshold (``breakdown_section``) and the objects' sizes against
  the anchors (``bench/object_sizes.py``).

``results`` is the evaluator's ``results.json`` content (``model/evaluation.py``).
"""
import datetime
import os
import re

from bench import common
from bench import object_sizes
from datasets.utils import dataset_utils
from utils import cpu_features
from utils import error_breakdown

MIN_OBJECTS = 5   # val objects a class needs before its AP says much
ABLATION_SECTION = 'Fine-tuning ablation'
ABLATION_HEADER = ['run (factors changed)', 'steps', 'train min', 'CPU (bfloat16 instructions)',
                   'date', 'mAP@0.5 VOC07', 'mAP@0.5, classes with >= %d val objects'
                   % MIN_OBJECTS, 'COCO mAP@[.5:.95]', 'AP@0.5 VOC07 per class']
RECIPE_SECTION = 'Fine-tuning on real vehicles'


def counted_classes(results):
    """Names of the classes with at least ``MIN_OBJECTS`` val objects (their AP says something)."""
    return sorted(name for name, entry in results['classes'].items()
                  if entry['num_positives'] >= MIN_OBJECTS)


def scored_classes(results):
    """``[(name, entry)]`` of the classes with val objects (the others have no AP), by name."""
    return sorted((name, entry) for name, entry in results['classes'].items()
                  if entry['ap_voc07'] is not None)


def mean_ap(results, names):
    return sum(results['classes'][n]['ap_voc07'] for n in names) / max(len(names), 1)


def machine():
    """'AMD EPYC 9R14 (AVX512_BF16)': the CPU model and its bfloat16 instructions."""
    return '%s (%s)' % (common.this_machine().cpu, cpu_features.bfloat16_description())


def ablation_row(name, results, step, minutes, today):
    """The run's cells of the ablation table (``ABLATION_HEADER``)."""
    counted = counted_classes(results)
    coco = results.get('map_coco')
    return [name, str(step), '%.0f' % minutes, machine(), today,
            '%.3f' % results['map_voc07'],
            '%.3f (%s)' % (mean_ap(results, counted), ', '.join(counted)),
            '%.3f' % coco if coco is not None else '-',
            ', '.join('%s %.2f' % (class_name, entry['ap_voc07'])
                      for class_name, entry in scored_classes(results))]


def table_rows(section_text):
    """The rows (lists of cells) of the markdown table in ``section_text``, header excluded."""
    rows = [[cell.strip() for cell in line.strip()[1:-1].split('|')]
            for line in (section_text or '').splitlines() if line.startswith('| ')]
    return [row for row in rows[1:] if row != ABLATION_HEADER]


def seed_spread(rows):
    """Lines saying how far the mAP, and the mean AP of the counted classes, move between seeds
    of the same factors (the recipe's, or any other run's), per CPU and step count."""
    groups = {}
    for row in rows:
        factors = re.sub(r'(^|_)seed-\d+', '', row[0]) or 'recipe'
        counted_mean, _, counted = row[6].partition(' ')
        groups.setdefault((factors, row[3], row[1], counted.strip('()')), []).append(
            (float(row[5]), float(counted_mean)))
    return ['Seed spread of %s (%s, %s steps, %d seeds): mAP@0.5 %.3f to %.3f; %s %.3f to %.3f.'
            % ('the recipe' if factors == 'recipe' else factors, cpu, steps, len(maps),
               min(m for m, _ in maps), max(m for m, _ in maps), counted,
               min(c for _, c in maps), max(c for _, c in maps))
            for (factors, cpu, steps, counted), maps in sorted(
                groups.items(), key=lambda item: (item[0][0] != 'recipe',) + item[0])
            if len(maps) > 1]


def data_text(data_dir, tfrecords_dir):
    """The data a run saw, e.g. ```vehicles_openimages` (train 565, val 63)``."""
    splits = (dataset_utils.read_description(tfrecords_dir) or {'splits': {}})['splits']
    return '`%s` (%s)' % (os.path.basename(os.path.normpath(data_dir)), ', '.join(
        '%s %d' % (split, splits[split]['num_samples']) for split in ('train', 'val')
        if split in splits))


def write_ablation_row(report_path, row, data, batch_size):
    """Puts ``row`` into the ablation table of ``report_path``: replaces the row of the same run
    and CPU, keeps every other. ``data``: the ``data_text`` of the runs; ``batch_size``: the
    recipe's."""
    section = common.read_report(report_path)[1].get(common.machine_key(common.this_machine()))
    earlier = table_rows(section.parts.get(ABLATION_SECTION) if section else None)
    rows = [r for r in earlier if (r[0], r[3]) != (row[0], row[3])] + [row]
    lines = ['`python bench/bench_finetune.py [factors]` on %s (val mAP). Each run fine-tunes '
             'from the conv-only ImageNet VGG-16 with the README recipe, the factors in its name '
             'changed; batch %d. Rows of several dates are kept.' % (data, batch_size), '',
             '| %s |' % ' | '.join(ABLATION_HEADER),
             '|' + '---|' * len(ABLATION_HEADER)]
    lines += ['| %s |' % ' | '.join(r) for r in rows]
    spread = seed_spread(rows)
    common.write_report_section(report_path, ABLATION_SECTION, lines + ([''] + spread if spread
                                                                         else []))


def breakdown_section(breakdown, class_names):
    """Markdown lines: where the val objects of ``class_names`` and their detections went at the
    detector's threshold (the evaluator's error breakdown)."""
    lines = ['Where the val objects and the detections went at score >= %g, the detector\'s '
             "threshold (the evaluator's error breakdown; side = sqrt(box area / image area), "
             'small < %g, medium < %g):' % (breakdown['score_threshold'],
                                             error_breakdown.SIZE_BUCKETS[0][1],
                                             error_breakdown.SIZE_BUCKETS[1][1]), '',
             '| class | objects | found | wrong class (called) | poor box | missed | '
             'recall small / medium / large (objects) |', '|---|---|---|---|---|---|---|']
    for name in class_names:
        entry = breakdown['classes'][name]
        lines.append('| %s | %d | %d | %s | %d | %d | %s |' % (
            name, entry['objects'], entry['found'],
            error_breakdown.counts_text(entry['wrong_class'], entry['called']),
            entry['poor_box'], entry['missed'], error_breakdown.recall_text(entry)))
    lines += ['', '| class | detections | correct | duplicate | on another class\'s object | '
              'poor box | background |', '|---|---|---|---|---|---|---|']
    for name in class_names:
        kinds, on_objects_of = (breakdown['classes'][name][key]
                                for key in ('detections', 'on_objects_of'))
        lines.append('| %s | %d | %d | %d | %s | %d | %d |' % (
            name, kinds['kept'], kinds['correct'], kinds['duplicate'],
            error_breakdown.counts_text(kinds['other_object'], on_objects_of), kinds['poor_box'],
            kinds['background']))
    return lines


def recipe_section(options, results, step, minutes, tfrecords_dir, trainer_flags):
    """The per-class section of the recipe run (``lines``), with its ``trainer_flags`` and the
    sizes of the objects of train and val against the anchors."""
    note = 'step %d of %d, %.0f min of training on %s' % (step, options.max_number_of_steps,
                                                          minutes, machine())
    lines = ['Fine-tuning of the full-width SSD300 from `%s` on %s, `python '
             'bench/bench_finetune.py`: %s.' % (os.path.basename(options.pre_trained_path),
                                                data_text(options.data_dir, tfrecords_dir), note),
             '',
             'Recipe: `%s`' % ' '.join(r for r in trainer_flags
                                       if not r.startswith('--trainable') and
                                       not r.endswith('=')),   # an empty flag is the default
             ' with conv1–conv3 frozen.', '',
             '| class | objects | AP@0.5 VOC07 | AP@0.5 VOC10+ |', '|---|---|---|---|']
    for name, entry in scored_classes(results):
        lines.append('| %s | %d | %.3f | %.3f |' % (name, entry['num_positives'],
                                                    entry['ap_voc07'], entry['ap_voc2010']))
    lines.append('| **mAP** | | **%.3f** | **%.3f** |' % (results['map_voc07'],
                                                        results['map_voc2010']))
    counted = counted_classes(results)
    lines += ['', 'Over the classes with at least %d val objects (%s) the VOC07 mAP is %.3f; '
              'the others have too few val objects for their AP to say much.'
              % (MIN_OBJECTS, ', '.join(counted), mean_ap(results, counted)), '']
    lines += breakdown_section(results['breakdown'], counted) + ['',
              'The objects against the anchors (`python bench/object_sizes.py '
              '--tfrecords_dir=<results_dir>/tfrecords`; side = square root of the box area, as a '
              'fraction of the image side):', '']
    return lines + object_sizes.markdown_table(
        object_sizes.measure(tfrecords_dir, ['train', 'val'], options.match_threshold),
        object_sizes.PARAMS)


def report(options, name, results, step, minutes, tfrecords_dir, trainer_flags, batch_size):
    """Prints the figures of run ``name`` (``options``: bench_finetune.py's flags) and writes
    them into the report: its ablation row and, for the recipe, the recipe's section
    (``trainer_flags``: the recipe's flags as the trainer got them; ``batch_size``: its
    batch)."""
    note = '%s, step %d of %d, %.0f min of training' % (name, step, options.max_number_of_steps,
                                                        minutes)
    common.report('finetune_steps', step, 'steps', note)
    common.report('finetune_train_minutes', minutes, 'min', note)
    common.report('finetune_map_voc07', results['map_voc07'], 'mAP@0.5', 'val split, ' + note)
    common.report('finetune_map_voc2010', results['map_voc2010'], 'mAP@0.5', 'val split, ' + note)
    counted = counted_classes(results)
    common.report('finetune_map_voc07_classes_with_%d_objects' % MIN_OBJECTS,
                  mean_ap(results, counted), 'mAP@0.5', '%s; %s' % (', '.join(counted), note))
    for class_name, entry in scored_classes(results):
        common.report('finetune_ap07_%s' % class_name, entry['ap_voc07'], 'AP@0.5',
                      '%d val objects; %s' % (entry['num_positives'], note))
    if options.report:
        write_ablation_row(options.report, ablation_row(
            name, results, step, minutes, datetime.date.today().isoformat()),
            data_text(options.data_dir, tfrecords_dir), batch_size)
        if name == 'recipe':
            common.write_report_section(options.report, RECIPE_SECTION,
                                        recipe_section(options, results, step, minutes,
                                                       tfrecords_dir, trainer_flags))
