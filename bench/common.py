"""What every benchmark shares: timing medians, peak memory, the figure lines run_all.py collects
and the named sections of the report that long benchmarks keep up to date themselves."""
import os
import re
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


def interleaved_median_seconds(fns, repeats=5, warmup=1):
    """``{name: fn}`` → ``{name: median wall time (s)}``, the functions called in turn
    ``repeats`` times (after ``warmup`` untimed calls each), so a load that comes and goes
    slows each of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mb():
    """Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(name, value, unit, note=''):
    """Prints one figure as ``[figure] name | value | unit | note`` (the format run_all.py reads)."""
    print('%s %s | %.4g | %s | %s' % (FIGURE_PREFIX, name, value, unit, note), flush=True)


def _section_marker(title):
    return '<!-- section: %s -->' % title


def read_report_sections(path):
    """{title: text} of the named sections of a report (see write_report_section)."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        text = f.read()
    pattern = re.compile(r'<!-- section: (.+?) -->\n(.*?)(?=\n<!-- section: |\Z)', re.S)
    return {title: body.rstrip('\n') for title, body in pattern.findall(text)}


def write_report_section(path, title, lines):
    """Puts ``## title`` with ``lines`` into the report at ``path``, replacing that section only.

    Sections follow the report's main table (which run_all.py rewrites, keeping the sections),
    so a benchmark too long for run_all.py still keeps its figures beside the others.
    """
    head = ''
    if os.path.isfile(path):
        with open(path) as f:
            head = f.read().split('\n<!-- section: ')[0].rstrip('\n')
    sections = read_report_sections(path)
    sections[title] = '\n'.join(['## %s' % title, ''] + list(lines))
    write_report(path, head, sections)


def write_report(path, head, sections):
    """Writes ``head`` then each section of ``sections`` ({title: text}) atomically."""
    parts = [head.rstrip('\n')] + ['%s\n%s' % (_section_marker(t), b) for t, b in sections.items()]
    with open(path + '.tmp', 'w') as f:
        f.write('\n\n'.join(p for p in parts if p) + '\n')
    os.replace(path + '.tmp', path)
