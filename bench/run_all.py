"""Runs every benchmark and writes the report: ``python bench/run_all.py [--output=bench/REPORT.md]``.

Each benchmark is a script under bench/ that prints its figures through ``bench.common.report``;
this collects them into one markdown table in the section of the machine it runs on (CPU model,
cores and instructions from /proc/cpuinfo; other machines' sections are kept), with the date. A
benchmark that fails is listed as failed in the report and makes the exit status non-zero.

Two cores shared with anything else make figures up to 2x wrong, so it refuses to start while
the 1-minute load average is above ``MAX_LOAD`` (``--force`` overrides), and records the load
at the start of each benchmark beside its figures.
"""
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
from utils import cli  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402

MAX_LOAD = 0.5
# (script, arguments, what it measures) in the order of the pipeline.
BENCHMARKS = (
    ('bench_peak.py', [], "the machine's matmul peak and the network's GFLOP per image"),
    ('bench_data.py', [], 'conversion and input pipeline (shared VOC subset)'),
    ('bench_network.py', ['--compare_variables'],
     'SSD-VGG300 forward pass (frozen weights and variables), encoding, post-processing'),
    ('bench_training.py', [], 'training step and augmented input pipeline'),
    ('bench_serving.py', [], 'export, local server latency and throughput'),
    ('bench_pytorch.py', [], 'the same SSD-VGG300 in PyTorch (skipped without torch)'),
    ('bench_learning.py', [], 'reduced-width SSD300 learning on generated data'),
)

# (name, slower figure, faster figure, target): the ratio slower / faster, from one run's figures.
COMPARISONS = (
    ('serving_default batch 8: bfloat16 export vs float32 export',
     'in_process_serving_default_batch8_float32', 'in_process_serving_default_batch8_bfloat16', 2.0),
)

# (row, our figure, PyTorch's figure, images per run, forward passes per image, precision,
# target ratio): the speed table, each figure against PyTorch's and against the matmul peak.
# bench_network.py times batches of 1 and 8; bench_training.py a batch-8 step (about three
# forward passes of work: forward, gradients of activations and of weights).
SPEED_ROWS = (
    ('forward float32, batch 1', 'forward_float32_batch1', 'torch_forward_float32_batch1',
     1, 1, 'float32', 1.0),
    ('forward float32, batch 8', 'forward_float32_batch8', 'torch_forward_float32_batch8',
     8, 1, 'float32', 1.0),
    ('forward bfloat16, batch 1', 'forward_bfloat16_batch1', 'torch_forward_bfloat16_batch1',
     1, 1, 'bfloat16', 1.0),
    ('forward bfloat16, batch 8', 'forward_bfloat16_batch8', 'torch_forward_bfloat16_batch8',
     8, 1, 'bfloat16', 1.0),
    ('training step float32, batch 8', 'training_float32_seconds_per_step',
     'torch_training_float32_seconds_per_step', 8, 3, 'float32', 1.0),
    ('training step bfloat16, batch 8', 'training_bfloat16_seconds_per_step',
     'torch_training_bfloat16_seconds_per_step', 8, 3, 'bfloat16', 1.3),
)
NO_PYTORCH = 'no PyTorch here'


def speed_table(values):
    """Markdown lines: each timed path of SPEED_ROWS that was measured, its seconds, PyTorch's
    and their ratio (PyTorch time / ours: above 1 we are faster), and the GFLOP/s it reaches
    against this run's matmul peak in its precision (``bench_peak.py``)."""
    lines = ['| path | ours (s) | PyTorch (s) | ratio PyTorch / ours (target) | GFLOP/s | '
             'share of matmul peak |', '|---|---|---|---|---|---|']
    gflop = values.get('network_gflop_per_image')
    for title, ours, theirs, images, passes, precision, target in SPEED_ROWS:
        if not values.get(ours):
            continue
        seconds = values[ours]
        if values.get(theirs):
            ratio = values[theirs] / seconds
            torch_cells = '%.3f | %.2f (%g: %s)' % (values[theirs], ratio, target,
                                                  'met' if ratio >= target else 'not met')
        else:
            torch_cells = '%s | %s' % (NO_PYTORCH, NO_PYTORCH)
        rate = gflop * images * passes / seconds if gflop else None
        peak = values.get('matmul_peak_%s' % precision)
        lines.append('| %s | %.3f | %s | %s | %s |' % (
            title, seconds, torch_cells, '%.0f' % rate if rate else 'n/a',
            '%.0f %% of %.0f' % (100. * rate / peak, peak) if rate and peak else 'n/a'))
    return lines if len(lines) > 2 else []


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


def previous_rows(path, machine):
    """{script: table rows} of ``machine``'s table in the report at ``path``, each row's note
    saying which run measured it, so that ``--only`` keeps the figures it does not measure
    again (never another machine's)."""
    section = common.read_report(path)[1].get(common.machine_key(machine))
    if section is None:
        return {}
    date = re.search(r'^- Date: (.+)$', section.head, re.M)
    rows = {}
    for line in section.head.splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if not line.startswith('| bench_') or len(cells) < 5:
            continue
        cells = (cells + [''])[:6]
        if 'run of ' not in cells[4] and date:
            cells[4] = ('%s (run of %s)' % (cells[4], date.group(1))).strip()
        rows.setdefault(cells[0], []).append('| %s |' % ' | '.join(cells))
    return rows


def environment_description():
    """Memory and software of this run (the section heading names the CPU)."""
    mem_gib = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2.0 ** 30
    import tensorflow as tf
    return '%.0f GiB, TF_ENABLE_ONEDNN_OPTS=%s, Python %s, TensorFlow %s' % (
        mem_gib, os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset'), platform.python_version(),
        tf.__version__)


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


def define_flags():
    """The report's flags (a ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Report')
    flag_set.string('output', os.path.join(REPO_ROOT, 'bench', 'REPORT.md'),
                    'Report whose section of this machine receives the figures.')
    flag_set.string_list('only', None, 'Run only these scripts, comma-separated (e.g. '
                         'bench_network.py,bench_serving.py); this machine\'s table keeps the '
                         'other scripts\' rows, marked with their run\'s date.')
    flag_set.boolean('force', False, 'Write the report even though the machine is busy.')
    return flag_set


def _run_all(options, command):
    """Runs the benchmarks; ``command``: the command line (program name first) the report
    quotes."""
    # Every tool of the toolkit runs with oneDNN on (bench/REPORT.md, "Precision: forward pass"); so do its benchmarks.
    os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    load = os.getloadavg()[0]
    if load > MAX_LOAD and not options.force:
        raise ToolkitError('the 1-minute load average is %.2f (> %.1f): something else is '
                           'running, and its figures would be wrong; wait for a quiet machine '
                           'or pass --force' % (load, MAX_LOAD))

    machine = common.this_machine()
    lines = ['- Date: %s' % datetime.datetime.now(datetime.timezone.utc).strftime(
                 '%Y-%m-%d %H:%M UTC'),
             '- Environment: %s' % environment_description(),
             '- Command: `%s`' % ' '.join(['python bench/run_all.py'] + command[1:]), '',
             '| benchmark | figure | value | unit | note | load at start |',
             '|---|---|---|---|---|---|']
    failed = []
    values = {}

    def write_section():
        # The parts of the section that long benchmarks (bench_finetune.py) write are kept.
        comparisons = comparison_lines(values)
        head = lines + (['', '**Side by side** (figures of the table):', ''] + comparisons
                        if comparisons else [])
        speed = speed_table(values)
        head += (['', '**Speed against PyTorch and the matmul peak** (figures of this run; '
                  'GFLOP from bench_peak.py):', ''] + speed if speed else [])
        common.update_machine_section(options.output, head='\n'.join(head), machine=machine)

    kept = previous_rows(options.output, machine) if options.only else {}
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
        write_section()   # after every benchmark, so an interrupted run leaves its figures
    write_section()   # with the kept rows of the benchmarks after the last one run
    if speed_table(values):
        print('\n' + '\n'.join(speed_table(values)))
    print('\nreport written to %s' % options.output)
    if failed:
        print('failed benchmarks: %s' % ', '.join(failed), file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """``argv``: the command line, program name first (default ``sys.argv``)."""
    argv = sys.argv if argv is None else argv
    return cli.run(argv, define_flags(), __doc__, lambda options: _run_all(options, argv))


if __name__ == '__main__':
    sys.exit(main())
