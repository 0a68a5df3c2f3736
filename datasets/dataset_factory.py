"""Routes a dataset name to its reader: ``get_dataset(name, train_or_test, dataset_dir)``."""
from datasets.read_dataset import pascalvoc2007
from datasets.read_dataset import vehicle
from datasets.utils import dataset_utils

DatasetError = dataset_utils.DatasetError

# The built-in datasets: name -> reader (its ``param`` says class names and shard names).
READERS = {reader.param.dataset_name: reader
           for reader in (pascalvoc2007.PascalVoc2007Reader, vehicle.VehicleReader)}


def get_dataset(dataset_name, train_or_test, dataset_dir):
    """-> DatasetSpec of split ``train_or_test`` of the TFRecords in ``dataset_dir``.

    Built-in names use their reader; any other name is accepted when ``dataset_dir`` holds a
    description of that dataset (converted with ``--labels_file``), which then gives the class
    names and shards. Otherwise DatasetError lists the names that would work.
    """
    if dataset_name in READERS:
        return READERS[dataset_name](dataset_dir, train_or_test).get_data()
    description = dataset_utils.read_description(dataset_dir) if dataset_dir else None
    if description is not None and description.get('dataset_name') == dataset_name:
        return dataset_utils.TFRecordsReaderBase(
            dataset_dir, train_or_test, dataset_utils.dataset_params(dataset_name)).get_data()
    known = sorted(READERS)
    if description is not None and description.get('dataset_name'):
        known.append('%s (described in %s)' % (description['dataset_name'],
                                               dataset_utils.description_path(dataset_dir)))
    raise DatasetError('unknown dataset_name %r (known: %s)' % (dataset_name, ', '.join(known)))
