"""Finding the corrupt records of TFRecord shards, and naming them in one line.

A record is corrupt (``datasets.records.RecordFault``) when the shard's framing breaks (an
interrupted copy cuts the last record; a flipped bit fails its checksum: TensorFlow cannot read
past either, so the rest of that shard is lost) or when its example does not parse or its image
does not decode (only that record is lost; it is named by its image id, ``image/filename``).

The readers (``input_pipeline``, the serving client's mAP mode) meet these faults as TensorFlow
errors that name neither the shard nor the image: ``raise_if_corrupt(error, shards)`` reads the
shards again to say which, and ``skip_corrupt(spec)`` (``--skip_corrupt_records``) finds them all
before a run so that ``input_pipeline.make_dataset`` reads past them.
"""
import contextlib
import os

import tensorflow.compat.v1 as tf

from datasets import records
from datasets.records import CorruptRecordError, RecordFault, describe_fault
from utils import tf_errors
from utils import tf_logging


class _Decoder(object):
    """``records.parse_example`` on one serialized record: the pipeline's own parsing."""

    def __init__(self):
        self._graph = tf.Graph()
        with self._graph.as_default():
            self._raw = tf.placeholder(tf.string, [])
            self._parsed = records.parse_example(self._raw)['shape']
        self._session = tf.Session(graph=self._graph)

    def fault(self, raw):
        """None when the record parses and decodes, else TensorFlow's reason."""
        try:
            with tf_logging.native_stderr_held():  # libjpeg's own lines about a bad image
                self._session.run(self._parsed, {self._raw: raw})
        except tf.errors.OpError as e:
            return tf_errors.describe(e).cause
        return None

    def close(self):
        self._session.close()


def _image_id(raw):
    """The ``image/filename`` of a serialized record, or what stands in for it."""
    try:
        return records.parse_proto(raw)['filename'] or '(no image/filename)'
    except Exception:  # pylint: disable=broad-except  (any unparsable bytes: no id to give)
        return '(unparsable example)'


def scan(paths, decode=True, first_only=False):
    """``(faults, readable)``: the ``RecordFault`` list of the shards ``paths`` (framing; with
    ``decode`` every image too) and the number of records that read (and decode) well.

    Reads every record once (decoding: about one image decode per record); ``first_only`` stops
    at the first fault.
    """
    faults, readable = [], 0
    decoder = _Decoder() if decode else None
    try:
        for path in paths:
            try:
                for index, raw in records.iter_records(path):
                    reason = decoder.fault(raw) if decoder else None
                    if reason:
                        faults.append(RecordFault(path, index, _image_id(raw), reason))
                    else:
                        readable += 1
                    if faults and first_only:
                        return faults, readable
            except CorruptRecordError as e:
                faults.append(e.fault)
            if faults and first_only:
                break
    finally:
        if decoder:
            decoder.close()
    return faults, readable


def is_data_error(error):
    """Whether a TensorFlow error raised while reading shards may come from a corrupt record."""
    if isinstance(error, tf.errors.DataLossError):
        return True
    node = tf_errors.describe(error).node  # the input pipeline fails at the iterator's node
    return isinstance(error, tf.errors.InvalidArgumentError) and (
        node is None or 'IteratorGetNext' in node)


def raise_if_corrupt(error, paths, remedy=''):
    """Re-raises ``error``, a TensorFlow error met while reading ``paths``, as a
    ``CorruptRecordError`` naming the first corrupt record; returns when none is found."""
    if not is_data_error(error):
        return
    faults, _ = scan(paths, decode=not isinstance(error, tf.errors.DataLossError),
                     first_only=True)
    if faults:
        raise CorruptRecordError(faults[0], remedy) from None


@contextlib.contextmanager
def naming_corrupt_records(paths, remedy=''):
    """Runs the block; a TensorFlow error that a corrupt record of ``paths`` caused leaves it as
    a ``CorruptRecordError`` naming that record (other errors pass unchanged)."""
    try:
        yield
    except tf.errors.OpError as error:
        raise_if_corrupt(error, paths, remedy)
        raise


def skip_corrupt(spec, printer=print):
    """``(spec, skipped)``: ``spec`` (a ``DatasetSpec``) whose ``skipped_records`` lists every
    corrupt record, for ``input_pipeline.make_dataset`` to read past, and its ``num_samples``
    the records left; ``skipped`` is ``{'count', 'shards'}`` (records lost, shard names).
    Logs each fault and the total."""
    faults, readable = scan(spec.data_sources)
    for fault in faults:
        printer('warning: skipping corrupt record: %s' % describe_fault(fault))
    skipped = {'count': max(spec.num_samples - readable, len(faults)),
               'shards': sorted({os.path.basename(fault.shard) for fault in faults})}
    printer('--skip_corrupt_records: %d record%s skipped (shards: %s)'
            % (skipped['count'], '' if skipped['count'] == 1 else 's',
               ', '.join(skipped['shards']) or 'none'))
    return spec._replace(skipped_records=tuple(faults), num_samples=readable), skipped
