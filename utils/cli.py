"""The one command-line convention of every tool of the toolkit.

Each script builds its own ``FlagSet`` (an absl ``flags.FlagValues`` of its own, never absl's
global registry) inside a ``define_flags()`` function, theme by theme, and ends with
``main = cli.make_main(__doc__, define_flags, _run)`` (``run`` with the script's own flags) and
``if __name__ == '__main__': sys.exit(main())``:

- ``--help`` / ``-h`` prints the script's docstring and its own flags grouped by theme (not the
  hundreds absl defines), exit 0, also when the reader stops early (``--help | head``);
- an unknown flag, a malformed value or a stray argument: one line ``error: ...``, exit 2;
- a ``UsageError`` (a bad flag value or combination found by the script): ``error: ...``, exit 2;
- any other ``utils.errors.ToolkitError``: ``error: <message>``, exit 1 (caught here, once);
- Ctrl-C (``KeyboardInterrupt``): ``error: interrupted ...``, exit 130, no traceback (each tool
  removes what it had half-written on its way out);
- ``--precision=auto`` is resolved to float32 or bfloat16 before ``main`` runs, in one line on
  stderr (``utils/cpu_features.py``; a tool's entry path calls
  ``cpu_features.enable_onednn_for_bfloat16`` before it imports TensorFlow).

Importing a script therefore defines no flag; tests and notebooks may import several at once.
"""
import os
import sys
import textwrap

from absl import flags

from utils import cpu_features
from utils import image_header
from utils import ssd_defaults
from utils.errors import ToolkitError

PRECISION_HELP = ('Compute precision of the network: auto (bfloat16 where the CPU has AVX512_BF16 '
                  'or AMX-BF16 and oneDNN is on, which the tool turns on unless '
                  'TF_ENABLE_ONEDNN_OPTS is set; float32 elsewhere), float32, or bfloat16 (casts '
                  'in the graph; ~2-3x faster on such CPUs, scores within ~0.05; variables and '
                  'checkpoints stay float32).')
USAGE_EXIT = 2
ERROR_EXIT = 1
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C


class UsageError(ToolkitError):
    """A bad flag value or combination (exit status 2, like a flag that does not parse)."""


class FlagSet(object):
    """A script's flags, defined theme by theme: ``values`` (the ``flags.FlagValues``) and
    ``groups`` (``[(theme, [flag names])]``, the order ``--help`` lists them in)."""

    def __init__(self):
        self.values = flags.FlagValues()
        self.groups = []
        self._aliases = []  # (deprecated name, flag name)
        self._float32_when = None
        flags.DEFINE_boolean('help', False, 'Show this help.', short_name='h',
                             flag_values=self.values)

    def group(self, theme):
        """Flags defined from now on are listed under ``theme`` in ``--help``."""
        self.groups.append((theme, []))

    def _define(self, define, name, default, help_text, *args, **kwargs):
        define(name, default, *args, help=help_text, flag_values=self.values, **kwargs)
        self.groups[-1][1].append(name)

    def string(self, name, default, help_text):
        self._define(flags.DEFINE_string, name, default, help_text)

    def integer(self, name, default, help_text):
        self._define(flags.DEFINE_integer, name, default, help_text)

    def float(self, name, default, help_text):
        self._define(flags.DEFINE_float, name, default, help_text)

    def boolean(self, name, default, help_text):
        self._define(flags.DEFINE_boolean, name, default, help_text)

    def enum(self, name, default, choices, help_text):
        self._define(flags.DEFINE_enum, name, default, help_text, list(choices))

    def string_list(self, name, default, help_text):
        """A comma-separated list (``--name=a,b``); ``default`` a list or None."""
        self._define(flags.DEFINE_list, name, default, help_text)

    def precision(self, default='float32', float32_when=None):
        """``--precision`` (auto | float32 | bfloat16), as every tool that runs the network names
        it; ``run`` resolves auto. The trainer, evaluator and detector default to auto, the
        exporters to float32 (the serving machine may differ). ``float32_when``:
        ``(predicate(flag_values), reason)``, a setting of the tool under which auto picks
        float32 whatever the CPU."""
        self.enum('precision', default, cpu_features.PRECISION_CHOICES, PRECISION_HELP)
        self._float32_when = float32_when

    def resolve_precision(self, stream=None):
        """Replaces ``--precision=auto`` by the precision chosen for this machine and says which,
        and why, in one line on ``stream`` (stderr). Returns the precision (None without the
        flag)."""
        if 'precision' not in self.values:
            return None
        if self.values.precision == cpu_features.AUTO:
            predicate, reason = self._float32_when or (None, None)
            if predicate and predicate(self.values):
                precision = 'float32'
            else:
                precision, reason = cpu_features.choose_precision(cpu_features.AUTO)
            print('precision: %s (--precision=auto: %s)' % (precision, reason),
                  file=stream or sys.stderr, flush=True)
            self.values.precision = precision
        return self.values.precision

    def checkpoint_path(self):
        """``--ckpt_path``, as every tool that loads a trained model names it
        (``check_checkpoint_path`` requires it)."""
        self.string('ckpt_path', None, 'Checkpoint prefix (dir/model.ckpt-1000) or training '
                    'directory (its newest checkpoint); model_info.json must sit beside it.')

    def tflite_path(self):
        """``--tflite_path``, as every tool that can run a ``.tflite`` model instead of a
        checkpoint names it."""
        self.string('tflite_path', None, 'Run this .tflite model (export_tflite.py) instead of '
                    'a checkpoint; its post-processing is baked into it at export.')

    def pixel_limits(self):
        """``--max_image_pixels`` and ``--max_request_pixels``: what the encoded images of one
        request may hold, read from their headers before anything decodes them (the SavedModel
        exporter bakes them into ``serving_default``, the model server checks them)."""
        self.integer('max_image_pixels', image_header.DEFAULT_MAX_IMAGE_PIXELS,
                     'Largest width x height of one encoded image, read from its header before '
                     'anything decodes it.')
        self.integer('max_request_pixels', image_header.DEFAULT_MAX_REQUEST_PIXELS,
                     'Largest sum of width x height over the encoded images of one request, '
                     'read from their headers (bounds the memory one request decodes into).')

    def thresholds(self, select_threshold):
        """The score and overlap thresholds of the detection post-processing
        (``select_threshold`` is the tool's default); ``check_thresholds`` checks them."""
        self.float('select_threshold', select_threshold,
                   'Minimum class score of a detection, in [0, 1].')
        self.float('nms_threshold', ssd_defaults.NMS_THRESHOLD, 'IoU above which non-maximum '
                   'suppression drops the lower-scored box of a class, in (0, 1].')

    def postprocessing(self, select_threshold):
        """The detection post-processing flags: ``thresholds`` and how many boxes are kept
        (``select_threshold`` is the tool's default); ``check_postprocessing`` checks them."""
        self.thresholds(select_threshold)
        self.integer('top_k', ssd_defaults.TOP_K,
                     'Boxes kept per class before non-maximum suppression.')
        self.integer('keep_top_k', ssd_defaults.KEEP_TOP_K,
                     'Detections kept per image after suppression (K of the outputs).')

    def deprecated_alias(self, old_name, name):
        """``--old_name`` (a string flag) still sets ``--name``; ``--help`` mentions it beside
        ``--name`` only. Giving both with different values is a ``UsageError``."""
        flags.DEFINE_string(old_name, None, 'Deprecated spelling of --%s.' % name,
                            flag_values=self.values)
        self.values[name].help += ' (Deprecated spelling: --%s.)' % old_name
        self._aliases.append((old_name, name))

    def resolve_aliases(self):
        """Copies each deprecated flag given on the command line into its new name."""
        for name in sorted(set(name for _, name in self._aliases)):
            given = [(n, self.values[n].value) for n in
                     [name] + [old for old, new in self._aliases if new == name]
                     if self.values[n].present]
            for other, value in given[1:]:
                if value != given[0][1]:
                    raise UsageError('--%s=%s and --%s=%s disagree: give --%s only' % (
                        given[0][0], given[0][1], other, value, name))
            if given:
                setattr(self.values, name, given[0][1])


def check_checkpoint_path(options):
    """``UsageError`` when ``--ckpt_path`` (see ``FlagSet.checkpoint_path``) is not given."""
    if not options.ckpt_path:
        raise UsageError('--ckpt_path is required (checkpoint prefix or training directory)')


def check_thresholds(options):
    """``UsageError`` for threshold flag values (see ``FlagSet.thresholds``) out of range."""
    if not 0. <= options.select_threshold <= 1.:
        raise UsageError('--select_threshold must be in [0, 1], got %g' % options.select_threshold)
    if not 0. < options.nms_threshold <= 1.:
        raise UsageError('--nms_threshold must be in (0, 1], got %g' % options.nms_threshold)


def check_postprocessing(options):
    """``UsageError`` for post-processing flag values (see ``FlagSet.postprocessing``) out of
    range."""
    check_thresholds(options)
    if options.top_k < 1 or options.keep_top_k < 1:
        raise UsageError('--top_k and --keep_top_k must be positive')


def format_help(doc, flag_values, groups):
    """``doc`` followed by the flags of ``flag_values``, theme by theme (``groups``)."""
    lines = [doc.strip(), '']
    for theme, names in groups:
        lines.append('%s:' % theme)
        for name in names:
            flag = flag_values[name]
            lines.append('  --%s (default: %s)' % (name, flag.default))
            lines.append(textwrap.fill(flag.help, width=98, initial_indent=' ' * 6,
                                       subsequent_indent=' ' * 6))
    return '\n'.join(lines)


def print_help(text):
    """Prints ``text`` on stdout; a reader that closes the pipe early is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python's exit would flush the rest into the closed pipe and print a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def print_error(message):
    """``error: <first line of message>`` on stderr."""
    text = str(message).strip()
    print('error: %s' % (text.splitlines()[0] if text else 'unknown error'), file=sys.stderr)


def run_cli(argv, flag_values, groups, doc, main_fn):
    """Parses ``argv`` (program name first) into ``flag_values``, answers --help, runs
    ``main_fn()``; returns the exit status (see the module docstring)."""
    flag_values.unparse_flags()
    try:
        rest = flag_values(argv)
    except flags.Error as e:
        print_error(e)
        return USAGE_EXIT
    if flag_values.help:
        print_help(format_help(doc, flag_values, groups))
        return 0
    if len(rest) > 1:
        print_error('unexpected argument %r (flags look like --name=value)' % rest[1])
        return USAGE_EXIT
    try:
        return main_fn()
    except UsageError as e:
        print_error(e)
        return USAGE_EXIT
    except ToolkitError as e:
        print_error(e)
        return ERROR_EXIT
    except KeyboardInterrupt as e:
        print_error('interrupted%s' % (': %s' % e if str(e) else ''))
        return INTERRUPTED_EXIT


def run(argv, flag_set, doc, main_fn):
    """``run_cli`` for a ``FlagSet``: ``main_fn(flag_values)`` gets the parsed flags.
    ``argv`` None means ``sys.argv``."""
    def main_with_flags():
        flag_set.resolve_aliases()
        flag_set.resolve_precision()
        return main_fn(flag_set.values)
    return run_cli(sys.argv if argv is None else argv, flag_set.values, flag_set.groups, doc,
                   main_with_flags)


def make_main(doc, define_flags, main_fn):
    """A script's ``main(argv=None)`` → exit status: ``run`` of ``argv`` (the command line,
    program name first; None: ``sys.argv``) with a fresh ``define_flags()``, ``doc`` (the
    script's docstring) as its ``--help`` and ``main_fn(flag_values)`` as its job."""
    def main(argv=None):
        return run(argv, define_flags(), doc, main_fn)
    main.__doc__ = ('The command line, program name first (None: sys.argv) -> exit status '
                    '(see utils/cli.py).')
    return main
