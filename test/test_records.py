"""datasets/records.py: an Example written by the converter's serialiser reads back the same in
the graph parser and the NumPy/protobuf parser, and holds docs/CONTRACT.md §3's keys."""
import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from datasets import records
from datasets.write_dataset import voc_reader

tf.disable_eager_execution()

IMAGE = np.random.RandomState(0).randint(0, 256, (20, 30, 3)).astype(np.uint8)
RECORD = voc_reader.VocRecord(
    image_id='000001', filename='000001.png',
    encoded=cv2.imencode('.png', IMAGE[..., ::-1])[1].tobytes(), height=20, width=30, channels=3, labels=[2, 5], label_texts=['Bus', 'Truck'],
    bboxes=[[.1, .2, .5, .6], [0., .25, 1., .75]], difficult=[0, 1], truncated=[1, 0])


def test_record_holds_the_spec_keys():
    example = tf.train.Example.FromString(records.serialize_example(RECORD))
    feature = example.features.feature
    assert set(feature) == {
        'image/encoded', 'image/format', 'image/filename', 'image/height', 'image/width',
        'image/channels', 'image/shape', 'image/object/bbox/xmin', 'image/object/bbox/ymin',
        'image/object/bbox/xmax', 'image/object/bbox/ymax', 'image/object/bbox/label',
        'image/object/bbox/label_text', 'image/object/bbox/difficult',
        'image/object/bbox/truncated'}
    assert list(feature['image/shape'].int64_list.value) == [20, 30, 3]
    np.testing.assert_allclose(feature['image/object/bbox/xmax'].float_list.value, [.6, .75])
    assert list(feature['image/object/bbox/label_text'].bytes_list.value) == [b'Bus', b'Truck']
    assert records.serialize_example(RECORD) == records.serialize_example(RECORD)  # reproducible


def test_graph_and_numpy_parsers_agree_with_the_record():
    serialized = records.serialize_example(RECORD)
    from_proto = records.parse_proto(serialized)
    with tf.Graph().as_default(), tf.Session() as sess:
        in_graph = sess.run(records.parse_example(tf.constant(serialized)))
    for parsed in (from_proto, in_graph):
        np.testing.assert_allclose(parsed['bboxes'], RECORD.bboxes, atol=1e-7)
        assert parsed['bboxes'].dtype == np.float32
        for name in ('labels', 'difficult', 'truncated'):
            np.testing.assert_array_equal(parsed[name], getattr(RECORD, name))
            assert parsed[name].dtype == np.int64
    assert from_proto['filename'] == in_graph['filename'].decode() == '000001.png'
    assert (from_proto['height'], from_proto['width']) == (20, 30)
    assert in_graph['shape'].tolist() == [20, 30, 3]
    np.testing.assert_array_equal(in_graph['image'], IMAGE)
    assert from_proto['encoded'] == RECORD.encoded
