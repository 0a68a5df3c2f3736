"""Runs every benchmark and writes the report: ``python bench/run_all.py [--output=bench/REPORT.md]``.

Each benchmark is a script under bench/ that prints its figures through ``bench.common.report``;
this collects them into one markdown table with the machine and the date. A benchmark that fails
is listed as failed in the report and makes the exit status non-zero.

Two cores shared with anything else make figures up to 2x wrong, so it refuses to start while
the 1-minute load average is above ``MAX_LOAD`` (``--force`` overrides), and records the load
at the start of each benchmark beside its figures.
"""
import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from bench import common  # noqa: E402
from bench.common import FIGURE_PREFIX  # noqa: E402

MAX_LOAD = 0.5
# (script, arguments, what it measures) in the order of the pipeline.
BENCHMARKS = (
    ('bench_data.py', [], 'conversion and input pipeline (shared VOC subset)'),
    ('bench_network.py', [], 'SSD-VGG300 forward pass, encoding, post-processing'),
    ('bench_training.py', [], 'training step and augmented input pipeline'),
    ('bench_serving.py', [], 'export, local server latency and throughput'),
    ('bench_pytorch.py', [], 'the same SSD-VGG300 in PyTorch (skipped without torch)'),
    ('bench_learning.py', [], 'reduced-width SSD300 learning on generated data'),
)

# (name, slower figure, faster figure, target): the ratio slower / faster, from one run's figures.
COMPARISONS = (
    ('serving_default batch 8: bfloat16 export vs float32 export',
     'in_process_serving_default_batch8_float32', 'in_process_serving_default_batch8_bfloat16', 2.0),
    ('forward batch 8 bfloat16: TensorFlow vs PyTorch autocast',
     'torch_forward_bfloat16_batch8', 'forward_bfloat16_batch8', 1.3),
    ('forward batch 1 bfloat16: TensorFlow vs PyTorch autocast',
     'torch_forward_bfloat16_batch1', 'forward_bfloat16_batch1', None),
    ('forward batch 1 float32: TensorFlow vs PyTorch',
     'torch_forward_float32_batch1', 'forward_float32_batch1', None),
    ('forward batch 8 float32: TensorFlow vs PyTorch',
     'torch_forward_float32_batch8', 'forward_float32_batch8', None),
    ('training step bfloat16: TensorFlow vs PyTorch autocast',
     'torch_training_bfloat16_seconds_per_step', 'training_bfloat16_seconds_per_step', 1.3),
    ('training step float32: TensorFlow vs PyTorch',
     'torch_training_float32_seconds_per_step', 'training_float32_seconds_per_step', None),
)


def comparison_lines(values):
    """Report lines for the COMPARISONS whose two figures were both measured (``values``:
    {figure name: float}); a ratio above 1 means the second figure is the faster."""
    lines = []
    for title, slower, faster, target in COMPARISONS:
        if slower in values and faster in values and values[faster] > 0:
            ratio = values[slower] / values[faster]
            verdict = '' if target is None else ' (target >= %gx: %s)' % (
                target, 'met' if ratio >= target else 'not met')
            lines.append('- %s: %.2fx (%s / %s)%s' % (title, ratio, slower, faster, verdict))
    return lines


def previous_rows(path):
    """{script: table rows} of the report at ``path``, each row's note saying which run measured
    it, so that ``--only`` keeps the figures it does not measure again."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        head = f.read().split('\n<!-- section: ')[0]
    date = re.search(r'^- Date: (.+)$', head, re.M)
    rows = {}
    for line in head.splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if not line.startswith('| bench_') or len(cells) < 5:
            continue
        cells = (cells + [''])[:6]
        if 'run of ' not in cells[4] and date:
            cells[4] = ('%s (run of %s)' % (cells[4], date.group(1))).strip()
        rows.setdefault(cells[0], []).append('| %s |' % ' | '.join(cells))
    return rows


def machine_description():
    from utils import cpu_features
    cpu = cpu_features.cpu_model() or platform.processor() or platform.machine()
    mem_gib = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2.0 ** 30
    import tensorflow as tf
    return ('%s, %d cores, %.0f GiB, bfloat16 instructions: %s, TF_ENABLE_ONEDNN_OPTS=%s, '
            'Python %s, TensorFlow %s' % (
                cpu, os.cpu_count(), mem_gib, cpu_features.bfloat16_description(),
                os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'), platform.python_version(),
                tf.__version__))


def run_benchmark(script, args):
    """Runs one benchmark, echoing its output; returns (figures, seconds, ok)."""
    command = [sys.executable, os.path.join(REPO_ROOT, 'bench', script)] + list(args)
    print('\n=== %s' % ' '.join(command[1:]), flush=True)
    start = time.time()
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    figures = []
    for line in process.stdout:
        sys.stdout.write(line)
        if line.startswith(FIGURE_PREFIX):
            figures.append([part.strip() for part in line[len(FIGURE_PREFIX):].split('|')])
    return figures, time.time() - start, process.wait() == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--output', default=os.path.join(REPO_ROOT, 'bench', 'REPORT.md'))
    parser.add_argument('--only', nargs='*', help='run only these scripts (e.g. bench_network.py); '
                        'the report keeps the other scripts\' rows, marked with their run\'s date')
    parser.add_argument('--force', action='store_true',
                        help='write the report even though the machine is busy')
    options = parser.parse_args()
    # Every tool of the toolkit runs with oneDNN on (README, "Speed"); so do its benchmarks.
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    load = os.getloadavg()[0]
    if load > MAX_LOAD and not options.force:
        print('error: the 1-minute load average is %.2f (> %.1f): something else is running, and '
              'its figures would be wrong; wait for a quiet machine or pass --force'
              % (load, MAX_LOAD), file=sys.stderr)
        return 1

    lines = ['# Benchmark report', '',
             '- Date: %s' % datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
             '- Machine: %s' % machine_description(),
             '- Command: `%s`' % ' '.join(['python bench/run_all.py'] + sys.argv[1:]), '',
             '| benchmark | figure | value | unit | note | load at start |',
             '|---|---|---|---|---|---|']
    failed = []
    values = {}
    kept = previous_rows(options.output) if options.only else {}
    for script, args, _ in BENCHMARKS:
        if options.only and script not in options.only:
            lines.extend(kept.get(script, []))
            continue
        load = '%.2f' % os.getloadavg()[0]
        figures, seconds, ok = run_benchmark(script, args)
        if not ok:
            failed.append(script)
            lines.append('| %s | **failed** (see its output) | | | | %s |' % (script, load))
        for name, value, unit, note in figures:
            values[name] = float(value)
            lines.append('| %s | %s | %s | %s | %s | %s |' % (script, name, value, unit, note, load))
        lines.append('| %s | benchmark wall time | %.0f | s | | %s |' % (script, seconds, load))
        # Written after every benchmark, so an interrupted run still leaves its figures; the
        # sections that long benchmarks (bench_finetune.py) write themselves are kept.
        comparisons = comparison_lines(values)
        head = lines + (['', '**Side by side** (figures of the table):', ''] + comparisons
                        if comparisons else [])
        common.write_report(options.output, '\n'.join(head),
                            common.read_report_sections(options.output))
    print('\nreport written to %s' % options.output)
    if failed:
        print('failed benchmarks: %s' % ', '.join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
