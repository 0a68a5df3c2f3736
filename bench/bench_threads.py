"""Which session thread settings make the forward pass or a training step fastest here, measured
side by side.

    python bench/bench_threads.py [--settings=0:0,2:1,1:1,2:2] [--workload=forward]
        [--precision=float32] [--batch_size=1] [--rounds=4] [--runs=5] [--width_multiplier=1]
    python bench/bench_threads.py --workload=train --precision=bfloat16 --batch_size=8 --runs=3

Each setting is ``intra:inter``: ``intra_op_parallelism_threads`` (threads inside one op, oneDNN's
included) and ``inter_op_parallelism_threads`` (ops run at once); 0 lets TensorFlow choose (the
number of cores). TensorFlow fixes both pools for the whole process at its first session, so each
setting runs in its own child process; the settings alternate ``--rounds`` times, so a load that
comes and goes hits each of them alike. Each child builds the workload (``bench/workloads.py``:
the inference tools' forward pass with frozen weights, or one step of the trainer's graph), times
``--runs`` runs after a warm-up run and prints their median; a figure per setting is the median
over the rounds. For the forward pass, the winner's settings are what ``python -m
serving.model_server`` and TF Serving take as ``--tensorflow_intra_op_parallelism`` /
``--tensorflow_inter_op_parallelism``; for training, what the trainer's session uses.
"""
import os
import statistics
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench import common, workloads  # noqa: E402
from utils import cli  # noqa: E402
from utils import cpu_features  # noqa: E402

RESULT = 'median_seconds'


def parse_settings(text):
    """'0:0,2:1' → [(0, 0), (2, 1)]; ValueError naming the bad item."""
    settings = []
    for item in filter(None, (part.strip() for part in text.split(','))):
        intra, _, inter = item.partition(':')
        try:
            setting = (int(intra), int(inter))
        except ValueError:
            raise ValueError('%r is not intra:inter (e.g. 2:1)' % item)
        if setting[0] < 0:
            raise ValueError('%r: intra-op threads must be >= 0' % item)
        settings.append(setting)
    if not settings:
        raise ValueError('no setting given')
    return settings


def run_child(options):
    """Times the workload with one setting; prints ``median_seconds <s>``."""
    setting = parse_settings(options.child)[0]
    if options.workload == 'forward':
        session, run = workloads.forward(options.batch_size, options.precision,
                                         options.width_multiplier, threads=setting)
    else:
        session, run = workloads.training_step(options.batch_size, options.precision,
                                               options.width_multiplier, threads=setting)
    with session:
        seconds = common.median_seconds(run, repeats=options.runs)
    print('%s %.6f' % (RESULT, seconds), flush=True)
    return 0


def time_setting(setting, options):
    """Median seconds of one child run with ``setting``."""
    command = [sys.executable, os.path.abspath(__file__), '--child=%d:%d' % setting,
               '--workload=%s' % options.workload, '--precision=%s' % options.precision, '--batch_size=%d' % options.batch_size,
               '--runs=%d' % options.runs, '--width_multiplier=%g' % options.width_multiplier]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    env.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    child = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT)]
    if child.returncode != 0 or not lines:
        raise RuntimeError('setting %d:%d failed: %s' % (
            setting + ((child.stderr.strip().splitlines() or ['no output'])[-1],)))
    return float(lines[-1].split()[1])


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``): the settings compared, the forward pass timed."""
    flag_set = cli.FlagSet()
    flag_set.group('Settings')
    flag_set.string('settings', '0:0,2:1,1:1,2:2',
                    'Comma-separated intra:inter thread counts (0 = TensorFlow chooses).')
    flag_set.integer('rounds', 4, 'Times each setting runs, alternating.')
    flag_set.group('Workload')
    flag_set.enum('workload', 'forward', list(workloads.WORKLOADS),
                  "forward: the inference tools' forward pass (weights frozen); train: one step "
                  "of the trainer's graph, every layer trained.")
    flag_set.enum('precision', 'float32', cpu_features.PRECISIONS, 'Precision of the network.')
    flag_set.integer('batch_size', 1, 'Images per forward pass or training step.')
    flag_set.integer('runs', 5, 'Timed runs per child.')
    flag_set.float('width_multiplier', 1.0, 'Width of the network (1.0 = SSD-VGG300).')
    flag_set.group('Internal')
    flag_set.string('child', None, 'Set by the benchmark itself: time this one intra:inter '
                    'setting in this process.')
    return flag_set


def _benchmark(options):
    if options.child:
        return run_child(options)
    try:
        settings = parse_settings(options.settings)
    except ValueError as err:
        raise cli.UsageError('--settings: %s' % err)
    if min(options.batch_size, options.rounds, options.runs) < 1:
        raise cli.UsageError('--batch_size, --rounds and --runs must be >= 1')
    seconds = {setting: [] for setting in settings}
    loads = []
    for _ in range(options.rounds):
        for setting in settings:
            loads.append(os.getloadavg()[0])
            seconds[setting].append(time_setting(setting, options))
    note = '%s %s, batch %d, width %g, median of %d alternating rounds, load %.1f-%.1f' % (
        options.workload, options.precision, options.batch_size, options.width_multiplier,
        options.rounds, min(loads), max(loads))
    for (intra, inter), values in seconds.items():
        common.report('%s_%s_batch%d_intra%d_inter%d' % (
            options.workload, options.precision, options.batch_size, intra, inter),
            statistics.median(values), 's/run',
            note + '; rounds: ' + ' '.join('%.3f' % v for v in values))
    best = min(seconds, key=lambda s: statistics.median(seconds[s]))
    print('fastest: intra_op_parallelism_threads=%d inter_op_parallelism_threads=%d' % best)
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
