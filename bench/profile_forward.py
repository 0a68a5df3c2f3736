"""Where the forward pass and a training step spend their time, from oneDNN's own log.

    python bench/profile_forward.py [--batch_size=1] [--runs=3] [--top=12] [--width_multiplier=1]
        [--setups=forward_float32,forward_bfloat16,train_float32,train_bfloat16] [--variables]
    python bench/profile_forward.py --summarize=onednn.log     # a log captured elsewhere

Each set-up runs in a child process with ``ONEDNN_VERBOSE=1`` (and ``TF_ENABLE_ONEDNN_OPTS=1``
unless set otherwise): oneDNN then prints one line per primitive it executes, with its kind
(convolution, reorder, pooling...), the kernel that ran it (``brg_conv_fwd:avx512_core_bf16``,
``jit:uni``...) and its milliseconds. The lines of the timed runs are summed per kind and kernel
(count, ms and share per run); the warm-up run's extra primitives (one-time weight reorders) are
listed apart. This log is the profile that works on CPUs where TensorFlow's traced per-op times
do not. Where they do, one more run is traced (``RunOptions.FULL_TRACE``) and its op times are
summed per op type: it shows what oneDNN's log cannot, the ops TensorFlow runs itself (a
SpaceToBatchND around a dilated convolution, bias gradients, the optimizer). Set-ups:

- ``forward_float32`` / ``forward_bfloat16``: the network outputs as the detector, evaluator and
  exports compute them (``model/inference.py``: casts in the graph for bfloat16, weights frozen
  into constants; ``--variables`` profiles the graph with variables instead, to see what
  freezing saves).
- ``train_float32`` / ``train_bfloat16``: one step of the trainer's own graph
  (``training/graph.py``: input pipeline, losses, RMSProp update, the trainer's session options)
  on generated data.

Random weights; the time of a primitive does not depend on their values.
"""
import collections
import ctypes
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from bench import workloads  # noqa: E402
from utils import cli  # noqa: E402

SETUPS = ('forward_float32', 'forward_bfloat16', 'train_float32', 'train_bfloat16')
# Printed by the child around its timed runs (the warm-up run comes before the first).
TIMED_START = '@@profile timed runs'
TIMED_END = '@@profile end'
TRACE_TAG = '@@op'   # one line per op of the traced run: "@@op <op type> <ms>"
TRACE_KIND = 'tf op'
EXEC_TAG = 'exec'

Primitive = collections.namedtuple('Primitive', 'kind kernel prop_kind ms')


def parse_exec_line(line):
    """One ``onednn_verbose`` line → ``Primitive(kind, kernel, prop_kind, ms)``, or None for
    other lines (info, create, graph API, anything else on the stream).

    oneDNN v3 prints ``onednn_verbose,v1,primitive,exec,cpu,<kind>,<kernel>,<prop_kind>,
    <memory descriptors>,<attributes>,<aux>,<problem>,<ms>``; v2 lacks ``v1,primitive`` and
    optional timestamps add a field, so the fields are found from ``exec`` on.
    """
    if not line.startswith('onednn_verbose,'):
        return None
    fields = line.rstrip('\n').split(',')
    if EXEC_TAG not in fields or 'graph' in fields[:fields.index(EXEC_TAG)]:
        return None
    at = fields.index(EXEC_TAG)
    if len(fields) < at + 6:
        return None
    try:
        ms = float(fields[-1])
    except ValueError:
        return None
    return Primitive(fields[at + 2], fields[at + 3], fields[at + 4], ms)


def summarize(primitives, runs=1):
    """``[(kind, kernel, count per run, ms per run)]`` sorted by time, longest first."""
    totals = collections.OrderedDict()
    for primitive in primitives:
        count, ms = totals.get((primitive.kind, primitive.kernel), (0, 0.))
        totals[(primitive.kind, primitive.kernel)] = (count + 1, ms + primitive.ms)
    rows = [(kind, kernel, count / runs, ms / runs) for (kind, kernel), (count, ms)
            in totals.items()]
    return sorted(rows, key=lambda row: -row[3])


def format_table(rows, top=None):
    """Text lines of ``summarize`` rows: kind, kernel, count, ms and share of the total; the
    ``top`` longest rows, then the rest in one line."""
    total = sum(row[3] for row in rows) or 1.
    shown = rows if top is None else rows[:top]
    width = max([len('kernel')] + [len(row[1]) for row in shown])
    line = '  %-14s %-*s %7s %10s %6s'
    lines = [line % ('kind', width, 'kernel', 'count', 'ms', 'share')]
    for kind, kernel, count, ms in shown:
        lines.append(line % (kind, width, kernel, '%.4g' % count, '%.2f' % ms,
                             '%.1f%%' % (100. * ms / total)))
    rest = rows[len(shown):]
    if rest:
        ms = sum(row[3] for row in rest)
        lines.append(line % ('(%d more)' % len(rest), width, '', '%.4g' % sum(r[2] for r in rest),
                             '%.2f' % ms, '%.1f%%' % (100. * ms / total)))
    return lines


def traced_ops(step_stats):
    """``Primitive(TRACE_KIND, op type, '', ms)`` of every op a ``StepStats`` (a traced run's
    ``RunMetadata.step_stats``) recorded on the CPU; ``summarize`` sums them per op type."""
    ops = []
    for device in step_stats.dev_stats:
        for node in device.node_stats:
            label = node.timeline_label   # "name = OpType(inputs)"
            op_type = label.split(' = ', 1)[1].split('(', 1)[0] if ' = ' in label else \
                node.node_name.split(':')[0]
            ops.append(Primitive(TRACE_KIND, op_type, '', node.all_end_rel_micros / 1e3))
    return ops


def parse_trace_line(line):
    """A child's ``@@op <op type> <ms>`` line → its ``Primitive``, or None for other lines."""
    fields = line.split()
    if len(fields) != 3 or fields[0] != TRACE_TAG:
        return None
    return Primitive(TRACE_KIND, fields[1], '', float(fields[2]))


def split_runs(lines):
    """``(warm-up primitives, timed primitives)`` of a child's output, cut at its markers."""
    warmup, timed = [], []
    target = warmup
    for line in lines:
        if line.startswith(TIMED_START):
            target = timed
        elif line.startswith(TIMED_END):
            target = None
        elif target is not None:
            primitive = parse_exec_line(line)
            if primitive is not None:
                target.append(primitive)
    return warmup, timed


def _marker(text):
    """Writes ``text`` on stdout after everything oneDNN printed (its C stdio buffer first)."""
    ctypes.CDLL(None).fflush(None)
    sys.stdout.flush()
    os.write(1, (text + '\n').encode())


def run_child(options):
    """The child's job: build the set-up, run it once untimed, then ``--runs`` times between
    the markers, then once traced (its ops as ``TRACE_TAG`` lines); prints the median wall
    time."""
    kind, precision = options.child.split('_')
    if kind == 'forward':
        session, run = workloads.forward(options.batch_size, precision, options.width_multiplier,
                                         options.num_classes, frozen=not options.variables)
    else:
        session, run = workloads.training_step(options.batch_size, precision,
                                               options.width_multiplier)
    run()
    _marker(TIMED_START)
    wall = []
    for _ in range(options.runs):
        start = time.perf_counter()
        run()
        wall.append(time.perf_counter() - start)
    _marker(TIMED_END)
    import tensorflow.compat.v1 as tf
    metadata = tf.RunMetadata()
    run(options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), run_metadata=metadata)
    _marker('\n'.join('%s %s %.4f' % (TRACE_TAG, op.kernel, op.ms)
                       for op in traced_ops(metadata.step_stats)))
    session.close()
    print('wall %.4f' % statistics.median(wall), flush=True)
    return 0


def profile_setup(setup, options):
    """Runs ``setup`` in a child with oneDNN's log on; prints its tables."""
    env = dict(os.environ, ONEDNN_VERBOSE='1', TF_CPP_MIN_LOG_LEVEL='2')
    env.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')
    command = [sys.executable, os.path.abspath(__file__), '--child=%s' % setup,
               '--batch_size=%d' % options.batch_size, '--runs=%d' % options.runs,
               '--width_multiplier=%g' % options.width_multiplier,
               '--num_classes=%d' % options.num_classes] + (['--variables'] if options.variables
                                                           else [])
    child = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    lines = child.stdout.splitlines()
    what = 'weights %s' % ('as variables' if options.variables else 'frozen') \
        if setup.startswith('forward') else "the trainer's graph"
    print('\n%s, batch %d, width %g, %s, TF_ENABLE_ONEDNN_OPTS=%s:'
          % (setup, options.batch_size, options.width_multiplier, what,
             env['TF_ENABLE_ONEDNN_OPTS']))
    if child.returncode != 0:
        print('  failed: %s' % (child.stderr.strip().splitlines() or ['no output'])[-1])
        return False
    warmup, timed = split_runs(lines)
    wall = [line.split()[1] for line in lines if line.startswith('wall ')]
    if not timed:
        print('  no oneDNN primitive ran (oneDNN off, or a TensorFlow build without it)')
        return True
    rows = summarize(timed, options.runs)
    print('  wall %.3f s per run (median of %d); oneDNN %.3f s per run in %d primitives'
          % (float(wall[0]), options.runs, sum(r[3] for r in rows) / 1e3,
             sum(r[2] for r in rows)))
    print('\n'.join(format_table(rows, options.top)))
    extra = first_run_extra(warmup, timed, options.runs)
    if extra:
        print('  warm-up run only (done once): %s' % '; '.join(
            '%d %s %s, %.1f ms' % (count, kind, kernel, ms) for kind, kernel, count, ms in extra))
    traced = [op for op in map(parse_trace_line, lines) if op is not None]
    if traced:
        print("  TensorFlow's trace of one more run, op time per op type (ops overlap on the "
              'cores, so the sum exceeds the wall time):')
        print('\n'.join(format_table(summarize(traced), options.top)))
    return True


def first_run_extra(warmup, timed, runs):
    """Rows the warm-up run had beyond one timed run's (e.g. filter reorders done once)."""
    per_run = {(kind, kernel): count for kind, kernel, count, _ in summarize(timed, runs)}
    extra = []
    for kind, kernel, count, ms in summarize(warmup):
        more = int(round(count - per_run.get((kind, kernel), 0)))
        if more > 0:
            extra.append((kind, kernel, more, ms * more / count))
    return extra


def define_flags():
    """The profile's flags (a ``cli.FlagSet``): what runs, what is listed, and the flag the
    profile gives its child processes."""
    flag_set = cli.FlagSet()
    flag_set.group('Set-ups')
    flag_set.string('setups', ','.join(SETUPS), 'Comma-separated, from: %s.' % ', '.join(SETUPS))
    flag_set.integer('batch_size', 1, 'Images per run.')
    flag_set.integer('runs', 3, 'Timed runs per set-up.')
    flag_set.float('width_multiplier', 1.0, 'Width of the network (1.0 = SSD-VGG300).')
    flag_set.integer('num_classes', 21, 'Classes of the forward set-ups (background included).')
    flag_set.boolean('variables', False, 'Forward set-ups keep the weights as variables (not '
                     'frozen).')
    flag_set.group('Output')
    flag_set.integer('top', 12, 'Rows listed per set-up.')
    flag_set.string('summarize', None, 'Only summarise this captured oneDNN log (every exec '
                    'line).')
    flag_set.group('Internal')
    flag_set.enum('child', None, SETUPS, 'Set by the profile itself: run this one set-up in '
                  'this process.')
    return flag_set


def _profile(options):
    if options.child:
        return run_child(options)
    if options.summarize:
        try:
            with open(options.summarize) as f:
                primitives = [p for p in map(parse_exec_line, f) if p is not None]
        except OSError as err:
            raise cli.UsageError('--summarize %s: %s' % (options.summarize, err.strerror))
        if not primitives:
            raise cli.UsageError('--summarize %s: no onednn_verbose exec line in it'
                                 % options.summarize)
        print('\n'.join(format_table(summarize(primitives), options.top)))
        return 0
    setups = [s.strip() for s in options.setups.split(',') if s.strip()]
    unknown = sorted(set(setups) - set(SETUPS))
    if unknown or not setups:
        raise cli.UsageError('--setups: unknown %s (choose from %s)'
                             % (', '.join(unknown) or 'none', ', '.join(SETUPS)))
    if options.batch_size < 1 or options.runs < 1:
        raise cli.UsageError('--batch_size and --runs must be >= 1')
    ok = [profile_setup(setup, options) for setup in setups]
    return 0 if all(ok) else 1


main = cli.make_main(__doc__, define_flags, _profile)


if __name__ == '__main__':
    sys.exit(main())
