"""What every benchmark shares: timing medians, peak memory, the figure lines run_all.py collects,
and the report: one section per machine (identified from /proc/cpuinfo), holding run_all.py's
table and the named parts that long benchmarks keep up to date themselves."""
import collections
import datetime
import os
import platform
import re
import resource
import statistics
import time

from datasets.utils import dataset_utils
from utils import cli
from utils import cpu_features
from utils import files

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


# The instructions that decide how fast this toolkit runs: (name in the report, /proc/cpuinfo
# flag). AVX-512 for oneDNN's fast float32 kernels, AVX512_BF16 and AMX for bfloat16.
INSTRUCTIONS = (('AVX-512', 'avx512f'), ('AVX512_BF16', 'avx512_bf16'), ('AMX', 'amx_tile'))
REPORT_PREAMBLE = """# Benchmark report

One section per machine, headed by its CPU model, core count, the instructions that matter here
(AVX-512, AVX512_BF16, AMX) and the date of its newest figures. `python bench/run_all.py` writes
the table of the machine it runs on, `python bench/bench_finetune.py` its fine-tuning part; each
machine is told apart by its `/proc/cpuinfo` model name, family and model numbers (sections
without them predate their recording), core count and those instructions.
Figures of different machines, and of one machine at different times, are not comparable."""

Machine = collections.namedtuple('Machine', 'cpu cores instructions')
Machine.__doc__ = """``cpu``: the CPU model name; ``cores``: logical CPUs; ``instructions``: the
names of ``INSTRUCTIONS`` the CPU has (None when its flags cannot be read)."""
MachineSection = collections.namedtuple('MachineSection', 'heading head parts')
MachineSection.__doc__ = """One machine's section of the report: its ``## `` heading line, the
``head`` text below it (run_all.py's table) and its named ``parts`` ({title: text})."""


def this_machine(cpuinfo_path='/proc/cpuinfo'):
    """The ``Machine`` this runs on, from the first processor of ``cpuinfo_path``. Its ``cpu``
    names the model and, where ``cpuinfo_path`` gives them, the family and model numbers: virtual
    machines show one model name ("Intel(R) Xeon(R) Processor") for several generations of the
    same instructions (Sapphire Rapids is model 143, Emerald Rapids 207)."""
    fields = {}
    try:
        with open(cpuinfo_path) as f:
            for line in f:
                key, _, value = line.partition(':')
                if not key.strip() and fields:
                    break   # the first processor's block ends
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get('model name') or platform.processor() or platform.machine()
    if fields.get('cpu family', '').isdigit() and fields.get('model', '').isdigit():
        cpu = '%s (family %s, model %s)' % (cpu, fields['cpu family'], fields['model'])
    flags = cpu_features.cpu_flags(cpuinfo_path)
    instructions = None if flags is None else tuple(
        name for name, flag in INSTRUCTIONS if flag in flags)
    return Machine(cpu, os.cpu_count(), instructions)


def machine_key(machine):
    """The identity of ``machine`` in the report's section markers."""
    instructions = 'unknown' if machine.instructions is None else \
        ' '.join(machine.instructions) or 'none'
    return '%s | %d cores | %s' % (machine.cpu, machine.cores, instructions)


def machine_heading(machine, date):
    """``## <CPU>, <N> cores, AVX-512, AVX512_BF16, no AMX (<date>)``."""
    if machine.instructions is None:
        instructions = 'instructions unknown'
    else:
        instructions = ', '.join(name if name in machine.instructions else 'no ' + name
                                 for name, _ in INSTRUCTIONS)
    return '## %s, %d cores, %s (%s)' % (machine.cpu, machine.cores, instructions, date)


def _marker(kind, name):
    return '<!-- %s: %s -->' % (kind, name)


def _split(text, kind):
    """(text before the first ``kind`` marker, {name: text after it up to the next})."""
    pieces = re.split(r'^<!-- %s: (.+?) -->\n' % kind, text, flags=re.M)
    return pieces[0], collections.OrderedDict(
        (name, body.strip('\n')) for name, body in zip(pieces[1::2], pieces[2::2]))


def read_report(path):
    """(preamble, {machine key: MachineSection}) of the report at ``path`` (empty when absent)."""
    if not os.path.isfile(path):
        return REPORT_PREAMBLE, collections.OrderedDict()
    with open(path) as f:
        preamble, chunks = _split(f.read(), 'machine')
    machines = collections.OrderedDict()
    for key, chunk in chunks.items():
        heading, _, rest = chunk.partition('\n')
        head, parts = _split(rest, 'part')
        machines[key] = MachineSection(heading, head.strip('\n'), parts)
    return preamble.strip('\n') or REPORT_PREAMBLE, machines


def write_report(path, preamble, machines):
    """Writes the report (see ``read_report``) atomically."""
    blocks = [preamble.strip('\n')]
    for key, section in machines.items():
        blocks.append('%s\n%s' % (_marker('machine', key), section.heading))
        blocks.extend(text for text in [section.head] if text)
        blocks.extend('%s\n%s' % (_marker('part', title), text)
                      for title, text in section.parts.items())
    files.write_text_atomically(path, '\n\n'.join(blocks) + '\n')


def update_machine_section(path, head=None, parts=None, machine=None, date=None):
    """Writes into ``machine``'s section (this machine by default; created after the others)
    its ``head`` (when given) and ``parts`` ({title: text}, replacing those titles only), and
    dates its heading ``date`` (default: today, UTC). Other machines' sections stay as they are."""
    machine = machine or this_machine()
    date = date or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')
    preamble, machines = read_report(path)
    old = machines.get(machine_key(machine), MachineSection('', '', collections.OrderedDict()))
    new_parts = collections.OrderedDict(old.parts)
    new_parts.update(parts or {})
    machines[machine_key(machine)] = MachineSection(
        machine_heading(machine, date), old.head if head is None else head.strip('\n'),
        new_parts)
    write_report(path, preamble, machines)


def write_report_section(path, title, lines, machine=None):
    """Puts ``### title`` with ``lines`` into this machine's section of the report at ``path``,
    replacing that part only, so a benchmark too long for run_all.py keeps its figures beside
    the table of the machine that measured them."""
    update_machine_section(path, parts={title: '\n'.join(['### %s' % title, ''] + list(lines))},
                           machine=machine)


def tfrecords_dir_flag(flag_set):
    """Defines ``--tfrecords_dir`` on ``flag_set`` (a ``cli.FlagSet``), as the benchmarks that
    read a converted dataset name it and ``tfrecords_splits`` names it in its errors."""
    flag_set.string('tfrecords_dir', None, 'Folder of TFRecord shards with their '
                    'dataset_description.json (the converter writes both).')


def tfrecords_splits(tfrecords_dir, splits, flag):
    """``(class names, {split: shard file names})`` from the converter's description in
    ``tfrecords_dir``; ``cli.UsageError`` naming ``--tfrecords_dir``, or the flag ``flag`` that
    gave ``splits``, when the description or a split is missing."""
    description = dataset_utils.read_description(tfrecords_dir)
    if description is None:
        raise cli.UsageError('--tfrecords_dir=%s: no %s (convert a dataset into it first)'
                             % (tfrecords_dir, dataset_utils.DESCRIPTION_FILENAME))
    for split in splits:
        if split not in description['splits']:
            raise cli.UsageError('%s: no split %r in %s (it has %s)' % (
                flag, split, dataset_utils.description_path(tfrecords_dir),
                ', '.join(sorted(description['splits']))))
    return description['class_names'], {split: description['splits'][split]['files']
                                        for split in splits}
