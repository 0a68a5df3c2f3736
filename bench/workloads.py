"""The two workloads the speed tools time and profile, built as the toolkit's own paths build
them: the forward pass of the inference tools and one step of the trainer.

Each builder returns ``(session, run)``; ``run(**kwargs)`` executes one forward pass or training
step (``kwargs`` go to ``session.run``: ``options``/``run_metadata`` for a traced run). Weights
are random; the time of an op does not depend on their values. ``threads=(intra, inter)`` sets the
session's ``intra_op_parallelism_threads`` / ``inter_op_parallelism_threads`` (0 = TensorFlow
chooses); ``None`` keeps what the tool itself would use.
"""
import os
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKLOADS = ('forward', 'train')


def with_threads(config, threads):
    """``config`` (a ``ConfigProto``) with the ``(intra, inter)`` thread counts, if given."""
    if threads is not None:
        config.intra_op_parallelism_threads, config.inter_op_parallelism_threads = threads
    return config


def initialize_like_trained(session, seed=0):
    """Initialises the variables of ``session``'s graph and gives every bias a small random value
    (normal, stddev 0.1), as a trained checkpoint has.

    Freshly initialised biases are zeros, which graph optimisation folds away once the weights are
    frozen into constants; without the bias add, a convolution's ReLU is no longer fused into it,
    and the frozen graph is unlike every exported model's (a bfloat16 forward pass at batch 1 runs
    a seventh slower that way)."""
    import numpy as np
    import tensorflow.compat.v1 as tf
    with session.graph.as_default():
        session.run(tf.global_variables_initializer())
        rng = np.random.RandomState(seed)
        for variable in tf.global_variables():
            if variable.op.name.endswith('/biases'):
                variable.load(rng.normal(0., 0.1, variable.shape.as_list()).astype(
                    variable.dtype.base_dtype.as_numpy_dtype), session)


def sample_tfrecords():
    """TFRecords of 64 generated vehicle-like images (a temporary folder); returns it."""
    from datasets.write_dataset import dataset_to_tfrecords, sample_data
    work = tempfile.mkdtemp(prefix='bench_records_')
    sample_data.generate_voc_dataset(os.path.join(work, 'voc'), num_images=64, seed=1)
    dataset_to_tfrecords.convert(os.path.join(work, 'voc'), os.path.join(work, 'tfrecords'),
                                 'vehicle', split='train')
    return os.path.join(work, 'tfrecords')


def forward(batch_size, precision, width_multiplier=1., num_classes=21, frozen=True,
            threads=None):
    """The network outputs as the detector, evaluator and exports compute them
    (``model/inference.py``: casts in the graph for bfloat16, weights frozen into constants unless
    ``frozen=False``; ``initialize_like_trained``), fed ``batch_size`` random 300x300 images."""
    import numpy as np
    import tensorflow.compat.v1 as tf
    from model import inference
    from nets import nets_factory
    config = with_threads(tf.ConfigProto(), threads)
    net = nets_factory.build_network('ssd_vgg_300', num_classes, width_multiplier)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 300, 300, 3])
        outputs = inference.network_outputs(net, images, precision)
        session = tf.Session(config=config)
        initialize_like_trained(session)
        if frozen:
            graph, (images, outputs) = inference.frozen_graph(session, (images, outputs))
            session.close()
            session = tf.Session(graph=graph, config=config)
    feed = {images: np.random.RandomState(0).uniform(
        -120., 130., (batch_size, 300, 300, 3)).astype(np.float32)}
    return session, lambda **kwargs: session.run(outputs, feed, **kwargs)


def training_step(batch_size, precision, width_multiplier=1., threads=None, flags=()):
    """One step of the trainer's own graph (``training/graph.py``: input pipeline, losses,
    RMSProp update, the trainer's session options) on generated records, every layer trained;
    ``flags`` are more ``train_ssd_network.py`` flags."""
    import tensorflow.compat.v1 as tf
    import train_ssd_network
    from nets import nets_factory
    from training import cluster, graph, session as session_lib, trainer
    options = train_ssd_network.define_flags().values
    options([sys.argv[0], '--dataset_dir=%s' % sample_tfrecords(),
             '--train_model_dir=%s' % tempfile.mkdtemp(prefix='bench_train_'),
             '--batch_size=%d' % batch_size, '--precision=%s' % precision,
             '--width_multiplier=%g' % width_multiplier, '--clone_on_cpu'] + list(flags))
    trainer.check_flags(options)
    config = cluster.setup_cluster(options)[0]
    spec = trainer.load_dataset(options)
    net = nets_factory.build_network(options.model_name, spec.num_classes,
                                     options.width_multiplier)
    with tf.Graph().as_default():
        handles = graph.build_training_graph(options, net, spec, config,
                                             tf.train.get_or_create_global_step())
        session = tf.Session(config=with_threads(session_lib.session_config(options), threads))
        session.run([tf.global_variables_initializer(), handles['iterator'].initializer])
    return session, lambda **kwargs: session.run(handles['train_tensor'], **kwargs)
