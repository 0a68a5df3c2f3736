"""Reader of converted vehicle TFRecords (default classes Ambulance, Bus, Car, Motorcycle, Truck;
a set converted with its own ``--labels_file`` is read with the classes of its description)."""
from datasets import dataset_config
from datasets.utils import dataset_utils


class VehicleReader(dataset_utils.TFRecordsReaderBase):
    """``VehicleReader(dataset_dir, 'train').get_data()`` -> DatasetSpec."""
    param = dataset_utils.dataset_params('vehicle', dataset_config.VEHICLE_CLASSES)
