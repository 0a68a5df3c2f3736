"""Reader of converted vehicle TFRecords (default classes Ambulance, Bus, Car, Motorcycle, Truck).

A vehicle set converted with its own ``--labels_file`` is read with the class list stored in its
``dataset_description.json``.
"""
from datasets import dataset_config
from datasets.utils import dataset_utils


class VehicleReader(dataset_utils.TFRecordsReaderBase):
    """``VehicleReader(dataset_dir, 'train').get_data()`` -> DatasetSpec."""
    param = dataset_utils.DatasetParams(
        dataset_name='vehicle',
        class_names=dataset_config.VEHICLE_CLASSES,
        file_patterns=('vehicle_{split}_*.tfrecord',))
