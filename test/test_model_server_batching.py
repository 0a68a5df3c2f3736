"""--enable_batching on the local server: concurrent serving_default requests share one session
run and each gets exactly the answer it gets alone; fixed-shape signatures are not batched."""
import threading

import grpc
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.server import batching
from serving.server.model_server import start_server
from test import serving_fixtures
from test.serving_fixtures import run_signature, sample_jpeg

MODEL = 'ssd'
CLIENTS = 4


@pytest.fixture(scope='module')
def batching_server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp('models'))
    version_dir = serving_fixtures.write_model_version(base, 1)
    # A timeout far longer than the test: batches are cut by max_batch_size alone.
    parameters = batching.DEFAULT_PARAMETERS._replace(max_batch_size=CLIENTS,
                                                      batch_timeout_micros=30 * 10 ** 6)
    srv = start_server(MODEL, base, port=0, rest_api_port=None, batching=parameters)
    srv.version_dir = version_dir
    yield srv
    srv.stop()


def _predict(port, signature, alias, value):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    with grpc.insecure_channel('127.0.0.1:%d' % port) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def _scheduler(srv):
    with srv.manager.acquire(MODEL) as servable:
        return servable._scheduler


def test_concurrent_requests_share_a_run_and_get_their_own_answers(batching_server):
    images = [sample_jpeg(160 + 20 * i, 200 - 10 * i, seed=i) for i in range(CLIENTS)]
    answers = [None] * CLIENTS
    barrier = threading.Barrier(CLIENTS)

    def client(i):
        barrier.wait()
        answers[i] = _predict(batching_server.grpc_port, 'serving_default', 'encoded_image',
                              np.array([images[i]], dtype=object))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert _scheduler(batching_server).batch_sizes == [CLIENTS]
    for image, answer in zip(images, answers):
        alone = run_signature(batching_server.version_dir, 'serving_default',
                              {'encoded_image': [image]})
        assert sorted(answer) == sorted(alone)
        for key, value in alone.items():
            np.testing.assert_allclose(answer[key], value, atol=1e-5, err_msg=key)


def test_fixed_shape_signature_runs_alone(batching_server):
    before = list(_scheduler(batching_server).batch_sizes)
    image = np.random.RandomState(0).uniform(-120, 130, (300, 300, 3)).astype(np.float32)
    answer = _predict(batching_server.grpc_port, 'detected_model', 'images', image)
    alone = run_signature(batching_server.version_dir, 'detected_model', {'images': image})
    np.testing.assert_allclose(answer['predict0'], alone['predict0'], atol=1e-5)
    assert _scheduler(batching_server).batch_sizes == before   # not through the scheduler
