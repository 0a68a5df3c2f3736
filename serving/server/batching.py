"""Request batching as TF Serving's ``--enable_batching``: concurrent requests share session runs.

A ``BatchScheduler`` sits in front of one servable's session. ``run(key, inputs)`` queues a
request and blocks until its rows come back. One thread per scheduler takes the oldest request,
then waits at most ``batch_timeout_micros`` for more requests of the same ``key`` (signature and
outputs), concatenates their inputs along axis 0, runs them once and hands each request its slice
of every output. A request with more rows than ``max_batch_size`` runs alone. Failures of a
batched run go to every request in it.

How long to wait for company is learnt from the traffic, so that batching never costs a lone
client the timeout (TF Serving's scheduler would make it wait every time): a batch waits only
until it holds as many rows as came together last time (the previous batch plus what queued
while it ran), ``max_batch_size`` at most. A lone client's batches hold one request and nothing
queues behind them, so they do not wait at all; four busy clients' batches wait for all four.
The first batch assumes company and may wait the full timeout once.

Whether to batch at all is measured too (``adaptive``, on by default): a batch pays only where
it costs less per row than single runs, and concurrent single runs also overlap on the cores
(e.g. one request's JPEG decoding beside another's convolutions). A ``ModeChooser`` measures
the served rows per busy second batched, then with each request run at once in its own thread
(as with batching off), keeps the faster (batching only when it serves ``BATCHING_MARGIN``
more) for ``EXPLOIT_WINDOWS`` measuring windows and then measures both again, so a change
of traffic or model is followed. A first round only warms both paths up.

Parameters come from TF Serving's ``--batching_parameters_file`` text format::

    max_batch_size { value: 8 }
    batch_timeout_micros { value: 5000 }

(``num_batch_threads``: session runs at once; ``max_enqueued_batches``: beyond that many
batches waiting, requests are refused with ``QueueFullError``.) With ``batch_timeout_micros``
0 nothing waits: a batch holds the requests that queued while the previous one ran.
bench/bench_serving.py measures batching off, always on and adaptive side by side.
"""
import collections
import logging
import re
import threading
import time

import numpy as np

from utils.errors import ToolkitError

logger = logging.getLogger('serving.model_server')

# The first four fields are TF Serving's (its file format sets them); ``adaptive`` is ours (a
# server flag): choose between batched and direct runs by measured throughput.
BatchingParameters = collections.namedtuple(
    'BatchingParameters', 'max_batch_size batch_timeout_micros num_batch_threads '
                          'max_enqueued_batches adaptive')
FILE_FIELDS = BatchingParameters._fields[:4]
DEFAULT_PARAMETERS = BatchingParameters(max_batch_size=8, batch_timeout_micros=5000,
                                        num_batch_threads=1, max_enqueued_batches=100,
                                        adaptive=True)
BATCHED, DIRECT = 'batched', 'direct'
# Windows of rows spent on the chosen mode between two measurements of both.
EXPLOIT_WINDOWS = 20
# Batching is chosen only when it serves this much more than direct runs: closer rates are
# within a window's noise, and direct runs are batching off's behaviour.
BATCHING_MARGIN = 1.05
_FIELD = re.compile(r'(\w+)\s*\{\s*value\s*:\s*(-?\d+)\s*\}')


class BatchingConfigError(ToolkitError, ValueError):
    """A batching parameters file that cannot be used (the message names file and field)."""


class QueueFullError(RuntimeError):
    """More than ``max_enqueued_batches`` batches are waiting (TF Serving answers UNAVAILABLE)."""


def parse_batching_parameters(text, source='--batching_parameters_file'):
    """TF Serving's BatchingParameters text proto → ``BatchingParameters`` (defaults for the
    fields it leaves out); every value must be a positive integer (the timeout may be 0)."""
    values = {}
    for name, number in _FIELD.findall(text):
        if name not in FILE_FIELDS:
            raise BatchingConfigError('%s: unknown field %r (known: %s)' % (
                source, name, ', '.join(FILE_FIELDS)))
        # A zero timeout is allowed (batches then hold what queued while the session was busy).
        minimum = 0 if name == 'batch_timeout_micros' else 1
        if int(number) < minimum:
            raise BatchingConfigError('%s: %s must be >= %d, got %s' % (source, name, minimum,
                                                                         number))
        values[name] = int(number)
    leftover = _FIELD.sub('', re.sub(r'#.*', '', text)).strip()
    if leftover:
        raise BatchingConfigError('%s: cannot parse %r (expected lines like '
                                  '"max_batch_size { value: 8 }")' % (source, leftover[:40]))
    return DEFAULT_PARAMETERS._replace(**values)


def _rows(inputs):
    """Rows of a request: the first axis of its inputs (alias -> array)."""
    return len(next(iter(inputs.values())))


class _Request(object):
    def __init__(self, key, inputs):
        self.key = key
        self.inputs = inputs
        self.rows = _rows(inputs)
        self.done = threading.Event()
        self.outputs = None
        self.error = None


class ModeChooser(object):
    """Chooses ``BATCHED`` or ``DIRECT`` for each request by measured throughput.

    A round measures the current mode, then the other, each over a window of ``window_rows``
    rows, and keeps the faster for ``exploit_windows`` windows' worth of rows; then the next
    round starts. The first ``warmup_rounds`` rounds decide nothing: a new servable's first
    runs of each batch size are slow (kernels and buffers set up for the shape), which would
    count against batching. Throughput is rows per *busy* second (time with a request in
    flight), so idle gaps between clients' requests do not count, and a window is counted from
    the first completion of its mode on (that completion's rows excluded), so requests already
    running when the mode changed do not count as work of the new mode. ``decisions`` records every
    round as ``(rates by mode in rows/s, chosen mode)``. ``clock`` is injectable for tests.
    """

    def __init__(self, window_rows, exploit_windows=EXPLOIT_WINDOWS, warmup_rounds=1,
                 clock=time.monotonic, on_decision=None):
        self._window_rows = window_rows
        self._warmup_rounds = warmup_rounds
        self._exploit_rows = exploit_windows * window_rows
        self._clock = clock
        self._on_decision = on_decision
        self._lock = threading.Lock()
        self.mode = BATCHED
        self.decisions = []
        self._rates = {}            # this round's measured rates
        self._measuring = True      # False while exploiting a decision
        self._rows = 0              # rows counted in the current window (or exploitation)
        self._window_start = None   # busy seconds at the window's first completion
        self._in_flight = 0
        self._busy = 0.             # busy seconds before ``_busy_since``
        self._busy_since = None

    def _busy_seconds(self, now):
        return self._busy + (now - self._busy_since if self._in_flight else 0.)

    def start(self):
        """A request arrives: returns the mode to run it in."""
        with self._lock:
            if not self._in_flight:
                self._busy_since = self._clock()
            self._in_flight += 1
            return self.mode

    def finish(self, mode, rows):
        """A request started in ``mode`` ended with ``rows`` rows served (0 if it failed)."""
        with self._lock:
            now = self._clock()
            if mode == self.mode:
                self._count(rows, now)
            self._in_flight -= 1
            if not self._in_flight:
                self._busy += now - self._busy_since

    def _count(self, rows, now):
        if not self._measuring:
            self._rows += rows
            if self._rows >= self._exploit_rows:   # time to measure both again
                self._switch_to(self.mode, measuring=True)
            return
        if self._window_start is None:             # the window opens at its first completion
            self._window_start = self._busy_seconds(now)
            return
        self._rows += rows
        elapsed = self._busy_seconds(now) - self._window_start
        if self._rows < self._window_rows or elapsed <= 0:
            return
        self._rates[self.mode] = self._rows / elapsed
        other = DIRECT if self.mode == BATCHED else BATCHED
        if other not in self._rates:
            self._switch_to(other, measuring=True)
            return
        if self._warmup_rounds:
            self._warmup_rounds -= 1
            self._rates = {}
            self._switch_to(self.mode, measuring=True)
            return
        best = BATCHED if self._rates[BATCHED] > BATCHING_MARGIN * self._rates[DIRECT] \
            else DIRECT
        self.decisions.append((dict(self._rates), best))
        if self._on_decision:
            self._on_decision(dict(self._rates), best)
        self._rates = {}
        self._switch_to(best, measuring=False)

    def _switch_to(self, mode, measuring):
        self.mode, self._measuring = mode, measuring
        self._rows, self._window_start = 0, None


def _log_decision(rates, mode):
    logger.info('batching: %.3g rows/s batched, %.3g rows/s run at once: %s for the next %d '
                'windows', rates[BATCHED], rates[DIRECT],
                'batching' if mode == BATCHED else 'running requests at once', EXPLOIT_WINDOWS)


class BatchScheduler(object):
    """Batches ``run_fn(key, inputs) -> outputs`` calls made from many threads.

    ``run_fn`` takes a dict alias -> array whose first axis is the batch, and returns a dict
    alias -> array with the same first axis. Requests of one ``key`` must have arrays of equal
    trailing shapes (the signature guarantees it for fixed shapes; strings always concatenate).
    """

    def __init__(self, run_fn, parameters=DEFAULT_PARAMETERS):
        self._run_fn = run_fn
        self.parameters = parameters
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        # Rows that came together last time (see the module docstring); company is assumed
        # until the first batch shows otherwise.
        self._expected_rows = parameters.max_batch_size
        self.batch_sizes = []   # rows of every batched session run, for tests and logs
        self.chooser = ModeChooser(max(16, 4 * parameters.max_batch_size),
                                   on_decision=_log_decision) if parameters.adaptive else None
        self._threads = [threading.Thread(target=self._loop, name='batching-%d' % i, daemon=True)
                         for i in range(parameters.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def run(self, key, inputs):
        """Runs one request, batched or (when the chooser finds that faster) at once in this
        thread; returns its outputs or raises what its run raised."""
        if self.chooser is None:
            return self._run_batched(key, inputs)
        mode = self.chooser.start()
        rows = 0
        try:
            outputs = (self._run_fn(key, inputs) if mode == DIRECT
                       else self._run_batched(key, inputs))
            rows = _rows(inputs)
            return outputs
        finally:
            self.chooser.finish(mode, rows)

    def _run_batched(self, key, inputs):
        request = _Request(key, inputs)
        with self._cond:
            if self._closed:
                raise RuntimeError('the batch scheduler is closed')
            limit = self.parameters.max_enqueued_batches * self.parameters.max_batch_size
            if len(self._queue) >= limit:
                raise QueueFullError('the batching queue is full (%d requests waiting; '
                                     'max_enqueued_batches %d)' % (
                                         len(self._queue), self.parameters.max_enqueued_batches))
            self._queue.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.outputs

    def _take_batch(self):
        """The next batch (a list of requests of one key), or None once closed and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed)
            if not self._queue:
                return None
            first = self._queue.popleft()
            batch, rows = [first], first.rows
            deadline = time.monotonic() + self.parameters.batch_timeout_micros / 1e6
            wanted = min(self.parameters.max_batch_size, self._expected_rows)
            while rows < self.parameters.max_batch_size:
                for request in [r for r in self._queue if r.key == first.key]:
                    if rows + request.rows <= self.parameters.max_batch_size:
                        self._queue.remove(request)
                        batch.append(request)
                        rows += request.rows
                remaining = deadline - time.monotonic()
                if rows >= wanted or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            return batch

    def _loop(self):
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._execute(batch)

    def _execute(self, batch):
        try:
            if len(batch) == 1:
                batch[0].outputs = self._run_fn(batch[0].key, batch[0].inputs)
            else:
                inputs = {alias: np.concatenate([r.inputs[alias] for r in batch], axis=0)
                          for alias in batch[0].inputs}
                outputs = self._run_fn(batch[0].key, inputs)
                start = 0
                for request in batch:
                    stop = start + request.rows
                    request.outputs = {alias: value[start:stop] for alias, value in outputs.items()}
                    start = stop
            self.batch_sizes.append(sum(r.rows for r in batch))
        except Exception as error:  # every request of the batch gets the batch's failure
            for request in batch:
                request.error = error
        with self._cond:
            self._expected_rows = (sum(r.rows for r in batch) +
                                   sum(r.rows for r in self._queue if r.key == batch[0].key))
        for request in batch:
            request.done.set()

    def close(self):
        """Runs what is queued, then stops the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
