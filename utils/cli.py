"""Command-line plumbing shared by detector.py and eval_ssd_network.py: grouped --help and
flag parsing with one-line errors."""
import sys
import textwrap

from absl import flags


PRECISION_HELP = ('Compute precision of the network: float32, or bfloat16 (casts in the graph; '
                  '~2-3x faster on CPUs with AVX512_BF16 or AMX, scores within ~0.05).')


def define_precision_flag(flag_values):
    """``--precision`` (float32 | bfloat16) in ``flag_values``, as every inference CLI names it."""
    flags.DEFINE_enum('precision', 'float32', ['float32', 'bfloat16'], PRECISION_HELP,
                      flag_values=flag_values)


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


def run_cli(argv, flag_values, groups, doc, main_fn):
    """Parses ``argv`` (program name first) into ``flag_values``, answers --help, runs
    ``main_fn()``; returns the exit status (2 for an unknown or malformed flag)."""
    flag_values.unparse_flags()
    try:
        rest = flag_values(argv)
    except flags.Error as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    if flag_values.help:
        print(format_help(doc, flag_values, groups))
        return 0
    if len(rest) > 1:
        print('error: unexpected argument %r (flags look like --name=value)' % rest[1],
              file=sys.stderr)
        return 2
    return main_fn()
