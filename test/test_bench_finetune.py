"""bench/bench_finetune.py: runs named by their factors, factors passed to the trainer; and
bench/finetune_report.py: the ablation table that keeps one row per run and CPU. (The benchmark itself runs for an hour; its
pieces are checked here, the whole on a tiny setting by hand.)"""
import json
import os

import pytest

from bench import bench_finetune, common, finetune_report
from datasets import records
from utils import cli
from utils import error_breakdown
from utils import voc_metric


def _options(argv=()):
    flag_set = bench_finetune.define_flags()
    flag_set.values.unparse_flags()
    flag_set.values(['bench_finetune.py'] + list(argv))
    return flag_set.values


def _results(aps, positives):
    classes = {name: {'ap_voc07': ap, 'ap_voc2010': ap, 'num_positives': n}
               for (name, ap), n in zip(sorted(aps.items()), positives)}
    return {'classes': classes, 'map_voc07': sum(aps.values()) / len(aps), 'map_voc2010': 0.}


def test_a_run_is_named_by_the_factors_that_differ_from_the_recipe():
    assert bench_finetune.run_name(_options()) == 'recipe'
    assert '--class_weights=' in bench_finetune.factor_args(_options())  # all 1
    options = _options(['--seed=1', '--nozoom_out', '--max_number_of_steps=3200',
                        '--learning_rate=0.0002', '--class_weights=balanced'])
    assert bench_finetune.run_name(options) == ('max_number_of_steps-3200_zoom_out-false_'
                                                'learning_rate-0.0002_class_weights-balanced_seed-1')
    args = bench_finetune.factor_args(options)
    for expected in ('--zoom_out=false', '--max_number_of_steps=3200', '--negative_ratio=3',
                     '--match_threshold=0.5', '--optimizer=adam', '--seed=1',
                     '--class_weights=balanced'):
        assert expected in args
    assert not any(a.startswith('--precision') for a in bench_finetune.RECIPE + args)


@pytest.mark.parametrize('script', ['command.sh', 'command.bat'])
def test_the_ready_commands_train_with_the_measured_recipe(script):
    """command.sh/.bat are the recipe users run: as the trainer reads them, every flag of RECIPE
    and every factor has its recipe value (the seed aside: the ready command trains unseeded)."""
    import re
    import train_ssd_network

    def trainer_values(argv):
        values = train_ssd_network.define_flags().values
        values(['train_ssd_network.py'] + argv)
        return values
    with open(os.path.join(bench_finetune.REPO_ROOT, script)) as f:
        ready = trainer_values([flag for flag in re.findall(r'(--[a-z_0-9]+=\S+?)\s*[\\^]?$',
                                                            f.read(), re.M)
                                if '$' not in flag and '%' not in flag])
    recipe = bench_finetune.RECIPE + bench_finetune.factor_args(_options())
    measured = trainer_values(recipe)
    for flag in recipe:
        name = flag.split('=', 1)[0][2:]
        if name != 'seed':
            assert getattr(ready, name) == getattr(measured, name), name


def test_the_ablation_table_keeps_one_row_per_run_and_cpu(tmp_path, monkeypatch):
    report = str(tmp_path / 'REPORT.md')
    common.write_report_section(report, 'Other', ['kept'])
    cpu = ['CPU A (AVX512_BF16)']
    monkeypatch.setattr(finetune_report, 'machine', lambda: cpu[0])
    results = _results({'Bus': 0.5, 'Car': 0.8, 'Truck': 0.2, 'Ambulance': 1.0}, [7, 1, 6, 9])
    for name, step in (('recipe', 10), ('zoom_out-false', 20), ('recipe', 30), ('seed-1', 30)):
        finetune_report.write_ablation_row(report, finetune_report.ablation_row(
            name, results, step, 12.4, '2026-12-05'), 'the photos', 8)
    cpu[0] = 'CPU B (none)'
    other = dict(results, map_voc07=0.7, map_coco=0.31)
    finetune_report.write_ablation_row(report, finetune_report.ablation_row(
        'recipe', other, 30, 50, '2026-12-06'), 'the photos', 8)
    sections = common.read_report(report)[1][common.machine_key(common.this_machine())].parts
    assert sections['Other'] == '### Other\n\nkept'
    assert '`python bench/bench_finetune.py [factors]` on the photos (val mAP).' in sections[
        finetune_report.ABLATION_SECTION]
    assert 'changed; batch 8. Rows of several dates' in sections[finetune_report.ABLATION_SECTION]
    rows = finetune_report.table_rows(sections[finetune_report.ABLATION_SECTION])
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ('zoom_out-false', '20', 'CPU A (AVX512_BF16)'), ('recipe', '30', 'CPU A (AVX512_BF16)'),
        ('seed-1', '30', 'CPU A (AVX512_BF16)'), ('recipe', '30', 'CPU B (none)')]
    first = rows[1]
    assert first[2] == '12' and first[4] == '2026-12-05' and first[5] == '0.625'
    # Bus has one val object: the counted mean is over Ambulance, Car and Truck.
    assert first[6] == '%.3f (Ambulance, Car, Truck)' % ((1.0 + 0.8 + 0.2) / 3)
    assert first[7] == '-' and rows[3][7] == '0.310'
    assert first[8] == 'Ambulance 1.00, Bus 0.50, Car 0.80, Truck 0.20'
    assert sections[finetune_report.ABLATION_SECTION].endswith(
        'Seed spread of the recipe (CPU A (AVX512_BF16), 30 steps, 2 seeds): '
        'mAP@0.5 0.625 to 0.625; Ambulance, Car, Truck 0.667 to 0.667.')
    # Seeds of other factors have their own spread; seeds at other step counts do not mix.
    others = [['zoom_out-false_seed-%d' % seed, steps, '9', 'CPU A', 'd', m, counted, '-', '']
              for seed, steps, m, counted in ((0, '20', '0.5', '0.30 (Car, Truck)'),
                                              (1, '20', '0.6', '0.40 (Car, Truck)'),
                                              (2, '10', '0.9', '0.90 (Car, Truck)'))]
    others[0][0] = 'zoom_out-false'
    assert finetune_report.seed_spread(others + [['seed-1', '20', '9', 'CPU A', 'd', '0.7',
                                                 '0.50 (Car, Truck)', '-', '']]) == [
        'Seed spread of zoom_out-false (CPU A, 20 steps, 2 seeds): mAP@0.5 0.500 to 0.600; '
        'Car, Truck 0.300 to 0.400.']


def test_a_class_without_val_objects_is_left_out_not_a_crash(tmp_path, monkeypatch, capsys):
    """A split without a class (its AP is None): the row, the figures and the recipe's table
    list the scored classes only."""
    results = _results({'Bus': 0.5, 'Car': 0.8, 'Truck': 0.2}, [5, 9, 0])
    results['classes']['Truck'].update(ap_voc07=None, ap_voc2010=None)
    results['breakdown'] = {'score_threshold': 0.5, 'iou_threshold': 0.5, 'classes': {}}
    assert finetune_report.ablation_row('recipe', results, 10, 1., '2026-12-05')[8] == \
        'Bus 0.50, Car 0.80'
    monkeypatch.setattr(finetune_report, 'recipe_section', lambda *args: ['recipe section'])
    finetune_report.report(_options(['--report=%s' % (tmp_path / 'REPORT.md')]), 'recipe',
                           results, 10, 1., str(tmp_path), bench_finetune.RECIPE, 8)
    shown = capsys.readouterr().out
    assert 'finetune_ap07_Car | 0.8 ' in shown and 'finetune_ap07_Truck' not in shown


def test_the_breakdown_section_has_one_row_per_counted_class():
    """Two val trucks 40 px wide in a 400 px image (small: side .1 is medium, so 36 px): one
    called Car, one missed; a large car found."""
    breakdown = error_breakdown.ErrorBreakdown(['Bus', 'Car', 'Truck'])
    breakdown.add((400, 400), [[0, 0, 36, 36], [100, 100, 136, 136], [0, 200, 200, 400]],
                  [3, 3, 2], None, [[0, 0, 36, 36], [0, 200, 200, 400]], [.9, .8], [2, 2])
    lines = finetune_report.breakdown_section(breakdown.evaluate(), ['Car', 'Truck'])
    assert lines[4:6] == ['| Car | 1 | 1 | 0 | 0 | 0 | - (0) / - (0) / 1.00 (1) |',
                          '| Truck | 2 | 0 | 1 (Car 1) | 0 | 1 | 0.00 (2) / - (0) / - (0) |']
    assert lines[-2:] == ['| Car | 2 | 1 | 0 | 1 (Truck 1) | 0 | 0 |',
                          '| Truck | 0 | 0 | 0 | 0 | 0 | 0 |']
    assert lines[0].startswith('Where the val objects and the detections went at score >= 0.5')


def test_a_run_draws_its_errors_from_its_evaluation(sample_tfrecords, tmp_path):
    """Detections of nothing on the sample's test split: every object is missed, one sheet of
    unfound objects per class present."""
    with open(os.path.join(sample_tfrecords, 'dataset_description.json')) as f:
        description = json.load(f)
    entries, classes = [], set()
    for name in description['splits']['test']['files']:
        for _, raw in records.iter_records(os.path.join(sample_tfrecords, name)):
            parsed = records.parse_proto(raw)
            classes.update(description['class_names'][label - 1] for label in parsed['labels'])
            entries.append({'image': os.path.basename(parsed['filename']),
                            'height': parsed['height'], 'width': parsed['width'], 'boxes': [],
                            'scores': [], 'classes': []})
    os.makedirs(str(tmp_path / 'eval'))
    voc_metric.write_detections_file(str(tmp_path / 'eval' / 'detections.json'), entries)
    sheets = bench_finetune.draw_errors(sample_tfrecords, str(tmp_path), split='test')
    assert [os.path.basename(path) for path in sheets] == sorted(
        '%s_objects.png' % name for name in classes)
    assert bench_finetune.draw_errors(sample_tfrecords, str(tmp_path), split='nope') == []


def test_the_data_is_named_with_its_split_sizes(sample_tfrecords):
    with open(os.path.join(sample_tfrecords, 'dataset_description.json')) as f:
        train = json.load(f)['splits']['train']['num_samples']
    assert finetune_report.data_text('/data/my_vehicles/', sample_tfrecords) == \
        '`my_vehicles` (train %d)' % train   # the sample has train and test, no val


def test_bad_paths_are_usage_errors(tmp_path, capsys):
    assert bench_finetune.main(['bench_finetune.py', '--data_dir=%s' % (tmp_path / 'no')]) == 2
    assert 'error: --data_dir=' in capsys.readouterr().err
    assert bench_finetune.main(['bench_finetune.py', '--data_dir=%s' % tmp_path,
                                '--pre_trained_path=%s' % (tmp_path / 'vgg')]) == 2
    assert 'no such checkpoint' in capsys.readouterr().err


def test_the_learning_curve_is_drawn_from_the_evaluation_summaries(tmp_path):
    """The trainer's eval_val/ scalars come back in step order (the later of two evaluations at
    one step wins, as after a resume) and become learning_curve.png."""
    import tensorflow.compat.v1 as tf
    from training import eval_summaries
    run_dir = str(tmp_path)
    assert bench_finetune.draw_learning_curve(run_dir, 'recipe', ['Car']) is None
    writer = eval_summaries.SummaryWriter(eval_summaries.summary_dir(run_dir, 'val'))
    for step, value in ((400, 0.30), (200, 0.10), (400, 0.35)):
        writer.write(step, tf.Summary(value=[tf.Summary.Value(tag='mAP@0.5/VOC07',
                                                              simple_value=value)]))
    writer.close()
    series = eval_summaries.read_scalars(eval_summaries.summary_dir(run_dir, 'val'),
                                         ['mAP@0.5/VOC07', 'AP@0.5_VOC07/Car'])
    assert [(s, round(v, 6)) for s, v in series['mAP@0.5/VOC07']] == [(200, 0.1), (400, 0.35)]
    assert series['AP@0.5_VOC07/Car'] == []
    path = bench_finetune.draw_learning_curve(run_dir, 'recipe', ['Car'])
    import matplotlib.image
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.std() > 0.01


def test_the_learning_curve_shows_the_mean_of_the_counted_classes_where_all_were_scored():
    scalars = {'mAP@0.5/VOC07': [(200, 0.5), (400, 0.6)],
               'AP@0.5_VOC07/Bus': [(200, 0.2), (400, 0.4)],
               'AP@0.5_VOC07/Car': [(400, 0.7)]}
    series = bench_finetune.learning_curve_series(scalars, ['Bus', 'Car'])
    assert list(series) == ['mAP@0.5 VOC07', 'mAP@[.5:.95] COCO', 'mAP@0.5 Bus, Car',
                            'Bus AP@0.5', 'Car AP@0.5']
    assert series['mAP@0.5 Bus, Car'] == [(400, (0.4 + 0.7) / 2)]
    assert series['mAP@[.5:.95] COCO'] == [] and series['Bus AP@0.5'] == scalars[
        'AP@0.5_VOC07/Bus']


def test_the_trainer_is_asked_to_evaluate_on_val(monkeypatch, tmp_path):
    """--eval_every_n_steps reaches the trainer's command line (0: no in-training evaluation)."""
    commands = []

    class Stop(Exception):
        pass

    def popen(command, **_):
        commands.append(command)
        raise Stop()
    monkeypatch.setattr(bench_finetune.subprocess, 'Popen', popen)
    for argv in (['--eval_every_n_steps=150'], ['--eval_every_n_steps=0']):
        try:
            bench_finetune.train(_options(argv), str(tmp_path), str(tmp_path),
                                 str(tmp_path / 'progress.json'))
        except Stop:
            pass
    assert '--eval_every_n_steps=150' in commands[0] and '--eval_split=val' in commands[0]
    assert not any(a.startswith('--eval') for a in commands[1])


def test_the_run_shows_steps_and_evaluations_and_keeps_the_whole_log(monkeypatch, tmp_path,
                                                                     capsys):
    trainer_lines = [
        'precision: bfloat16 (--precision=auto: this CPU has AVX512_BF16 and oneDNN is on)\n',
        'a line only the log keeps\n',
        'class weights (balanced over 9 training objects): Bus 1.50, Car 0.75\n',
        'step 10: loss 5.5000 (cross_entropy_neg 1.0) lr 0.0001 | 3.000 s/step, 2.7 images/s\n',
        'evaluated step 10 on val (63 images, 14 s): mAP@0.5 VOC07 0.5678, VOC10+ 0.5682\n']

    class Trainer(object):
        stdout = iter(trainer_lines)

        def wait(self):
            return 0
    options = _options(['--max_number_of_steps=30'])
    monkeypatch.setattr(bench_finetune.subprocess, 'Popen', lambda command, **_: Trainer())
    monkeypatch.setattr(bench_finetune, 'latest_step', lambda train_dir: 0)
    bench_finetune.train(options, str(tmp_path), str(tmp_path), str(tmp_path / 'progress.json'))
    shown = capsys.readouterr().out
    assert 'step 10/30  loss 5.500  3.00 s/step' in shown and 'ETA 1 min' in shown
    assert 'evaluated step 10 on val' in shown and 'only the log' not in shown
    assert 'class weights (balanced over 9 training objects)' in shown
    with open(tmp_path / 'train.log') as f:
        assert f.read() == ''.join(trainer_lines)


def test_a_run_trained_with_other_factors_is_not_resumed(monkeypatch, tmp_path, capsys):
    # The factors are kept in progress.json: after a change of the recipe's defaults the same
    # run name stands for other flags, and resuming would mix them.
    class Trainer(object):
        stdout = iter([])

        def wait(self):
            return 0
    monkeypatch.setattr(bench_finetune.subprocess, 'Popen', lambda command, **_: Trainer())
    monkeypatch.setattr(bench_finetune, 'latest_step', lambda train_dir: 0)
    progress = str(tmp_path / 'progress.json')
    bench_finetune.train(_options(['--max_number_of_steps=30']), str(tmp_path), str(tmp_path),
                         progress)
    assert '--max_number_of_steps=30' in bench_finetune.load_progress(progress)['factors']
    bench_finetune.train(_options(['--max_number_of_steps=30']), str(tmp_path), str(tmp_path),
                         progress)   # the same factors resume
    changed = _options(['--max_number_of_steps=30', '--nozoom_out'])
    with pytest.raises(cli.UsageError, match='was trained with .*--zoom_out=true.*, not '
                                             '.*--zoom_out=false'):
        bench_finetune.train(changed, str(tmp_path), str(tmp_path), progress)


def test_bench_tflite_finds_the_records_of_a_finetune_run(tmp_path):
    from bench import bench_tflite
    results = tmp_path / 'results'
    records = bench_finetune.tfrecords_dir(str(results))
    os.makedirs(records)
    best = os.path.join(bench_finetune.run_dir(str(results), 'zoom_out-false'), 'best')
    os.makedirs(best)
    for prefix in (os.path.join(best, 'model.ckpt-9'),
                   os.path.join(os.path.dirname(best), 'model.ckpt-9')):
        # No description yet: not records; the checkpoint's own folder is the fallback.
        assert bench_tflite.nearest_tfrecords_dir(prefix) == os.path.join(
            os.path.dirname(prefix), 'tfrecords')
    with open(os.path.join(records, 'dataset_description.json'), 'w') as f:
        f.write('{}')
    assert bench_tflite.nearest_tfrecords_dir(os.path.join(best, 'model.ckpt-9')) == records
    flag_set = bench_tflite.define_flags()
    flag_set.values.unparse_flags()
    flag_set.values(['bench_tflite.py'])
    assert flag_set.values.ckpt_path == bench_finetune.run_dir(bench_finetune.RESULTS_DIR,
                                                               'recipe')
