"""tf.data input pipeline: TFRecord shards of a DatasetSpec -> decoded examples (graph mode ready).

Every element is a dict (``datasets.records.parse_example``): ``image`` uint8 [H, W, 3], ``shape``
int32 [3] (H, W, 3), ``labels`` int64 [N], ``bboxes`` float32 [N, 4] normalised
[ymin, xmin, ymax, xmax], ``difficult`` int64 [N], ``truncated`` int64 [N], ``filename`` string.

Use from a graph: ``tf.compat.v1.data.make_one_shot_iterator(make_dataset(spec, True))`` or
``make_initializable_iterator``.
"""
import tensorflow.compat.v1 as tf

from datasets import records

AUTOTUNE = tf.data.experimental.AUTOTUNE
SHUFFLE_BUFFER = 1000   # examples; whole small datasets fit, big ones get a well-mixed window
INTERLEAVE_CYCLE = 4    # shards read at once when shuffling


def _record_reader(skipped_records):
    """``shard path tensor -> dataset of serialized records``, reading past ``skipped_records``
    (``datasets.record_check.RecordFault``): a shard whose framing broke ends before the broken
    record, a record whose image does not decode is left out."""
    if not skipped_records:
        return tf.data.TFRecordDataset
    ends = {f.shard: f.index for f in skipped_records if f.image_id is None}
    paths = tf.constant(sorted(ends) or [''])
    limits = tf.constant([ends[p] for p in sorted(ends)] or [-1], tf.int64)
    left_out = tf.constant(['%s#%d' % (f.shard, f.index) for f in skipped_records
                            if f.image_id is not None] or [''])

    def read(path):
        found = tf.equal(paths, path)
        limit = tf.reduce_max(tf.where(found, limits, -tf.ones_like(limits)))
        indexed = tf.data.TFRecordDataset(path).take(limit).enumerate()
        kept = indexed.filter(lambda i, _: tf.logical_not(tf.reduce_any(tf.equal(
            left_out, tf.strings.join([path, tf.strings.as_string(i)], '#')))))
        return kept.map(lambda _, record: record)
    return read


def make_dataset(spec, shuffle, num_epochs=None, seed=None, num_parallel_calls=AUTOTUNE):
    """DatasetSpec -> tf.data.Dataset of the dicts above (unbatched, decoded, prefetched).

    ``shuffle``: shuffle shard order, interleave shards and shuffle examples (training); when
    False the records come in shard order (evaluation). ``num_epochs``: None repeats forever.
    ``seed`` makes a shuffled order reproducible. The records of ``spec.skipped_records`` are
    read past (``datasets.record_check.skip_corrupt``).
    """
    files = tf.data.Dataset.from_tensor_slices(list(spec.data_sources))
    read = _record_reader(spec.skipped_records)
    # Keep the element order stable whenever the caller can observe it: no shuffle, or a seed.
    deterministic = not shuffle or seed is not None
    if shuffle:
        files = files.shuffle(len(spec.data_sources), seed=seed)
        serialized = files.repeat(num_epochs).interleave(
            read, cycle_length=min(INTERLEAVE_CYCLE, len(spec.data_sources)),
            num_parallel_calls=num_parallel_calls, deterministic=deterministic)
        serialized = serialized.shuffle(min(SHUFFLE_BUFFER, spec.num_samples), seed=seed)
    else:
        serialized = files.flat_map(read).repeat(num_epochs)
    examples = serialized.map(records.parse_example, num_parallel_calls=num_parallel_calls,
                              deterministic=deterministic)
    return examples.prefetch(AUTOTUNE)
