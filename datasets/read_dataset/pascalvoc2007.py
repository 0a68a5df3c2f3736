"""Reader of converted Pascal VOC 2007 TFRecords (20 classes, ids 1-20 alphabetical)."""
from datasets import dataset_config
from datasets.utils import dataset_utils


class PascalVoc2007Reader(dataset_utils.TFRecordsReaderBase):
    """``PascalVoc2007Reader(dataset_dir, 'train').get_data()`` -> DatasetSpec.

    Besides our own shard names it finds SSD-Tensorflow's ``voc_2007_<split>_NNN.tfrecord``,
    which use the same record keys and label ids.
    """
    param = dataset_utils.DatasetParams(
        dataset_name='pascalvoc_2007',
        class_names=dataset_config.PASCALVOC_2007_CLASSES,
        file_patterns=('pascalvoc_2007_{split}_*.tfrecord', 'voc_2007_{split}_*.tfrecord'))
