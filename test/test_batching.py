"""serving/server/batching.py: concurrent requests share runs, each gets its own rows back, and
the adaptive chooser keeps whichever of batched and direct runs serves more rows per second."""
import threading
import time

import numpy as np
import pytest

from serving.server import batching


def _parameters(**kwargs):
    """Batching parameters; not adaptive unless asked, so batching itself is what is tested."""
    return batching.DEFAULT_PARAMETERS._replace(**dict(dict(adaptive=False), **kwargs))


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
    defaults = batching.DEFAULT_PARAMETERS
    assert batching.parse_batching_parameters(text) == defaults._replace(
        max_batch_size=4, batch_timeout_micros=250)
    assert batching.parse_batching_parameters('batch_timeout_micros { value: 0 }') == \
        defaults._replace(batch_timeout_micros=0)
    with pytest.raises(batching.BatchingConfigError, match="unknown field 'max_batch'"):
        batching.parse_batching_parameters('max_batch { value: 4 }')
    with pytest.raises(batching.BatchingConfigError, match='max_batch_size must be >= 1, got 0'):
        batching.parse_batching_parameters('max_batch_size { value: 0 }')
    with pytest.raises(batching.BatchingConfigError, match='cannot parse'):
        batching.parse_batching_parameters('max_batch_size: 4')
    with pytest.raises(batching.BatchingConfigError, match="unknown field 'adaptive'"):
        batching.parse_batching_parameters('adaptive { value: 0 }')   # a flag, not TF Serving's


def test_a_lone_client_waits_for_company_once_and_busy_clients_wait_for_each_other():
    """The wait is learnt: after its first batch a lone client's requests never sit out the
    timeout, while three clients sending one request after another share runs."""
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


class _Clock(object):
    def __init__(self):
        self.now = 0.

    def __call__(self):
        return self.now


def test_chooser_measures_rows_per_busy_second_and_keeps_the_faster_mode():
    clock = _Clock()
    chooser = batching.ModeChooser(window_rows=2, exploit_windows=1, warmup_rounds=0,
                                   clock=clock)

    def request(start, end, rows=1):
        clock.now = start
        mode = chooser.start()
        clock.now = end
        chooser.finish(mode, rows)
        return mode

    # Batched first. Its first completion opens the window (busy second 1) and is not counted;
    # the idle gap from t=1 to t=5 is not busy time: 2 rows in 2 busy seconds.
    assert [request(0, 1), request(5, 6)] == [batching.BATCHED] * 2
    straggler = chooser.start()                # starts batched at t=6, ends after the switch
    assert request(6, 7) == batching.BATCHED
    assert chooser.mode == batching.DIRECT and chooser.decisions == []
    # Direct: two at once; the window opens at t=8 (busy second 4); then 1 + 2 rows by busy
    # second 4.5: 6 rows/s. The straggler's rows count for neither mode.
    clock.now = 7
    assert [chooser.start(), chooser.start()] == [batching.DIRECT] * 2
    clock.now = 8
    chooser.finish(batching.DIRECT, 1)
    chooser.finish(straggler, 5)
    chooser.finish(batching.DIRECT, 1)
    assert request(8, 8.5, rows=2) == batching.DIRECT
    assert chooser.decisions == [({batching.BATCHED: 1.0, batching.DIRECT: 6.0},
                                  batching.DIRECT)]
    # Exploiting for one window (2 rows), then a new round measures direct first.
    assert request(9, 10, rows=2) == batching.DIRECT
    assert chooser.mode == batching.DIRECT
    assert [request(10, 11), request(11, 11.5), request(11.5, 12)] == [batching.DIRECT] * 3
    assert chooser.mode == batching.BATCHED and len(chooser.decisions) == 1


def test_chooser_decides_nothing_in_its_warmup_round():
    clock = _Clock()
    chooser = batching.ModeChooser(window_rows=1, exploit_windows=1, warmup_rounds=1,
                                   clock=clock)
    modes = []
    for t in range(8):          # one request at a time; a window is its opening + one more
        clock.now = t
        modes.append(chooser.start())
        clock.now = t + 1
        chooser.finish(modes[-1], 1)
    b, d = batching.BATCHED, batching.DIRECT
    assert modes == [b, b, d, d] + [d, d, b, b]   # the warm-up round, then a deciding one
    assert chooser.decisions == [({b: 1.0, d: 1.0}, d)]   # a tie goes to direct runs


@pytest.mark.parametrize('direct_seconds, chosen', [
    (1.04, batching.DIRECT),     # batching 4 % faster: within the margin, direct runs
    (1.1, batching.BATCHED)])    # batching 10 % faster: batching
def test_chooser_batches_only_when_it_serves_clearly_more(direct_seconds, chosen):
    clock = _Clock()
    chooser = batching.ModeChooser(window_rows=1, warmup_rounds=0, clock=clock)
    while not chooser.decisions:     # one request at a time, each taking its mode's time
        mode = chooser.start()
        clock.now += 1. if mode == batching.BATCHED else direct_seconds
        chooser.finish(mode, 1)
    assert chooser.decisions[0][1] == chosen


def _clients(scheduler, clients, until):
    """``clients`` threads send one-row requests until ``until()`` (200 each at most) and check
    every answer is their own."""
    failures = []

    def client(i):
        for n in range(200):
            if until():
                return
            x = np.full((1, 2), i * 1000 + n, np.float32)
            if not np.array_equal(scheduler.run('k', {'x': x})['y'], x * 2):
                failures.append((i, n))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []


@pytest.mark.parametrize('serialised, expected', [
    # Runs overlap and a batch costs its rows: four runs at once beat one batch of four.
    (False, batching.DIRECT),
    # One run at a time (a saturated CPU) and a batch costs less per row: batching wins.
    (True, batching.BATCHED)])
def test_adaptive_scheduler_keeps_what_serves_more(serialised, expected):
    one_at_a_time = threading.Lock()

    def run(key, inputs):
        rows = len(inputs['x'])
        if serialised:
            with one_at_a_time:
                time.sleep(0.02 + 0.005 * rows)    # batch of 4: 100 rows/s; singly: 40
        else:
            time.sleep(0.04 * rows)                # batch of 4: 25 rows/s; 4 at once: 100
        return _double(key, inputs)
    scheduler = batching.BatchScheduler(run, _parameters(max_batch_size=4, adaptive=True,
                                                         batch_timeout_micros=200000))
    _clients(scheduler, 4, until=lambda: scheduler.chooser.decisions)
    scheduler.close()
    (rates, chosen), = scheduler.chooser.decisions
    assert chosen == expected, rates
    assert max(scheduler.batch_sizes) == 4     # the batched window did batch
