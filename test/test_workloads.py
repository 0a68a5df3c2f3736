"""bench/workloads.py: the forward pass and the trainer's step that the speed tools time, and
bench_threads.py's reading of its settings."""
import numpy as np
import pytest

from bench import bench_threads, workloads


def test_the_forward_pass_scores_and_boxes_every_image_with_the_threads_given():
    frozen_session, frozen = workloads.forward(2, 'float32', width_multiplier=0.125,
                                               threads=(1, 1))
    with frozen_session:
        predictions, localisations = frozen()
        # One op at a time, one thread each: what the session was given.
        assert frozen_session._config.intra_op_parallelism_threads == 1
        assert frozen_session._config.inter_op_parallelism_threads == 1
    assert [p.shape[0] for p in predictions] == [2] * 6
    totals = [p.reshape(2, -1, p.shape[-1]).sum(-1) for p in predictions]
    assert all(np.allclose(t, 1., atol=1e-5) for t in totals)   # softmax over the classes
    assert [l.shape[-1] for l in localisations] == [4] * 6


def test_a_training_step_updates_the_weights_and_the_global_step():
    import tensorflow.compat.v1 as tf
    session, step = workloads.training_step(1, 'float32', width_multiplier=0.125,
                                            flags=['--seed=0'])
    with session:
        graph = session.graph
        weights, = [v for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)
                    if v.op.name == 'ssd_300_vgg/conv4/conv4_1/weights']
        global_step = tf.train.get_global_step(graph)
        before = session.run(weights)
        step()
        step()
        assert session.run(global_step) == 2
        assert not np.allclose(session.run(weights), before)


def test_settings_are_read_as_intra_inter_pairs():
    assert bench_threads.parse_settings('0:0, 2:1,') == [(0, 0), (2, 1)]
    for bad, message in (('2', "'2' is not intra:inter"), ('-1:1', 'must be >= 0'),
                         (' , ', 'no setting given')):
        with pytest.raises(ValueError, match=message):
            bench_threads.parse_settings(bad)


def test_weights_are_initialised_as_trained_so_freezing_keeps_every_bias_and_fused_relu():
    import tensorflow.compat.v1 as tf
    session, forward = workloads.forward(1, 'float32', width_multiplier=0.125)
    with session:
        biases = [op for op in session.graph.get_operations()
                  if op.type == 'Const' and op.name.endswith('/biases')]
        assert len(biases) == 35   # every convolution of SSD-VGG300 and its heads
        assert all(np.abs(session.run(op.outputs[0])).min() > 0 for op in biases)
        metadata = tf.RunMetadata()
        forward(options=tf.RunOptions(output_partition_graphs=True), run_metadata=metadata)
    ops = [node.op for graph in metadata.partition_graphs for node in graph.node]
    # Zero biases would be folded away, leaving each convolution's ReLU a separate op.
    assert 'Relu' not in ops and 'BiasAdd' not in ops
    assert sum('FusedConv2D' in op for op in ops) == 35
