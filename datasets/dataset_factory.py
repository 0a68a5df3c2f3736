"""Routes a dataset name to its reader: ``get_dataset(name, train_or_test, dataset_dir)``."""
from datasets.read_dataset import custom
from datasets.read_dataset import pascalvoc2007
from datasets.read_dataset import vehicle
from datasets.utils import dataset_utils

DatasetError = dataset_utils.DatasetError

READERS = {
    'pascalvoc_2007': pascalvoc2007.PascalVoc2007Reader,
    'vehicle': vehicle.VehicleReader,
}


def get_dataset(dataset_name, train_or_test, dataset_dir):
    """-> DatasetSpec of split ``train_or_test`` of the TFRecords in ``dataset_dir``.

    Built-in names use their reader; any other name is accepted when ``dataset_dir`` holds a
    description of that dataset (converted with ``--labels_file``). Otherwise DatasetError lists
    the names that would work.
    """
    if dataset_name in READERS:
        return READERS[dataset_name](dataset_dir, train_or_test).get_data()
    description = dataset_utils.read_description(dataset_dir) if dataset_dir else None
    if description is not None and description.get('dataset_name') == dataset_name:
        return custom.CustomReader(dataset_name, dataset_dir, train_or_test).get_data()
    known = sorted(READERS)
    if description is not None and description.get('dataset_name'):
        known.append('%s (described in %s)' % (description['dataset_name'],
                                               dataset_utils.description_path(dataset_dir)))
    raise DatasetError('unknown dataset_name %r (known: %s)' % (dataset_name, ', '.join(known)))
