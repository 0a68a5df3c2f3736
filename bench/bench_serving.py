r"""Serving benchmark: export time, per-request latency and request size in-process, over gRPC and
over REST (both signatures), against the local model server (``python -m serving.model_server``,
started here as a separate process); then, for the float32 and the bfloat16 export, a batch of
8 JPEGs in-process and gRPC throughput with 1 and --clients concurrent clients, with batching
off, always on and adaptive (the default of --enable_batching), the three servers timed in turn.

    python bench/bench_serving.py [--repeats=7] [--width_multiplier=1.0] [--clients=4] \
        [--throughput_rounds=3] [--ckpt_path=ckpt/fine_tuning] [--image_path=picture.jpg]

Without --ckpt_path a randomly initialised SSD-VGG300 (6 classes) is exported: latency does not
depend on the weights. Prints ``[figure]`` lines (medians of --repeats runs). Target: gRPC with
JPEG bytes adds under 15% to the in-process latency of the same signature.
"""
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

tf_logging.start_tool(__name__)  # as a script: no TensorFlow C++ log lines

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

from bench import common, workloads  # noqa: E402
from serving.clients import client as client_lib  # noqa: E402
from serving.clients import protocols  # noqa: E402
from utils import cli  # noqa: E402
from utils import cpu_features  # noqa: E402

MODEL_NAME = 'ssd'
SHARED_IMAGE = os.path.join(REPO_ROOT, '..', 'shared', 'data', 'test_images', 'vehicle_0.jpg')


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``): the model, then the load."""
    flag_set = cli.FlagSet()
    flag_set.group('Model')
    flag_set.string('ckpt_path', None, 'Checkpoint to export (default: a random one).')
    flag_set.float('width_multiplier', 1.0, 'Width of the random network (1.0 = SSD-VGG300).')
    flag_set.group('Load')
    flag_set.string('image_path', None, 'JPEG to send (default: a shared street photo, '
                    'else a generated 432x320 picture).')
    flag_set.integer('repeats', 7, 'Timed requests per latency figure (the median is reported).')
    flag_set.integer('clients', 4, 'Concurrent clients of the throughput figure.')
    flag_set.integer('requests_per_client', 6, 'Requests each concurrent client sends in one '
                     'round of a throughput figure.')
    flag_set.integer('throughput_rounds', 3, 'Rounds of each throughput figure (the median is '
                     'reported), round-robin over the servers compared.')
    flag_set.integer('batch_timeout_micros', 20000, 'Batching timeout of the batching figures.')
    return flag_set


def random_checkpoint(train_dir, width):
    """A randomly initialised SSD-VGG300 checkpoint (biases too, as ``workloads.
    initialize_like_trained`` gives them) with model_info.json (vehicle classes)."""
    from datasets import dataset_config
    from nets import nets_factory
    from model import model_info
    from utils import slim_compat
    slim = slim_compat.import_slim()
    names = list(dataset_config.VEHICLE_CLASSES)
    with tf.Graph().as_default():
        net = nets_factory.build_network('ssd_vgg_300', len(names) + 1, width_multiplier=width)
        with slim.arg_scope(net.arg_scope(data_format='NHWC')):
            net.net(tf.zeros([1, 300, 300, 3]), is_training=False)
        with tf.Session() as sess:
            workloads.initialize_like_trained(sess)
            prefix = tf.train.Saver().save(sess, os.path.join(train_dir, 'model.ckpt'),
                                           global_step=0)
    model_info.write_model_info(train_dir, model_name='ssd_vgg_300', num_classes=len(names) + 1,
                                class_names=names, width_multiplier=width,
                                dataset_name='vehicle', img_shape=[300, 300])
    return prefix


def read_image(image_path):
    path = image_path or (SHARED_IMAGE if os.path.isfile(SHARED_IMAGE) else None)
    if path:
        with open(path, 'rb') as f:
            return f.read(), os.path.basename(path)
    import cv2
    rng = np.random.RandomState(0)
    field = cv2.resize(rng.uniform(0, 255, (8, 10, 3)).astype(np.float32), (432, 320))
    return cv2.imencode('.jpg', field.astype(np.uint8))[1].tobytes(), 'generated 432x320'


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def start_model_server(base_path, extra_flags=(), log_path=os.devnull):
    """``python -m serving.model_server`` in its own process, its log in ``log_path``; returns
    (process, grpc, rest)."""
    grpc_port, rest_port = free_port(), free_port()
    with open(log_path, 'w') as log:
        process = subprocess.Popen(
            [sys.executable, '-m', 'serving.model_server', '--model_name=%s' % MODEL_NAME,
             '--model_base_path=%s' % base_path, '--port=%d' % grpc_port,
             '--rest_api_port=%d' % rest_port, '--file_system_poll_wait_seconds=60']
            + list(extra_flags),
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=log)
    import requests
    deadline = time.time() + 300
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError('model server exited with status %d' % process.returncode)
        try:
            status = requests.get('http://127.0.0.1:%d/v1/models/%s' % (rest_port, MODEL_NAME),
                                  timeout=2).json()
            if any(v.get('state') == 'AVAILABLE' for v in status.get('model_version_status', [])):
                return process, grpc_port, rest_port
        except (requests.RequestException, ValueError):
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError('model server not ready after 300 s')


def in_process_runners(version_dir, feeds):
    """Loads the SavedModel in this process; returns ({signature: function running it on
    ``feeds[signature]`` (input key → value)}, session to close)."""
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.Session(graph=graph)
        meta = tf.saved_model.loader.load(sess, ['serve'], version_dir)

    def runner(signature):
        sig = meta.signature_def[signature]
        fetches = {k: v.name for k, v in sig.outputs.items()}
        feed = {sig.inputs[k].name: v for k, v in feeds[signature].items()}
        return lambda: sess.run(fetches, feed)

    return {signature: runner(signature) for signature in feeds}, sess


def seconds_of(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_runs(cases, repeats, measure=seconds_of):
    """``repeats`` values of ``measure(fn)`` (default: its seconds) for each ``name → fn`` in
    ``cases``, run round-robin (one warm-up each) so that a change of background load hits every
    case alike."""
    for fn in cases.values():
        fn()
    values = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            values[name].append(measure(fn))
    return values


def interleaved_medians(cases, repeats):
    """Median seconds of each ``name → fn`` in ``cases`` (see ``interleaved_runs``)."""
    return {name: float(np.median(v)) for name, v in interleaved_runs(cases, repeats).items()}


def throughput(make_transport, inputs, clients, requests_each):
    """Requests per second of ``clients`` threads, each with its own connection."""
    return concurrent_rate([make_transport() for _ in range(clients)],
                           [[inputs] * requests_each] * clients)


def concurrent_rate(transports, shares):
    """Requests per second of one thread per transport, each sending its share (a list of
    request inputs) to the server; connections are made and warmed up outside the timing, and
    closed after."""
    for transport, share in zip(transports, shares):
        transport.predict(MODEL_NAME, share[0])
    errors = []

    def work(transport, share):
        try:
            for inputs in share:
                transport.predict(MODEL_NAME, inputs)
        except protocols.ServingError as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=pair) for pair in zip(transports, shares)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    for transport in transports:
        transport.close()
    if errors:
        raise RuntimeError('%d failed requests, first: %s' % (len(errors), errors[0]))
    return sum(len(share) for share in shares) / elapsed


def stop_model_server(process):
    process.terminate()
    process.wait(timeout=60)


# The adaptive scheduler's log line (serving/server/batching.py) once it has measured both modes.
BATCHING_DECISION = re.compile(r'batching: (\S+) rows/s batched, (\S+) rows/s run at once: '
                               r'(batching|running requests at once)')


# A decision takes a warm-up round and a window of each mode (tens of rows at the default
# batch sizes): rounds of untimed requests go on until it comes, up to this many requests.
MAX_DECISION_REQUESTS = 400


def adaptive_decision(make_transport, inputs, clients, requests_each, log_path):
    """Sends untimed rounds of requests from ``clients`` clients (``requests_each`` each) until
    the server logs its first adaptive batching decision; returns a note of it."""
    sent = 0
    while True:
        with open(log_path) as f:
            found = BATCHING_DECISION.findall(f.read())
        if found:
            batched, direct, chosen = found[-1]
            return 'chose %s (%s rows/s batched, %s at once)' % (
                'batching' if chosen == 'batching' else 'direct runs', batched, direct)
        if sent >= MAX_DECISION_REQUESTS:
            raise RuntimeError('the server logged no batching decision after %d requests (%s)'
                               % (sent, log_path))
        throughput(make_transport, inputs, clients, requests_each)
        sent += clients * requests_each


def precision_and_batching_figures(options, ckpt, work_dir, encoded):
    """Per precision: in-process serving_default on a batch of 8 JPEGs, and gRPC throughput
    with 1 and --clients clients against three servers side by side: batching off, always on,
    and adaptive (--max_batch_size = --clients). The adaptive server is new for each client
    count and timed once it has measured both modes and chosen; then --throughput_rounds rounds
    go round-robin over the three servers (medians reported), so drift hits all alike."""
    import export_saved_model
    parameters = os.path.join(work_dir, 'batching.txt')
    with open(parameters, 'w') as f:
        f.write('max_batch_size { value: %d }\nbatch_timeout_micros { value: %d }\n'
                % (options.clients, options.batch_timeout_micros))
    batching_flags = ['--enable_batching', '--batching_parameters_file=%s' % parameters]
    modes = collections.OrderedDict([
        ('off', []), ('always', batching_flags + ['--noadaptive_batching']),
        ('adaptive', batching_flags)])
    inputs = {'encoded_image': np.array([encoded], dtype=object)}
    batch = {'encoded_image': [encoded] * 8}
    for precision in cpu_features.PRECISIONS:
        version_dir = export_saved_model.export(
            ckpt, os.path.join(work_dir, 'export_' + precision), MODEL_NAME, precision=precision)
        local, sess = in_process_runners(version_dir, {'serving_default': batch})
        seconds = interleaved_medians({'batch8': local['serving_default']},
                                      options.repeats)['batch8']
        sess.close()
        common.report('in_process_serving_default_batch8_%s' % precision, seconds, 's/batch',
                      '8 JPEGs in one request, %.2f s/image' % (seconds / 8))
        for clients in (1, options.clients):
            servers = collections.OrderedDict()
            try:
                for mode, extra in modes.items():
                    log_path = os.path.join(work_dir, 'server_%s.log' % mode)
                    process, grpc_port, _ = start_model_server(os.path.dirname(version_dir),
                                                               extra, log_path)
                    servers[mode] = (process, grpc_port, log_path)
                transports = {mode: (lambda port=port: protocols.GrpcTransport(
                    '127.0.0.1:%d' % port)) for mode, (_, port, _) in servers.items()}
                decision = adaptive_decision(transports['adaptive'], inputs, clients,
                                             options.requests_per_client, servers['adaptive'][2])
                rates = interleaved_runs(
                    {mode: (lambda mode=mode: throughput(transports[mode], inputs, clients,
                                                         options.requests_per_client))
                     for mode in modes}, options.throughput_rounds, measure=lambda fn: fn())
            finally:
                for process, _, _ in servers.values():
                    stop_model_server(process)
            for mode, rounds in rates.items():
                note = ('one JPEG per request, median of %d rounds of %d requests each '
                        '(%.3g-%.3g)' % (options.throughput_rounds, options.requests_per_client,
                                         min(rounds), max(rounds)))
                if mode != 'off':
                    note += ', max_batch_size %d, timeout %d us' % (
                        options.clients, options.batch_timeout_micros)
                if mode == 'adaptive':
                    note += '; ' + decision
                common.report('grpc_throughput_%s_batching_%s_%d_clients' % (
                    precision, mode, clients), float(np.median(rounds)), 'requests/s', note)


def _benchmark(options):
    tf.logging.set_verbosity(tf.logging.ERROR)
    import export_saved_model
    work_dir = tempfile.mkdtemp(prefix='bench_serving_')
    server = None
    try:
        ckpt = options.ckpt_path or random_checkpoint(os.path.join(work_dir, 'train'),
                                                      options.width_multiplier)
        start = time.perf_counter()
        version_dir = export_saved_model.export(ckpt, os.path.join(work_dir, 'export'),
                                                MODEL_NAME)
        common.report('export_saved_model', time.perf_counter() - start, 's',
                      'both signatures, width %g' % options.width_multiplier)

        encoded, image_name = read_image(options.image_path)
        preprocessed = client_lib.preprocess(client_lib.decode_image(encoded))
        jpeg_inputs = {'encoded_image': np.array([encoded], dtype=object)}
        float_inputs = {'images': preprocessed}

        server, grpc_port, rest_port = start_model_server(os.path.dirname(version_dir))
        grpc = protocols.GrpcTransport('127.0.0.1:%d' % grpc_port)
        rest = protocols.RestTransport('127.0.0.1:%d' % rest_port)
        local, sess = in_process_runners(version_dir, {
            'serving_default': {'encoded_image': [encoded]}, 'detected_model': float_inputs})

        def remote(transport, inputs, signature):
            return lambda: transport.predict(MODEL_NAME, inputs, signature)

        # name → (function, request bytes, note)
        cases = collections.OrderedDict([
            ('in_process_serving_default', (local['serving_default'], len(encoded),
                                            'JPEG %s, session.run' % image_name)),
            ('in_process_detected_model', (local['detected_model'], preprocessed.nbytes,
                                           'float32 [300,300,3], session.run')),
            ('grpc_detected_model', (remote(grpc, float_inputs, 'detected_model'),
                                     grpc.make_request(MODEL_NAME, float_inputs,
                                                       'detected_model').ByteSize(),
                                     'PredictRequest, float32 tensor_content')),
            ('grpc_serving_default_jpeg', (remote(grpc, jpeg_inputs, 'serving_default'),
                                           grpc.make_request(MODEL_NAME, jpeg_inputs).ByteSize(),
                                           'PredictRequest, JPEG bytes')),
            ('rest_serving_default_b64_jpeg', (remote(rest, jpeg_inputs, 'serving_default'),
                                               len(rest.encode_inputs(jpeg_inputs,
                                                                      'serving_default')),
                                               'JSON body, {"b64": JPEG}')),
            ('rest_detected_model_json_floats', (remote(rest, float_inputs, 'detected_model'),
                                                 len(rest.encode_inputs(float_inputs,
                                                                        'detected_model')),
                                                 'JSON body, 270000 floats')),
        ])
        latency = interleaved_medians(
            collections.OrderedDict((name, case[0]) for name, case in cases.items()),
            options.repeats)
        for name, (_, size, note) in cases.items():
            common.report(name, latency[name] * 1e3, 'ms/request', note)
            common.report(name + '_request_size', size / 1024., 'KiB', note)
        overhead = latency['grpc_serving_default_jpeg'] / latency['in_process_serving_default'] - 1.
        common.report('grpc_jpeg_overhead_vs_in_process', overhead * 100., '%',
                      'target < 15%%: %s' % ('met' if overhead < 0.15 else 'NOT met'))
        sess.close()
        grpc.close()
        rest.close()

        stop_model_server(server)
        server = None
        precision_and_batching_figures(options, ckpt, work_dir, encoded)
    finally:
        if server is not None:
            stop_model_server(server)
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
