"""Label audit benchmark on generated data: plants known label errors in a held-out split and
measures how many of them audit_labels.py ranks on top.

    python bench/bench_label_audit.py [--work_dir=output/bench_label_audit] [--noreport_results]

Each step runs the tool a user would run and is skipped when its result exists (a rerun
resumes; the trainer resumes from its last checkpoint):

1. generates ``--num_images`` vehicle images (datasets/write_dataset/sample_data.py), split
   train / test (``--test_fraction``), and converts both splits;
2. trains the demo's reduced-width SSD300 (scripts/demo.py's settings, ``--max_number_of_steps``)
   on train only;
3. evaluates it on test (``eval_ssd_network.py``): ``detections.json`` of a model that never saw
   the test labels;
4. copies the test split's annotations and plants errors (``--seed``): swaps the class of 10 %
   of the boxes, deletes 10 %, shifts 10 % by a third of their width or height, adds 5 %
   spurious boxes on empty ground; ``planted.json`` lists them; converts the copy
   (``--keep_empty_images``: an image may lose all its boxes);
5. audits the copy (``audit_labels.py``) with the detections of step 3;
6. per kind: recall among the kind's top-K rows (K = the number planted of that kind; a planted
   error is found when a row of that kind points at it: the same box, or for a deleted box a
   ``missing`` row overlapping it at IoU >= 0.5) and the expected recall of a random ranking of
   all rows (K / rows x the share of planted errors that have a row at all); the share found
   among the top rows of the whole ranking (as many as planted in all, any kind); the precision
   of the top 20 rows (rows pointing at a planted error). Writes
   ``results.json`` and, unless --noreport_results, the "Label audit" part of this machine's
   section of bench/REPORT.md.
"""
import json
import os
import shutil
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402

from bench import common  # noqa: E402
from datasets import dataset_config  # noqa: E402
from datasets.write_dataset import voc_reader  # noqa: E402
from datasets.write_dataset import voc_writer  # noqa: E402
from utils import boxes as boxes_lib  # noqa: E402
from utils import cli  # noqa: E402
from utils import files  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402

PYTHON = sys.executable
# scripts/demo.py's reduced-width model and schedule; the decay spans this run's steps.
TRAIN_SETTINGS = {
    'width_multiplier': '0.125', 'batch_size': '8', 'optimizer': 'adam',
    'learning_rate': '0.002', 'learning_rate_decay_type': 'polynomial',
    'end_learning_rate': '0.0001', 'seed': '0', 'weight_decay': '0.0001',
    'weights_initializer': 'he', 'zoom_out': 'false', 'photometric_distortion': 'false',
}
SHARES = (('swapped', 0.10), ('missing', 0.10), ('loose', 0.10))   # of the boxes, disjoint
SPURIOUS_SHARE = 0.05
MATCH_IOU = 0.5
TOP_PRECISION = 20
SPURIOUS_SIDE = (0.1, 0.3)   # side of a spurious box, share of the image side


class BenchError(ToolkitError):
    """A step failed (its output says why)."""


def define_flags():
    flag_set = cli.FlagSet()
    flag_set.group('Data and model')
    flag_set.string('work_dir', os.path.join(REPO_ROOT, 'output', 'bench_label_audit'),
                    'Folder for the data, the model, the detections and the audit.')
    flag_set.integer('num_images', 600, 'Generated images.')
    flag_set.float('test_fraction', 0.35, 'Share of them held out (audited, never trained on).')
    flag_set.integer('max_number_of_steps', 2000, 'Training steps.')
    flag_set.group('Planted errors and audit')
    flag_set.integer('seed', 0, 'Seed of the planted errors.')
    flag_set.float('confident_score', None, 'audit_labels.py --confident_score (default: its '
                   'own).')
    flag_set.group('Output')
    flag_set.string('report', os.path.join(REPO_ROOT, 'bench', 'REPORT.md'), 'Report to update.')
    flag_set.boolean('report_results', True, 'Write the table into --report '
                     '(--noreport_results: results.json only).')
    return flag_set


def run(*args, log=None):
    """Runs a tool from the repository root (its output to ``log`` or the terminal)."""
    print('$ python ' + ' '.join(os.path.relpath(a, REPO_ROOT) if a.startswith(REPO_ROOT)
                                 else a for a in args), flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    if log:
        with open(log, 'a') as out:
            result = subprocess.run([PYTHON] + list(args), cwd=REPO_ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
    else:
        result = subprocess.run([PYTHON] + list(args), cwd=REPO_ROOT, env=env)
    if result.returncode != 0:
        raise BenchError('step failed (exit %d): %s%s' % (result.returncode, ' '.join(args),
                                                          ', see ' + log if log else ''))


def _xml_box(box):
    """(xmin, ymin, xmax, ymax) → [ymin, xmin, ymax, xmax] float array."""
    return np.array([box[1], box[0], box[3], box[2]], np.float64)


def plant_errors(annotations, class_names, rng):
    """Plants the errors in ``annotations`` ({image id: voc_reader.Annotation}) →
    ``(objects {image id: [(class, (xmin, ymin, xmax, ymax))]}, planted [dicts: image_id, kind,
    box (XML), class, true_class])``; the boxes to swap, delete and shift are disjoint."""
    objects = {image_id: [(o.name, tuple(int(v) for v in o.box)) for o in a.objects]
               for image_id, a in annotations.items()}
    all_boxes = [(image_id, index) for image_id in sorted(objects)
                 for index in range(len(objects[image_id]))]
    order = rng.permutation(len(all_boxes))
    chosen, start = {}, 0
    for kind, share in SHARES:
        count = int(round(share * len(all_boxes)))
        for position in order[start:start + count]:
            chosen[all_boxes[position]] = kind
        start += count
    planted, deleted = [], set()
    for (image_id, index), kind in sorted(chosen.items()):
        name, box = objects[image_id][index]
        height, width = annotations[image_id].size
        if kind == 'swapped':
            other = [c for c in class_names if c != name][rng.randint(len(class_names) - 1)]
            objects[image_id][index] = (other, box)
            planted.append({'image_id': image_id, 'kind': kind, 'box': box, 'class': other,
                            'true_class': name})
        elif kind == 'missing':
            deleted.add((image_id, index))
            planted.append({'image_id': image_id, 'kind': kind, 'box': box, 'class': name,
                            'true_class': name})
        else:
            axis = rng.randint(2)   # 0: x, 1: y
            low, high, size = (box[0], box[2], width) if axis == 0 else (box[1], box[3], height)
            step = max(1, (high - low) // 3) * (1 if rng.randint(2) else -1)
            if low + step < 1 or high + step > size:
                step = -step
            moved = list(box)
            moved[axis] += step
            moved[axis + 2] += step
            objects[image_id][index] = (name, tuple(moved))
            planted.append({'image_id': image_id, 'kind': kind, 'box': tuple(moved),
                            'class': name, 'true_class': name})
    for image_id, index in sorted(deleted, reverse=True):
        del objects[image_id][index]
    ids = sorted(objects)
    for _ in range(int(round(SPURIOUS_SHARE * len(all_boxes)))):
        for _ in range(200):   # a free spot in some image
            image_id = ids[rng.randint(len(ids))]
            height, width = annotations[image_id].size
            side = int(rng.uniform(*SPURIOUS_SIDE) * min(height, width))
            x, y = rng.randint(1, width - side), rng.randint(1, height - side)
            box = (x, y, x + side, y + side)
            # Free of every object, the deleted ones included (they are still in the picture).
            taken = [_xml_box(b) for _, b in objects[image_id]] + \
                [_xml_box(o.box) for o in annotations[image_id].objects]
            if not taken or boxes_lib.intersection(_xml_box(box)[None], np.array(taken)).max() == 0:
                name = class_names[rng.randint(len(class_names))]
                objects[image_id].append((name, box))
                planted.append({'image_id': image_id, 'kind': 'spurious', 'box': box,
                                'class': name, 'true_class': ''})
                break
    return objects, planted


def score_audit(rows, planted):
    """``rows`` (audit.csv dicts, ranked) against ``planted`` → results dict (module docstring)."""
    def box_of(row):
        return (int(row['xmin']), int(row['ymin']), int(row['xmax']), int(row['ymax']))

    def points_at(row, error):
        if row['image_id'] != error['image_id']:
            return False
        if error['kind'] == 'missing':
            return row['kind'] == 'missing' and boxes_lib.iou(
                _xml_box(box_of(row))[None], _xml_box(error['box'])[None])[0, 0] >= MATCH_IOU
        return row['kind'] != 'missing' and box_of(row) == tuple(error['box'])

    # The row (rank position) of each planted error, and whether its kind is right.
    position = []
    for error in planted:
        found = [i for i, row in enumerate(rows) if points_at(row, error)]
        position.append(found[0] if found else None)
    results = {'rows': len(rows), 'planted': len(planted), 'kinds': {}}
    for kind in ('swapped', 'missing', 'loose', 'spurious'):
        errors = [i for i, error in enumerate(planted) if error['kind'] == kind]
        k = len(errors)
        of_kind = [i for i, row in enumerate(rows) if row['kind'] == kind][:k]
        kind_right = sum(position[i] in of_kind for i in errors if position[i] is not None)
        overall = sum(position[i] is not None and position[i] < len(planted) for i in errors)
        with_row = sum(position[i] is not None for i in errors)
        random = (with_row / float(k)) * min(1., k / float(len(rows))) if k else 0.
        results['kinds'][kind] = {
            'planted': k, 'with_row': with_row,
            'recall_top_k': kind_right / float(k) if k else 0.,
            'recall_top_all_planted': overall / float(k) if k else 0.,
            'random_recall_top_k': random}
    top = rows[:TOP_PRECISION]
    hits = sum(any(points_at(row, error) for error in planted) for row in top)
    pointing = sum(any(points_at(row, error) for error in planted) for row in rows)
    results['precision_top_%d' % TOP_PRECISION] = hits / float(len(top)) if top else 0.
    results['random_precision'] = pointing / float(len(rows)) if rows else 0.
    return results


def report_lines(results, command, machine, minutes):
    lines = ['Planted errors in the held-out generated test split (%d images of %d, %d boxes '
             'before planting), audited with `audit_labels.py` and the detections of the '
             'demo\'s reduced-width SSD300 (width 0.125) trained %d steps on the train split '
             'only (%.0f min of training; mAP@0.5 VOC07 %.3f on the clean test split). '
             'CPU: %s, %d cores, measured %s (1-minute load average %.1f as the audit '
             'ended: above ~2 other work shared the cores, and the minutes are longer). '
             'Command: `%s`.' % (
                 results['test_images'], results['num_images'], results['boxes'],
                 results['steps'], minutes, results['map_voc07'], machine.cpu, machine.cores,
                 results['date'], os.getloadavg()[0], command), '',
             '| kind | planted | with a row | recall@K | random ranking | ratio to random | '
             'recall in the top %d of all rows |' % results['planted'],
             '|---|---|---|---|---|---|---|']
    for kind, entry in results['kinds'].items():
        ratio = entry['recall_top_k'] / entry['random_recall_top_k'] \
            if entry['random_recall_top_k'] else float('inf')
        lines.append('| %s | %d | %d | %.2f | %.3f | %.1fx | %.2f |' % (
            kind, entry['planted'], entry['with_row'], entry['recall_top_k'],
            entry['random_recall_top_k'], ratio, entry['recall_top_all_planted']))
    lines += ['', 'K = the number planted of that kind; recall@K: the planted errors among the '
              'top K rows the audit calls that kind (a row points at a planted error: its box, '
              'or for a deleted box a missing row at IoU >= 0.5); random ranking: the expected '
              'recall@K of a random order of all %d rows; last column: the share of that kind '
              'among the top rows of the whole ranking, as many as planted in all (%d), '
              'whatever kind the rows say (random: %.2f of the errors that have a row). '
              'Precision of the top %d rows: %.2f (random: %.2f).'
              % (results['rows'], results['planted'],
                 results['planted'] / float(results['rows']), TOP_PRECISION,
                 results['precision_top_%d' % TOP_PRECISION], results['random_precision']), '',
              'Auditing training labels takes out-of-fold predictions (scripts/kfold_splits.py): '
              'K trainings. One of them is this run\'s training (%d steps of the width-0.125 '
              'model, %.0f min here); K = 5 costs about %.1f h on this CPU at that width. The '
              'full-width recipe (1600 steps) took 90-106 min per run on the 2-core machines '
              'above without AMX (not measured on this CPU): about 8-9 h for K = 5. On a GPU: '
              'not measured.' % (results['steps'], minutes, 5 * minutes / 60.), '',
              'Still to do: the real-data audit (the shared Open Images vehicle val split with '
              'the recipe\'s checkpoint, the top 20 looked at by eye with their crops); the '
              'recipe\'s checkpoint is not on this machine (hours of training on this CPU).']
    return lines


def _steps(options):
    work = os.path.abspath(options.work_dir)
    voc, records = os.path.join(work, 'voc'), os.path.join(work, 'records')
    train, evaluation = os.path.join(work, 'train'), os.path.join(work, 'eval')
    planted_voc = os.path.join(work, 'planted_voc')
    planted_records = os.path.join(work, 'planted_records')
    audit = os.path.join(work, 'audit')
    os.makedirs(work, exist_ok=True)
    log = os.path.join(work, 'bench.log')
    progress = os.path.join(work, 'progress.json')
    state = json.load(open(progress)) if os.path.isfile(progress) else {}
    total = 6

    def step(number, title):
        print('[bench_label_audit %d/%d] %s' % (number, total, title), flush=True)

    step(1, 'generated data and records in %s' % work)
    if not os.path.isdir(os.path.join(voc, 'Annotations')):
        run(os.path.join(REPO_ROOT, 'datasets/write_dataset/sample_data.py'),
            '--output_dir=' + voc, '--num_images=%d' % options.num_images, '--seed=0',
            '--test_fraction=%g' % options.test_fraction, log=log)
    description = os.path.join(records, 'dataset_description.json')
    splits = json.load(open(description))['splits'] if os.path.isfile(description) else {}
    for split in ('train', 'test'):
        if split not in splits:
            run(os.path.join(REPO_ROOT, 'datasets/write_dataset/dataset_to_tfrecords.py'),
                '--dataset_dir=' + voc, '--output_dir=' + records, '--dataset_name=vehicle',
                '--split=' + split, log=log)
    splits = json.load(open(description))['splits']

    step(2, 'train on the train split only (%d steps; resumes)' % options.max_number_of_steps)
    checkpoint = os.path.join(train, 'model.ckpt-%d.index' % options.max_number_of_steps)
    if not os.path.isfile(checkpoint):
        started = time.time()
        epochs = options.max_number_of_steps * 8. / splits['train']['num_samples']
        settings = dict(TRAIN_SETTINGS, max_number_of_steps=str(options.max_number_of_steps),
                        num_epochs_per_decay='%g' % round(epochs))
        run(os.path.join(REPO_ROOT, 'train_ssd_network.py'), '--train_model_dir=' + train,
            '--dataset_dir=' + records, '--dataset_name=vehicle', '--train_or_test=train',
            '--model_name=ssd_vgg_300', '--save_interval_secs=120', '--log_every_n_steps=50',
            *['--%s=%s' % item for item in sorted(settings.items())], log=log)
        state['train_minutes'] = state.get('train_minutes', 0.) + (time.time() - started) / 60
        files.write_json_atomically(progress, state)

    step(3, 'detections of the held-out test split (%s)' % evaluation)
    if not os.path.isfile(os.path.join(evaluation, 'detections.json')):
        run(os.path.join(REPO_ROOT, 'eval_ssd_network.py'), '--ckpt_path=' + train,
            '--dataset_dir=' + records, '--dataset_name=vehicle', '--split=test',
            '--output_dir=' + evaluation, '--precision=float32', log=log)
    with open(os.path.join(evaluation, 'results.json')) as f:
        map_voc07 = json.load(f)['map_voc07']

    step(4, 'plant errors in a copy of the test split (%s)' % planted_voc)
    planted_path = os.path.join(work, 'planted.json')
    if not os.path.isfile(planted_path):
        if os.path.isdir(planted_voc):
            shutil.rmtree(planted_voc)
        with open(os.path.join(voc, 'ImageSets', 'Main', 'test.txt')) as f:
            ids = [line.strip() for line in f if line.strip()]
        annotations = {i: voc_reader.parse_annotation(os.path.join(voc, 'Annotations', i + '.xml'))
                       for i in ids}
        objects, planted = plant_errors(annotations, dataset_config.VEHICLE_CLASSES,
                                        np.random.RandomState(options.seed))
        os.makedirs(os.path.join(planted_voc, 'Annotations'))
        os.makedirs(os.path.join(planted_voc, 'ImageSets', 'Main'))
        os.symlink(os.path.join(voc, 'JPEGImages'), os.path.join(planted_voc, 'JPEGImages'))
        shutil.copy(os.path.join(voc, 'ImageSets', 'Main', 'test.txt'),
                    os.path.join(planted_voc, 'ImageSets', 'Main', 'test.txt'))
        for image_id in ids:
            height, width = annotations[image_id].size
            with open(os.path.join(planted_voc, 'Annotations', image_id + '.xml'), 'w') as f:
                f.write(voc_writer.annotation_xml(image_id + '.jpg', height, width,
                                                  objects[image_id]))
        if os.path.isdir(planted_records):
            shutil.rmtree(planted_records)
        run(os.path.join(REPO_ROOT, 'datasets/write_dataset/dataset_to_tfrecords.py'),
            '--dataset_dir=' + planted_voc, '--output_dir=' + planted_records,
            '--dataset_name=vehicle', '--split=test', '--keep_empty_images', log=log)
        files.write_json_atomically(planted_path, {
            'boxes_before': sum(len(a.objects) for a in annotations.values()),
            'images': len(ids), 'errors': planted})
    with open(planted_path) as f:
        planted = json.load(f)

    step(5, 'audit the planted copy (%s)' % audit)
    audit_args = [os.path.join(REPO_ROOT, 'audit_labels.py'), '--dataset_dir=' + planted_records,
                  '--dataset_name=vehicle', '--split=test',
                  '--detections_file=' + os.path.join(evaluation, 'detections.json'),
                  '--output_dir=' + audit, '--top=20']
    if options.confident_score is not None:
        audit_args.append('--confident_score=%g' % options.confident_score)
    run(*audit_args)

    step(6, 'score the ranking against the planted errors')
    import csv
    with open(os.path.join(audit, 'audit.csv')) as f:
        rows = list(csv.DictReader(f))
    results = score_audit(rows, planted['errors'])
    machine = common.this_machine()
    results.update(num_images=options.num_images, test_images=planted['images'],
                   boxes=planted['boxes_before'], steps=options.max_number_of_steps,
                   map_voc07=map_voc07, cpu=machine.cpu,
                   date=time.strftime('%Y-%m-%d', time.gmtime()),
                   train_minutes=state.get('train_minutes'),
                   confident_score=options.confident_score)
    files.write_json_atomically(os.path.join(work, 'results.json'), results)
    command = 'python bench/bench_label_audit.py' + (
        ' --confident_score=%g' % options.confident_score
        if options.confident_score is not None else '')
    lines = report_lines(results, command, machine, state.get('train_minutes') or float('nan'))
    print('\n'.join(lines))
    if options.report_results:
        common.write_report_section(options.report, 'Label audit', lines)
        print('report: %s (section "Label audit")' % options.report)
    return 0


def main(argv=None):
    return cli.run(argv, define_flags(), __doc__, _steps)


if __name__ == '__main__':
    sys.exit(main())
