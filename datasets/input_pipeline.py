"""tf.data input pipeline: TFRecord shards of a DatasetSpec -> decoded examples (graph mode ready).

Every element is a dict: ``image`` uint8 [H, W, 3], ``shape`` int32 [3] (H, W, 3), ``labels``
int64 [N], ``bboxes`` float32 [N, 4] normalised [ymin, xmin, ymax, xmax], ``difficult`` int64 [N],
``truncated`` int64 [N], ``filename`` string scalar.

Use from a graph: ``tf.compat.v1.data.make_one_shot_iterator(make_dataset(spec, True))`` or
``make_initializable_iterator``.
"""
import tensorflow.compat.v1 as tf

from datasets import dataset_config as cfg

AUTOTUNE = tf.data.experimental.AUTOTUNE
SHUFFLE_BUFFER = 1000   # examples; whole small datasets fit, big ones get a well-mixed window
INTERLEAVE_CYCLE = 4    # shards read at once when shuffling

_FEATURES = {
    cfg.KEY_ENCODED: tf.io.FixedLenFeature((), tf.string),
    cfg.KEY_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=''),
    cfg.KEY_YMIN: tf.io.VarLenFeature(tf.float32),
    cfg.KEY_XMIN: tf.io.VarLenFeature(tf.float32),
    cfg.KEY_YMAX: tf.io.VarLenFeature(tf.float32),
    cfg.KEY_XMAX: tf.io.VarLenFeature(tf.float32),
    cfg.KEY_LABEL: tf.io.VarLenFeature(tf.int64),
    cfg.KEY_DIFFICULT: tf.io.VarLenFeature(tf.int64),
    cfg.KEY_TRUNCATED: tf.io.VarLenFeature(tf.int64),
}


def parse_example(serialized):
    """Serialized tf.train.Example (SPEC section 3) -> dict of tensors (see module docstring)."""
    features = tf.io.parse_single_example(serialized, _FEATURES)

    def dense(key):
        return tf.sparse.to_dense(features[key])

    # decode_image rather than decode_jpeg: records made by other tools may hold PNG.
    image = tf.io.decode_image(features[cfg.KEY_ENCODED], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    bboxes = tf.stack([dense(cfg.KEY_YMIN), dense(cfg.KEY_XMIN),
                       dense(cfg.KEY_YMAX), dense(cfg.KEY_XMAX)], axis=1)
    return {
        'image': image,
        'shape': tf.shape(image, out_type=tf.int32),
        'labels': dense(cfg.KEY_LABEL),
        'bboxes': bboxes,
        'difficult': dense(cfg.KEY_DIFFICULT),
        'truncated': dense(cfg.KEY_TRUNCATED),
        'filename': features[cfg.KEY_FILENAME],
    }


def make_dataset(spec, shuffle, num_epochs=None, seed=None, num_parallel_calls=AUTOTUNE):
    """DatasetSpec -> tf.data.Dataset of parse_example dicts (unbatched, decoded, prefetched).

    ``shuffle``: shuffle shard order, interleave shards and shuffle examples (training); when
    False the records come in shard order (evaluation). ``num_epochs``: None repeats forever.
    ``seed`` makes a shuffled order reproducible.
    """
    files = tf.data.Dataset.from_tensor_slices(list(spec.data_sources))
    # Keep the element order stable whenever the caller can observe it: no shuffle, or a seed.
    deterministic = not shuffle or seed is not None
    if shuffle:
        files = files.shuffle(len(spec.data_sources), seed=seed)
        records = files.repeat(num_epochs).interleave(
            tf.data.TFRecordDataset, cycle_length=min(INTERLEAVE_CYCLE, len(spec.data_sources)),
            num_parallel_calls=num_parallel_calls, deterministic=deterministic)
        records = records.shuffle(min(SHUFFLE_BUFFER, spec.num_samples), seed=seed)
    else:
        records = files.flat_map(tf.data.TFRecordDataset).repeat(num_epochs)
    examples = records.map(parse_example, num_parallel_calls=num_parallel_calls,
                           deterministic=deterministic)
    return examples.prefetch(AUTOTUNE)
