"""--class_weights: parsing, the balanced weights on a hand-worked case, object counts read from
the records against the converter's own count, and corrupt records."""
import collections
import os
import shutil

import pytest

from datasets import dataset_config, dataset_factory, record_check
from datasets.write_dataset import dataset_to_tfrecords
from training import class_weights
from utils import cli

NAMES = ['Ambulance', 'Bus', 'Car']


def test_parse_reads_name_weight_pairs_and_the_balanced_keyword():
    assert class_weights.parse('', NAMES) == {}
    assert class_weights.parse(' Car=0.5, Bus=3 ', NAMES) == {'Car': .5, 'Bus': 3.}
    assert class_weights.parse('balanced', NAMES) == class_weights.BALANCED


@pytest.mark.parametrize('text, message', [
    ('Tram=2', "--class_weights=Tram=2: unknown class 'Tram' (classes: Ambulance, Bus, Car)"),
    ('Car=0', "--class_weights=Car=0: 'Car=0' needs a positive, finite weight"),
    ('Car=-1', "--class_weights=Car=-1: 'Car=-1' needs a positive, finite weight"),
    ('Car=heavy', "--class_weights=Car=heavy: 'Car=heavy' needs a positive, finite weight"),
    ('Car', "--class_weights=Car: 'Car' needs a positive, finite weight"),
    ('Car=nan', "--class_weights=Car=nan: 'Car=nan' needs a positive, finite weight"),
    ('Car=inf', "--class_weights=Car=inf: 'Car=inf' needs a positive, finite weight"),
])
def test_bad_weights_are_one_usage_error_naming_the_flag(text, message):
    with pytest.raises(cli.UsageError) as error:
        class_weights.parse(text, NAMES)
    assert str(error.value).startswith(message)


def test_balanced_weights_on_a_hand_worked_case():
    # 10 + 30 objects over 2 present classes: 40 / (2 * 10) = 2, 40 / (2 * 30) = 2/3; the
    # absent class is never a target and keeps 1. Over the objects the weights average 1.
    weights = class_weights.balanced({'Ambulance': 10, 'Bus': 30}, NAMES)
    assert weights == pytest.approx({'Ambulance': 2., 'Bus': 2. / 3, 'Car': 1.})
    assert (10 * weights['Ambulance'] + 30 * weights['Bus']) / 40 == pytest.approx(1.)


def _spec(dataset_dir):
    return dataset_factory.get_dataset('vehicle', 'train', dataset_dir)


def test_objects_are_counted_from_the_records_as_the_converter_counted_them(sample_voc_dir,
                                                                           tmp_path):
    summary = dataset_to_tfrecords.convert(sample_voc_dir, str(tmp_path), 'vehicle',
                                           split='train', samples_per_file=8,
                                           show_progress=False)
    counts = class_weights.count_objects(_spec(str(tmp_path)))
    assert counts == summary.objects_per_class and sum(counts.values()) > 10

    weights, line = class_weights.resolve('balanced', _spec(str(tmp_path)), num_classes=7)
    total, present = sum(counts.values()), len(counts)
    expected = [total / (present * counts[name]) if counts[name] else 1.
                for name in dataset_config.VEHICLE_CLASSES]
    assert weights == pytest.approx([1.] + expected + [1.])  # background, 5 classes, 1 extra
    assert line.startswith('class weights (balanced over %d training objects): Ambulance '
                           % total)
    assert class_weights.resolve('', _spec(str(tmp_path)), 6) == (None, None)


def test_a_cut_shard_is_an_error_unless_its_records_are_skipped(sample_tfrecords, tmp_path):
    dataset_dir = str(tmp_path / 'records')
    shutil.copytree(sample_tfrecords, dataset_dir)
    spec = _spec(dataset_dir)
    whole = class_weights.count_objects(spec)
    cut = spec.data_sources[-1]
    with open(cut, 'rb+') as handle:
        handle.truncate(os.path.getsize(cut) - 100)
    with pytest.raises(record_check.CorruptRecordError, match=os.path.basename(cut)):
        class_weights.count_objects(spec)
    skipping, _ = record_check.skip_corrupt(spec, printer=lambda line: None)
    fewer = class_weights.count_objects(skipping)
    assert isinstance(fewer, collections.Counter) and 0 < sum(fewer.values()) < sum(whole.values())
