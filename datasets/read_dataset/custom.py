"""Reader of any dataset converted with ``--labels_file``: everything comes from its description."""
from datasets.utils import dataset_utils


class CustomReader(dataset_utils.TFRecordsReaderBase):
    """``CustomReader(dataset_name, dataset_dir, 'train').get_data()`` -> DatasetSpec.

    The class names, shards and sample counts are read from ``dataset_description.json``, so a
    new dataset needs a labels file at conversion time and no code.
    """

    def __init__(self, dataset_name, dataset_dir, train_or_test):
        super(CustomReader, self).__init__(dataset_dir, train_or_test)
        self.param = dataset_utils.DatasetParams(
            dataset_name=dataset_name, class_names=None,
            file_patterns=('%s_{split}_*.tfrecord' % dataset_name,))
