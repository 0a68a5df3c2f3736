"""The TFRecord schema (docs/CONTRACT.md §3) in one place: the keys, writing a tf.train.Example,
reading it back in the graph (``parse_example``) or in NumPy (``parse_proto``, for clients);
reading a shard's records (``iter_records``), with a corrupt one named (``RecordFault``).

Importing this module does not import TensorFlow (clients use the keys); the functions that
need its protobuf classes or ops import it when called.

A record holds one image: ``image/encoded`` (JPEG bytes), ``image/format``, ``image/filename``,
``image/height``, ``image/width``, ``image/channels``, ``image/shape`` (int64 ``[3]``), and per
object ``image/object/bbox/{ymin,xmin,ymax,xmax}`` (float, normalised to [0, 1]),
``image/object/bbox/label`` (int64, 1..N; the background 0 is never stored), ``.../label_text``,
``.../difficult`` and ``.../truncated`` (int64).
"""
import collections

import numpy as np

from utils import tf_errors
from utils.errors import ToolkitError

KEY_ENCODED = 'image/encoded'
KEY_FORMAT = 'image/format'
KEY_FILENAME = 'image/filename'
KEY_HEIGHT = 'image/height'
KEY_WIDTH = 'image/width'
KEY_CHANNELS = 'image/channels'
KEY_SHAPE = 'image/shape'
KEY_YMIN = 'image/object/bbox/ymin'
KEY_XMIN = 'image/object/bbox/xmin'
KEY_YMAX = 'image/object/bbox/ymax'
KEY_XMAX = 'image/object/bbox/xmax'
KEY_LABEL = 'image/object/bbox/label'
KEY_LABEL_TEXT = 'image/object/bbox/label_text'
KEY_DIFFICULT = 'image/object/bbox/difficult'
KEY_TRUNCATED = 'image/object/bbox/truncated'

BOX_KEYS = (KEY_YMIN, KEY_XMIN, KEY_YMAX, KEY_XMAX)   # the columns of ``bboxes [N, 4]``
# Per-object int64 lists, by the name both parsers give them.
OBJECT_INT_KEYS = {'labels': KEY_LABEL, 'difficult': KEY_DIFFICULT, 'truncated': KEY_TRUNCATED}


def serialize_example(record):
    """One image → serialized tf.train.Example (bytes, map keys sorted: reproducible).

    ``record`` has the attributes of ``voc_reader.VocRecord``: ``encoded`` (JPEG bytes),
    ``filename``, ``height``, ``width``, ``channels``, ``bboxes`` (N ``[ymin, xmin, ymax, xmax]``
    normalised), ``labels``, ``label_texts``, ``difficult``, ``truncated`` (N each).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see module docstring)

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[v if isinstance(v, bytes) else v.encode('utf-8') for v in values]))

    columns = np.asarray(record.bboxes, np.float32).reshape(-1, 4).T
    feature = {key: floats(column.tolist()) for key, column in zip(BOX_KEYS, columns)}
    feature.update({
        KEY_ENCODED: strings([record.encoded]),
        KEY_FORMAT: strings(['JPEG']),
        KEY_FILENAME: strings([record.filename]),
        KEY_HEIGHT: ints([record.height]),
        KEY_WIDTH: ints([record.width]),
        KEY_CHANNELS: ints([record.channels]),
        KEY_SHAPE: ints([record.height, record.width, record.channels]),
        KEY_LABEL: ints(record.labels),
        KEY_LABEL_TEXT: strings(record.label_texts),
        KEY_DIFFICULT: ints(record.difficult),
        KEY_TRUNCATED: ints(record.truncated),
    })
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def parse_proto(serialized):
    """Serialized Example → dict of NumPy values: ``encoded`` bytes, ``filename`` str,
    ``height``, ``width`` int, ``bboxes`` float32 ``[N, 4]`` normalised, ``labels``,
    ``difficult``, ``truncated`` int64 ``[N]``. Needs TensorFlow's protobuf classes only."""
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel
    feature = example_pb2.Example.FromString(serialized).features.feature
    parsed = {name: np.asarray(feature[key].int64_list.value, np.int64)
              for name, key in OBJECT_INT_KEYS.items()}
    parsed.update(
        encoded=feature[KEY_ENCODED].bytes_list.value[0],
        filename=feature[KEY_FILENAME].bytes_list.value[0].decode('utf-8'),
        height=int(feature[KEY_HEIGHT].int64_list.value[0]),
        width=int(feature[KEY_WIDTH].int64_list.value[0]),
        bboxes=np.stack([np.asarray(feature[key].float_list.value, np.float32)
                         for key in BOX_KEYS], axis=-1).reshape(-1, 4))
    return parsed


def parse_example(serialized):
    """Serialized Example (string tensor) → dict of tensors, in the graph: ``image`` uint8
    ``[H, W, 3]`` (JPEG or PNG), ``shape`` int32 ``[3]``, ``labels``, ``difficult``,
    ``truncated`` int64 ``[N]``, ``bboxes`` float32 ``[N, 4]`` normalised, ``filename`` string."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    spec = {key: tf.io.VarLenFeature(tf.float32) for key in BOX_KEYS}
    spec.update({key: tf.io.VarLenFeature(tf.int64) for key in OBJECT_INT_KEYS.values()})
    spec[KEY_ENCODED] = tf.io.FixedLenFeature((), tf.string)
    spec[KEY_FILENAME] = tf.io.FixedLenFeature((), tf.string, default_value='')
    features = tf.io.parse_single_example(serialized, spec)
    # decode_image rather than decode_jpeg: records made by other tools may hold PNG.
    image = tf.io.decode_image(features[KEY_ENCODED], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    parsed = {name: tf.sparse.to_dense(features[key]) for name, key in OBJECT_INT_KEYS.items()}
    parsed.update(
        image=image,
        shape=tf.shape(image, out_type=tf.int32),
        bboxes=tf.stack([tf.sparse.to_dense(features[key]) for key in BOX_KEYS], axis=1),
        filename=features[KEY_FILENAME])
    return parsed


RecordFault = collections.namedtuple('RecordFault', 'shard index image_id reason')
RecordFault.__doc__ = """One corrupt record: ``shard`` path, ``index`` (0-based, in the shard),
``image_id`` (``image/filename``; None when the framing broke and the shard ends there) and the
``reason`` in TensorFlow's words."""


def describe_fault(fault):
    """One line naming the shard, the record and what is wrong."""
    if fault.image_id is None:
        return ('TFRecord shard %s: record %d and the rest of the shard cannot be read (%s)'
                % (fault.shard, fault.index, fault.reason))
    return ('TFRecord shard %s: record %d, image %s, does not decode (%s)'
            % (fault.shard, fault.index, fault.image_id, fault.reason))


class CorruptRecordError(ToolkitError):
    """A TFRecord shard that cannot be read through; the message names the shard (and image),
    ``fault`` is the ``RecordFault``."""

    def __init__(self, fault, remedy=''):
        super(CorruptRecordError, self).__init__(describe_fault(fault) + remedy)
        self.fault = fault


def iter_records(path):
    """``(index, serialized record)`` of one shard; a broken framing (a cut or flipped record)
    raises ``CorruptRecordError`` naming the shard and the record. Needs TensorFlow's reader
    (imported here: the rest of this module runs without TensorFlow)."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.python.util import deprecation  # pylint: disable=import-outside-toplevel
    index = 0
    try:
        with deprecation.silence():  # the iterator works in graph and eager mode alike
            records_of_shard = tf.io.tf_record_iterator(path)
        for raw in records_of_shard:
            yield index, raw
            index += 1
    except tf.errors.OpError as e:
        raise CorruptRecordError(RecordFault(path, index, None, tf_errors.describe(e).cause))
