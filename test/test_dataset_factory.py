"""dataset_factory + readers + input_pipeline: specs, errors, and decoded examples vs the XML."""
import os
import shutil
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from datasets import dataset_config
from datasets import dataset_factory
from datasets import input_pipeline
from datasets.utils import dataset_utils
from datasets.write_dataset import dataset_to_tfrecords
from test.conftest import shared_path


def read_all(spec, shuffle=False, seed=None, num_epochs=1, initializable=False):
    """Every element of make_dataset(spec, ...) through a TF1 graph iterator, as NumPy dicts."""
    with tf.Graph().as_default():
        dataset = input_pipeline.make_dataset(spec, shuffle, num_epochs=num_epochs, seed=seed)
        if initializable:
            iterator = tf.data.make_initializable_iterator(dataset)
        else:
            iterator = tf.data.make_one_shot_iterator(dataset)
        element = iterator.get_next()
        examples = []
        with tf.Session() as session:
            if initializable:
                session.run(iterator.initializer)
            while True:
                try:
                    examples.append(session.run(element))
                except tf.errors.OutOfRangeError:
                    return examples


def check_examples_against_xml(examples, voc_dir, spec):
    """Class and box (XML / decoded image size, clipped) of every object, within 1e-6."""
    for example in examples:
        image, shape = example['image'], example['shape']
        assert image.dtype == np.uint8 and image.shape == tuple(shape) and shape[2] == 3
        image_id = os.path.splitext(example['filename'].decode())[0]
        objects = ElementTree.parse(
            os.path.join(voc_dir, 'Annotations', image_id + '.xml')).getroot().findall('object')
        assert example['labels'].dtype == np.int64 and example['bboxes'].dtype == np.float32
        assert example['bboxes'].shape == (len(objects), 4)
        assert example['difficult'].shape == example['truncated'].shape == (len(objects),)
        for obj, label, box in zip(objects, example['labels'], example['bboxes']):
            assert spec.labels_to_names[label] == obj.find('name').text
            expected = [float(obj.find('bndbox/' + key).text) / shape[axis]
                        for key, axis in (('ymin', 0), ('xmin', 1), ('ymax', 0), ('xmax', 1))]
            np.testing.assert_allclose(box, np.clip(expected, 0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize('folder, name, records, classes', [
    ('vehicles_openimages', 'vehicle', 628, 6),
    ('voc2007_subset', 'pascalvoc_2007', 400, 21),
])
def test_shared_data_round_trip(tmp_path, folder, name, records, classes):
    voc_dir = shared_path(folder)
    dataset_to_tfrecords.convert(voc_dir, str(tmp_path), name, split='trainval',
                                 num_workers=1, show_progress=False)
    spec = dataset_factory.get_dataset(name, 'trainval', str(tmp_path))
    assert (spec.num_samples, spec.num_classes) == (records, classes)
    examples = read_all(spec)
    assert len(examples) == records
    assert len({example['filename'] for example in examples}) == records
    check_examples_against_xml(examples, voc_dir, spec)


def test_spec_of_the_sample_splits(sample_voc_dir, sample_tfrecords):
    for split in ('train', 'test'):
        spec = dataset_factory.get_dataset('vehicle', split, sample_tfrecords)
        with open(os.path.join(sample_voc_dir, 'ImageSets', 'Main', split + '.txt')) as handle:
            assert spec.num_samples == len(handle.read().split())
        assert (spec.dataset_name, spec.split_name, spec.num_classes) == ('vehicle', split, 6)
        assert spec.data_sources == sorted(spec.data_sources)
        assert all(os.path.isfile(path) for path in spec.data_sources)
        assert spec.labels_to_names == {0: 'none', 1: 'Ambulance', 2: 'Bus', 3: 'Car',
                                        4: 'Motorcycle', 5: 'Truck'}
        assert spec.names_to_labels == {'Ambulance': 1, 'Bus': 2, 'Car': 3, 'Motorcycle': 4,
                                        'Truck': 5}
        assert spec.class_names == list(dataset_config.VEHICLE_CLASSES)


def test_pipeline_examples_match_the_xml(sample_voc_dir, sample_tfrecords):
    spec = dataset_factory.get_dataset('vehicle', 'test', sample_tfrecords)
    examples = read_all(spec, initializable=True)
    assert len(examples) == spec.num_samples
    check_examples_against_xml(examples, sample_voc_dir, spec)


def test_shuffle_is_a_seeded_permutation_and_epochs_repeat(sample_tfrecords):
    spec = dataset_factory.get_dataset('vehicle', 'train', sample_tfrecords)
    ordered = [e['filename'] for e in read_all(spec)]
    first = [e['filename'] for e in read_all(spec, shuffle=True, seed=3)]
    again = [e['filename'] for e in read_all(spec, shuffle=True, seed=3)]
    assert sorted(first) == sorted(ordered) and first == again and first != ordered
    twice = [e['filename'] for e in read_all(spec, num_epochs=2)]
    assert twice == ordered + ordered


def test_custom_dataset_needs_only_a_labels_file(sample_voc_dir, tmp_path):
    labels = tmp_path / 'labels.txt'
    labels.write_text('Car\nBus\nTruck\nAmbulance\nMotorcycle\n')
    out = str(tmp_path / 'records')
    dataset_to_tfrecords.convert(sample_voc_dir, out, 'my_cars', split='test',
                                 labels_file=str(labels), num_workers=1, show_progress=False)
    spec = dataset_factory.get_dataset('my_cars', 'test', out)
    assert spec.class_names == ['Car', 'Bus', 'Truck', 'Ambulance', 'Motorcycle']
    assert spec.labels_to_names[1] == 'Car' and spec.num_classes == 6
    check_examples_against_xml(read_all(spec), sample_voc_dir, spec)


def test_errors_name_what_is_wrong(sample_tfrecords, tmp_path):
    with pytest.raises(dataset_utils.DatasetError,
                       match=r"unknown dataset_name 'cars' \(known: pascalvoc_2007, vehicle, "
                             r"vehicle \(described in .*\)\)"):
        dataset_factory.get_dataset('cars', 'train', sample_tfrecords)
    with pytest.raises(dataset_utils.DatasetError,
                       match=r"has no split 'val' \(available: test, train\)"):
        dataset_factory.get_dataset('vehicle', 'val', sample_tfrecords)
    with pytest.raises(dataset_utils.DatasetError, match="describes dataset 'vehicle', not "
                                                         "'pascalvoc_2007'"):
        dataset_factory.get_dataset('pascalvoc_2007', 'train', sample_tfrecords)
    with pytest.raises(dataset_utils.DatasetError, match='no such folder'):
        dataset_factory.get_dataset('vehicle', 'train', str(tmp_path / 'missing'))
    with pytest.raises(dataset_utils.DatasetError, match='no shards matching vehicle_train_'):
        dataset_factory.get_dataset('vehicle', 'train', str(tmp_path))
    (tmp_path / dataset_utils.DESCRIPTION_FILENAME).write_text('{"splits": 3}')
    with pytest.raises(dataset_utils.DatasetError, match='not a valid dataset description'):
        dataset_factory.get_dataset('vehicle', 'train', str(tmp_path))


def test_shards_without_description_are_found_and_counted(sample_tfrecords, tmp_path):
    spec = dataset_factory.get_dataset('vehicle', 'train', sample_tfrecords)
    for path in spec.data_sources:
        shutil.copy(path, str(tmp_path))
    bare = dataset_factory.get_dataset('vehicle', 'train', str(tmp_path))
    assert bare.num_samples == spec.num_samples
    assert [os.path.basename(p) for p in bare.data_sources] == \
        [os.path.basename(p) for p in spec.data_sources]
    # SSD-Tensorflow's shard names are found for Pascal VOC.
    shutil.copy(spec.data_sources[0], str(tmp_path / 'voc_2007_train_000.tfrecord'))
    voc = dataset_factory.get_dataset('pascalvoc_2007', 'train', str(tmp_path))
    assert voc.num_classes == 21 and voc.data_sources == [str(tmp_path / 'voc_2007_train_000.tfrecord')]


def test_count_records_matches_tensorflow_and_detects_truncation(sample_tfrecords, tmp_path):
    spec = dataset_factory.get_dataset('vehicle', 'train', sample_tfrecords)
    for path in spec.data_sources:
        assert dataset_utils.count_records(path) == sum(
            1 for _ in tf.io.tf_record_iterator(path))
    with open(spec.data_sources[0], 'rb') as handle:
        data = handle.read()
    (tmp_path / 'cut.tfrecord').write_bytes(data[:-10])
    with pytest.raises(dataset_utils.DatasetError, match='truncated TFRecord'):
        dataset_utils.count_records(str(tmp_path / 'cut.tfrecord'))


def test_labels_file_rules(tmp_path):
    path = tmp_path / 'labels.txt'
    path.write_text('\ufeffcar \n bus\n\n')
    assert dataset_config.read_labels_file(str(path)) == ['car', 'bus']
    for text, message in (('car\n\nbus\n', 'line 2 is blank'), ('car\ncar\n', 'duplicate'),
                          ('\n\n', 'no class names'),
                          ('none\n', "line 1: 'none' is the background"),
                          # A label-map habit: the background first would shift every id.
                          ('Background\ncar\n', "line 1: 'Background' is the background"),
                          ('car\n__background__\n', "line 2: '__background__' is the background"),
                          ('car\nfire,truck\n', "line 2: 'fire,truck' holds ','"),
                          ('car=1\n', "line 1: 'car=1' holds '='")):
        path.write_text(text)
        with pytest.raises(dataset_config.DatasetConfigError, match=message):
            dataset_config.read_labels_file(str(path))
