"""Dataset description file I/O, the DatasetSpec a reader returns, and TFRecordsReaderBase.

No TensorFlow here: a reader only locates shards and class names; ``datasets.input_pipeline``
turns a DatasetSpec into tensors.

``dataset_description.json`` (written by the converter beside the shards)::

    {"dataset_name": "vehicle", "class_names": ["Ambulance", ...],
     "splits": {"trainval": {"num_samples": 628, "num_objects": 1433,
                             "files": ["vehicle_trainval_000.tfrecord", ...]}}}
"""
import collections
import glob
import json
import os
import struct

from datasets import dataset_config
from utils import files
from utils.errors import ToolkitError

DESCRIPTION_FILENAME = 'dataset_description.json'
SHARD_NAME = '%s_%s_%03d.tfrecord'

DatasetSpec = collections.namedtuple(
    'DatasetSpec', 'dataset_name split_name data_sources num_samples num_classes '
                   'labels_to_names names_to_labels class_names skipped_records')
DatasetSpec.__new__.__defaults__ = ((),)
DatasetSpec.__doc__ = """One split of a converted dataset.

``data_sources``: sorted shard paths; ``num_classes`` counts the background (id 0);
``labels_to_names``: {0: 'none', 1: first class, ...}; ``class_names``: id order, no background;
``skipped_records``: corrupt records the input pipeline reads past (``datasets.record_check``).
"""

DatasetParams = collections.namedtuple('DatasetParams', 'dataset_name class_names file_patterns')
DatasetParams.__doc__ = """What a reader knows without a description file: the dataset name, its
default class names (None: the description is required) and shard glob patterns with ``{split}``."""


def dataset_params(dataset_name, class_names=None, *other_patterns):
    """DatasetParams whose shards are ours (``<dataset_name>_<split>_NNN.tfrecord``) or match
    ``other_patterns`` (e.g. another tool's names)."""
    return DatasetParams(dataset_name, class_names,
                         ('%s_{split}_*.tfrecord' % dataset_name,) + other_patterns)


class DatasetError(ToolkitError, ValueError):
    """A dataset that cannot be read; the message names the folder, file or split."""


def shard_name(dataset_name, split_name, index):
    """``<dataset_name>_<split>_NNN.tfrecord`` (docs/CONTRACT.md §3)."""
    return SHARD_NAME % (dataset_name, split_name, index)


def description_path(dataset_dir):
    return os.path.join(dataset_dir, DESCRIPTION_FILENAME)


def read_description(dataset_dir):
    """The parsed description of ``dataset_dir``, or None when there is none."""
    path = description_path(dataset_dir)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as handle:
            description = json.load(handle)
        if not isinstance(description.get('class_names'), list) or not isinstance(
                description.get('splits'), dict):
            raise ValueError('needs "class_names" (list) and "splits" (object)')
    except ValueError as error:
        raise DatasetError('%s: not a valid dataset description (%s)' % (path, error))
    return description


def check_description(dataset_dir, dataset_name, class_names):
    """-> the existing description (or None); DatasetError if it is of another dataset or class
    list, because splits with disagreeing label ids must not share a folder."""
    description = read_description(dataset_dir)
    if description is not None and (description.get('dataset_name'),
                                    description['class_names']) != (dataset_name, list(class_names)):
        raise DatasetError(
            '%s describes dataset %r with classes %s, not %r with %s: use another output folder'
            % (description_path(dataset_dir), description.get('dataset_name'),
               description['class_names'], dataset_name, list(class_names)))
    return description


def merge_description(dataset_dir, dataset_name, class_names, split_name, split_info):
    """Writes ``split_info`` for ``split_name`` into the description (atomically), keeping the
    other splits; DatasetError as in ``check_description``."""
    description = check_description(dataset_dir, dataset_name, class_names) or {
        'dataset_name': dataset_name, 'class_names': list(class_names), 'splits': {}}
    description['splits'][split_name] = split_info
    files.write_json_atomically(description_path(dataset_dir), description)
    return description


def count_records(path):
    """Number of records in a TFRecord file, by walking its length headers (no TensorFlow).

    Each record is: uint64 length, uint32 CRC, ``length`` bytes, uint32 CRC.
    """
    count = 0
    size = os.path.getsize(path)
    with open(path, 'rb') as handle:
        position = 0
        while position < size:
            header = handle.read(8)
            if len(header) < 8:
                raise DatasetError('%s: truncated TFRecord file' % path)
            position += 8 + 4 + struct.unpack('<Q', header)[0] + 4
            if position > size:
                raise DatasetError('%s: truncated TFRecord file' % path)
            handle.seek(position)
            count += 1
    return count


class TFRecordsReaderBase(object):
    """Locates one split of a converted dataset; subclasses only set ``param`` (a DatasetParams),
    or it is given to the constructor (datasets converted with ``--labels_file``).

    With a description file (the normal case) shards, sample counts and class names come from it.
    Without one (TFRecords made by another tool), shards are found with ``param.file_patterns``,
    counted record by record, and the default class names are used.
    """
    param = None

    def __init__(self, dataset_dir, train_or_test, param=None):
        self.dataset_dir = dataset_dir
        self.split_name = train_or_test
        if param is not None:
            self.param = param

    def get_data(self):
        """-> DatasetSpec of the split; DatasetError naming the folder/split if it is unusable."""
        if not os.path.isdir(self.dataset_dir):
            raise DatasetError('dataset_dir %s: no such folder' % self.dataset_dir)
        description = read_description(self.dataset_dir)
        if description is not None:
            return self._from_description(description)
        return self._from_patterns()

    def _from_description(self, description):
        path = description_path(self.dataset_dir)
        described = description.get('dataset_name', self.param.dataset_name)
        if described != self.param.dataset_name:
            raise DatasetError('%s describes dataset %r, not %r'
                               % (path, described, self.param.dataset_name))
        splits = description['splits']
        if self.split_name not in splits:
            raise DatasetError('%s has no split %r (available: %s)'
                               % (path, self.split_name, ', '.join(sorted(splits)) or 'none'))
        split = splits[self.split_name]
        sources = sorted(os.path.join(self.dataset_dir, name) for name in split['files'])
        missing = [source for source in sources if not os.path.isfile(source)]
        if missing:
            raise DatasetError('%s lists shard %s, which does not exist' % (path, missing[0]))
        return self._spec(sources, split['num_samples'], description['class_names'])

    def _from_patterns(self):
        if self.param.class_names is None:
            raise DatasetError('%s: no %s (convert the dataset with dataset_to_tfrecords.py)'
                               % (self.dataset_dir, DESCRIPTION_FILENAME))
        sources = sorted({path for pattern in self.param.file_patterns for path in glob.glob(
            os.path.join(self.dataset_dir, pattern.format(split=self.split_name)))})
        if not sources:
            raise DatasetError('%s: no %s and no shards matching %s' % (
                self.dataset_dir, DESCRIPTION_FILENAME,
                ' or '.join(p.format(split=self.split_name) for p in self.param.file_patterns)))
        return self._spec(sources, sum(count_records(path) for path in sources),
                          self.param.class_names)

    def _spec(self, sources, num_samples, class_names):
        if not num_samples:
            raise DatasetError('%s: split %r holds no samples' % (self.dataset_dir, self.split_name))
        return DatasetSpec(
            dataset_name=self.param.dataset_name, split_name=self.split_name,
            data_sources=sources, num_samples=int(num_samples),
            num_classes=len(class_names) + 1,
            labels_to_names=dataset_config.labels_to_names(class_names),
            names_to_labels=dataset_config.names_to_labels(class_names),
            class_names=list(class_names))
