"""Reader of converted Pascal VOC 2007 TFRecords (20 classes, ids 1-20 alphabetical)."""
from datasets import dataset_config
from datasets.utils import dataset_utils


class PascalVoc2007Reader(dataset_utils.TFRecordsReaderBase):
    """``PascalVoc2007Reader(dataset_dir, 'train').get_data()`` -> DatasetSpec; also finds
    SSD-Tensorflow's ``voc_2007_<split>_NNN.tfrecord`` (same record keys and label ids)."""
    param = dataset_utils.dataset_params('pascalvoc_2007', dataset_config.PASCALVOC_2007_CLASSES,
                                         'voc_2007_{split}_*.tfrecord')
