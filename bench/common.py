"""What every benchmark shares: timing medians, peak memory and the figure lines run_all.py collects."""
import resource
import statistics
import time

FIGURE_PREFIX = '[figure]'


def median_seconds(fn, repeats=5, warmup=1):
    """Runs ``fn`` ``warmup`` times untimed, then ``repeats`` times; returns the median wall time (s)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory_mb():
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(name, value, unit, note=''):
    """Prints one figure as ``[figure] name | value | unit | note`` (the format run_all.py reads)."""
    print('%s %s | %.4g | %s | %s' % (FIGURE_PREFIX, name, value, unit, note), flush=True)
