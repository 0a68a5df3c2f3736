"""Weights frozen into constants (model/inference.py's ``restored_session``): the same detections
as the graph with variables, bfloat16 weight casts done once at freeze time, names kept."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from model import inference
from utils import cpu_features
from test.checkpoints import make_checkpoint


@pytest.fixture(scope='module')
def prefix(tmp_path_factory):
    return make_checkpoint(str(tmp_path_factory.mktemp('frozen_ckpt')))


def _detections(prefix, precision, freeze, images):
    """Detections and raw outputs of ``images`` [B, 300, 300, 3] through ``restored_session``;
    also returns the op types of the graph the session runs."""
    with tf.Graph().as_default():
        net, _, prefix = inference.load_model(prefix)
        inputs = tf.placeholder(tf.float32, [None, 300, 300, 3], name='inputs')
        detections = inference.detect(net, inputs, tf.constant([[240, 320]] * len(images)),
                                      select_threshold=0.05, precision=precision)
        session, (inputs, detections) = inference.restored_session(prefix, (inputs, detections),
                                                                   freeze=freeze)
    with session:
        ops = [node.op for node in session.graph.as_graph_def().node]
        return session.run(detections, {inputs: images}), ops


@pytest.mark.parametrize('precision', cpu_features.PRECISIONS)
def test_frozen_graph_detects_what_the_variables_do(prefix, precision):
    images = np.random.RandomState(0).uniform(-120., 130., (2, 300, 300, 3)).astype(np.float32)
    variables, variable_ops = _detections(prefix, precision, False, images)
    frozen, frozen_ops = _detections(prefix, precision, True, images)
    assert 'VarHandleOp' in variable_ops and 'VarHandleOp' not in frozen_ops
    assert 'ReadVariableOp' not in frozen_ops
    # The same weights reach the same kernels: equal to float32 rounding (measured: identical).
    assert variables['num_detections'].tolist() == frozen['num_detections'].tolist()
    assert variables['num_detections'].min() > 0
    np.testing.assert_array_equal(variables['detection_classes'], frozen['detection_classes'])
    np.testing.assert_allclose(variables['detection_scores'], frozen['detection_scores'],
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(variables['detection_boxes'], frozen['detection_boxes'],
                               atol=1e-3, rtol=0)   # pixels
    for before, after in zip(variables['predictions'], frozen['predictions']):
        np.testing.assert_allclose(before, after, atol=1e-6, rtol=0)


def constant_casts(graph_def):
    """Names of the Cast nodes of ``graph_def`` that read a constant (through Identity nodes):
    work a run repeats for nothing."""
    nodes = {node.name: node for node in graph_def.node}

    def source(name):
        node = nodes[name.split(':')[0]]
        return source(node.input[0]) if node.op == 'Identity' else node
    return [node.name for node in graph_def.node
            if node.op == 'Cast' and source(node.input[0]).op == 'Const']


def test_bfloat16_freeze_casts_no_weight_per_run(prefix):
    with tf.Graph().as_default():
        net, _, prefix = inference.load_model(prefix)
        inputs = tf.placeholder(tf.float32, [1, 300, 300, 3])
        outputs = inference.network_outputs(net, inputs, 'bfloat16')
        with inference.restored_session(prefix, outputs, freeze=False)[0] as session:
            # TensorFlow's freezing alone leaves a cast per weight, which the check sees.
            plain = tf.graph_util.convert_variables_to_constants(
                session, session.graph.as_graph_def(),
                [t.op.name for t in tf.nest.flatten(outputs)])
            graph, _ = inference.frozen_graph(session, (inputs, outputs))
    assert len(constant_casts(plain)) >= 35
    graph_def = graph.as_graph_def()
    assert constant_casts(graph_def) == []
    nodes = {node.name: node for node in graph_def.node}
    convs = [node for node in graph_def.node if node.op == 'Conv2D']
    assert len(convs) == 35
    for conv in convs:
        assert conv.attr['T'].type == tf.bfloat16.as_datatype_enum
        assert nodes[conv.input[1]].op == 'Const'
        assert nodes[conv.input[1]].attr['dtype'].type == tf.bfloat16.as_datatype_enum


def test_fold_weight_casts_replaces_the_cast_by_its_value():
    weights = np.array([[1.0, 1.00390625, 3.14159], [-2.5, 1e-3, 65504.]], np.float32)
    with tf.Graph().as_default() as graph:
        inputs = tf.placeholder(tf.bfloat16, [1, 2], name='inputs')
        read = tf.identity(tf.constant(weights, name='w'), name='w/read')
        output = tf.matmul(inputs, tf.cast(read, tf.bfloat16, name='w_bf16'), name='out')
    folded = inference.fold_weight_casts(graph.as_graph_def(), ['out'])
    nodes = {node.name: node for node in folded.node}
    assert sorted(nodes) == ['inputs', 'out', 'w_bf16']   # the float32 constant is gone
    assert nodes['w_bf16'].op == 'Const'
    value = tf.make_ndarray(nodes['w_bf16'].attr['value'].tensor)
    assert value.dtype == tf.bfloat16.as_numpy_dtype
    # bfloat16 keeps 8 bits of mantissa: round to nearest even, checked on the bit patterns.
    bits = weights.view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(value.view(np.uint16), rounded)
    with tf.Graph().as_default():
        tf.import_graph_def(folded, name='')
        with tf.Session() as sess:
            result = sess.run('out:0', {'inputs:0': np.array([[1., 0.]], np.float32)})
    np.testing.assert_array_equal(np.asarray(result, np.float32), value[:1].astype(np.float32))
    assert output.name == 'out:0'


def test_casts_of_one_weight_share_one_constant():
    weights = np.arange(6, dtype=np.float32).reshape(2, 3) / 7.
    with tf.Graph().as_default() as graph:
        inputs = tf.placeholder(tf.bfloat16, [1, 2], name='inputs')
        read = tf.identity(tf.constant(weights, name='w'), name='w/read')
        first = tf.matmul(inputs, tf.cast(read, tf.bfloat16, name='cast_a'), name='first')
        second = tf.matmul(inputs, tf.cast(read, tf.bfloat16, name='cast_b'), name='second')
    folded = inference.fold_weight_casts(graph.as_graph_def(), ['first', 'second'])
    nodes = {node.name: node for node in folded.node}
    assert sorted(nodes) == ['cast_a', 'first', 'inputs', 'second']
    assert nodes['second'].input[1] == 'cast_a' and nodes['first'].input[1] == 'cast_a'
    with tf.Graph().as_default():
        tf.import_graph_def(folded, name='')
        with tf.Session() as sess:
            a, b = sess.run(['first:0', 'second:0'], {'inputs:0': np.ones((1, 2), np.float32)})
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    assert first.name != second.name
