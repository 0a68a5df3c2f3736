"""serving/server/batching.py: concurrent requests share runs, each gets its own rows back."""
import threading

import numpy as np
import pytest

from serving.server import batching


def _parameters(**kwargs):
    return batching.DEFAULT_PARAMETERS._replace(**kwargs)


def _concurrently(scheduler, requests):
    """Runs ``(key, inputs)`` requests from one thread each; returns outputs or errors in order."""
    results = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def send(i, key, inputs):
        barrier.wait()
        try:
            results[i] = scheduler.run(key, inputs)
        except Exception as error:  # the test inspects it
            results[i] = error

    threads = [threading.Thread(target=send, args=(i,) + r) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def _double(key, inputs):
    return {'y': inputs['x'] * 2, 'tag': np.array([key] * len(inputs['x']))}


def test_concurrent_requests_share_one_run_and_get_their_own_rows():
    # A long timeout: the batch is cut by max_batch_size, so all four share one run.
    scheduler = batching.BatchScheduler(_double, _parameters(max_batch_size=5,
                                                             batch_timeout_micros=10 ** 7))
    rows = [np.full((1, 3), i, np.float32) for i in range(3)] + [np.full((2, 3), 9., np.float32)]
    results = _concurrently(scheduler, [('sig', {'x': r}) for r in rows])
    scheduler.close()
    assert scheduler.batch_sizes == [5]
    for r, out in zip(rows, results):
        np.testing.assert_array_equal(out['y'], r * 2)
        assert list(out['tag']) == ['sig'] * len(r)


def test_keys_are_not_mixed_and_big_requests_run_alone():
    scheduler = batching.BatchScheduler(_double, _parameters(max_batch_size=2,
                                                             batch_timeout_micros=200000))
    requests = [('a', {'x': np.ones((1, 2))}), ('b', {'x': np.ones((1, 2))}),
                ('a', {'x': np.ones((3, 2))})]
    results = _concurrently(scheduler, requests)
    scheduler.close()
    assert [list(set(r['tag'])) for r in results] == [['a'], ['b'], ['a']]
    assert sorted(scheduler.batch_sizes) == [1, 1, 3]
    assert results[2]['y'].shape == (3, 2)


def test_a_lone_request_is_not_held_past_the_timeout():
    scheduler = batching.BatchScheduler(_double, _parameters(max_batch_size=64,
                                                             batch_timeout_micros=1000))
    out = scheduler.run('k', {'x': np.arange(4.)[:, None]})
    scheduler.close()
    np.testing.assert_array_equal(out['y'][:, 0], [0, 2, 4, 6])
    assert scheduler.batch_sizes == [4]


def test_a_failed_batch_fails_each_of_its_requests():
    def broken(key, inputs):
        raise ValueError('bad batch of %d' % len(inputs['x']))
    scheduler = batching.BatchScheduler(broken, _parameters(max_batch_size=2,
                                                            batch_timeout_micros=10 ** 7))
    results = _concurrently(scheduler, [('k', {'x': np.ones((1, 1))})] * 2)
    scheduler.close()
    assert [str(r) for r in results] == ['bad batch of 2'] * 2


def test_full_queue_is_refused():
    started, release = threading.Event(), threading.Event()

    def slow(key, inputs):
        started.set()
        release.wait(30)
        return inputs
    scheduler = batching.BatchScheduler(slow, _parameters(max_batch_size=1, max_enqueued_batches=1,
                                                          batch_timeout_micros=1))
    running = threading.Thread(target=scheduler.run, args=('k', {'x': np.ones(1)}))
    running.start()
    assert started.wait(10)                       # the worker is busy with the first request
    waiting = threading.Thread(target=scheduler.run, args=('k', {'x': np.ones(1)}))
    waiting.start()
    for _ in range(1000):                         # until the second one is queued
        if scheduler._queue:
            break
        release.wait(0.01)
    with pytest.raises(batching.QueueFullError, match='max_enqueued_batches 1'):
        scheduler.run('k', {'x': np.ones(1)})
    release.set()
    running.join(10)
    waiting.join(10)
    scheduler.close()
    assert scheduler.batch_sizes == [1, 1]


def test_parameters_file_format():
    text = '# TF Serving format\nmax_batch_size { value: 4 }\nbatch_timeout_micros {value:250}\n'
    assert batching.parse_batching_parameters(text) == _parameters(max_batch_size=4,
                                                                    batch_timeout_micros=250)
    assert batching.parse_batching_parameters('batch_timeout_micros { value: 0 }') == \
        _parameters(batch_timeout_micros=0)
    with pytest.raises(batching.BatchingConfigError, match="unknown field 'max_batch'"):
        batching.parse_batching_parameters('max_batch { value: 4 }')
    with pytest.raises(batching.BatchingConfigError, match='max_batch_size must be >= 1, got 0'):
        batching.parse_batching_parameters('max_batch_size { value: 0 }')
    with pytest.raises(batching.BatchingConfigError, match='cannot parse'):
        batching.parse_batching_parameters('max_batch_size: 4')


def test_a_lone_client_waits_for_company_once_and_busy_clients_wait_for_each_other():
    """The wait is learnt: after its first batch a lone client's requests never sit out the
    timeout, while three clients sending one request after another share runs."""
    import time
    timeout_s = 1.0

    def slow_double(key, inputs):
        time.sleep(0.05)                              # a session run takes time
        return _double(key, inputs)
    scheduler = batching.BatchScheduler(slow_double, _parameters(
        max_batch_size=8, batch_timeout_micros=int(timeout_s * 1e6)))
    scheduler.run('k', {'x': np.ones((1, 1))})        # the first batch assumes company
    start = time.monotonic()
    for i in range(5):
        assert scheduler.run('k', {'x': np.full((1, 1), i)})['y'][0, 0] == 2 * i
    assert time.monotonic() - start < timeout_s       # five requests, none held for the timeout
    assert scheduler.batch_sizes == [1] * 6

    def client(i):
        for _ in range(4):
            assert scheduler.run('k', {'x': np.full((1, 1), i)})['y'][0, 0] == 2 * i
    clients = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(60)
    scheduler.close()
    together = scheduler.batch_sizes[6:]
    assert sum(together) == 12 and max(together) == 3 and len(together) < 12
