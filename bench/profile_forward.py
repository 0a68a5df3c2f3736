"""Which kernels the forward pass runs, op type by op type, and in which dtype (issue #12).

    TF_ENABLE_ONEDNN_OPTS=1 python bench/profile_forward.py [--batch_size=1] [--runs=5]

Runs the full-width SSD-VGG300 forward pass (network outputs, as bench_network.py times it)
with full tracing in three set-ups: float32; bfloat16 through casts in the graph (the path of
detector.py, eval_ssd_network.py and the bfloat16 export); and float32 graph with oneDNN's
session-level bfloat16 rewrite (``auto_mixed_precision_onednn_bfloat16``, what the trainer's
--precision=bfloat16 turns on). For each it prints the op types that take the most time as the
kernels report it (after grappler's rewrites, so oneDNN's fused kernels and its layout
conversions appear under their own names), their output dtypes and the wall time of an untraced
run. The traced times are what the kernels report: on a 2-core Zen 3 they summed to 6-38 ms
against 0.4-0.6 s of wall time, so read them as which kernels run, not where the time goes.
"""
import argparse
import collections
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402
from tensorflow.core.protobuf import rewriter_config_pb2  # noqa: E402

from model import inference  # noqa: E402
from nets import nets_factory  # noqa: E402

# (name, graph precision, session-level oneDNN bfloat16 rewrite)
SETUPS = (('float32', 'float32', False),
          ('bfloat16 casts in the graph', 'bfloat16', False),
          ('float32 graph + oneDNN bf16 rewrite', 'float32', True))
_LABEL = re.compile(r'^\S+ = (\w+)')


def session_config(onednn_rewrite):
    config = tf.ConfigProto()
    if onednn_rewrite:
        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
            rewriter_config_pb2.RewriterConfig.ON)
    return config


def op_profile(step_stats):
    """{op type: [total microseconds, count, set of output dtypes]} over one traced run."""
    profile = collections.defaultdict(lambda: [0, 0, set()])
    for device in step_stats.dev_stats:
        for node in device.node_stats:
            match = _LABEL.match(node.timeline_label)
            if not match:
                continue
            entry = profile[match.group(1)]
            entry[0] += node.op_end_rel_micros - node.op_start_rel_micros
            entry[1] += 1
            for output in node.output:
                entry[2].add(tf.as_dtype(output.tensor_description.dtype).name)
    return profile


def profile_setup(net, precision, onednn_rewrite, batch_size, runs, top):
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [batch_size, 300, 300, 3])
        outputs = inference.network_outputs(net, images, precision)
        feed = {images: np.random.RandomState(0).randn(batch_size, 300, 300, 3).astype(np.float32)}
        with tf.Session(config=session_config(onednn_rewrite)) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(outputs, feed)
            wall = []
            for _ in range(runs):
                start = time.perf_counter()
                sess.run(outputs, feed)
                wall.append(time.perf_counter() - start)
            metadata = tf.RunMetadata()
            sess.run(outputs, feed, run_metadata=metadata,
                     options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE))
    profile = op_profile(metadata.step_stats)
    total = sum(entry[0] for entry in profile.values())
    print('  untraced wall time: %.3f s (median of %d); traced kernel time %.3f s in %d ops'
          % (statistics.median(wall), runs, total / 1e6, sum(e[1] for e in profile.values())))
    print('  %-34s %9s %6s %5s  %s' % ('op type', 'ms', 'share', 'count', 'output dtypes'))
    for op, (micros, count, dtypes) in sorted(profile.items(), key=lambda kv: -kv[1][0])[:top]:
        print('  %-34s %9.1f %5.1f%% %5d  %s' % (op, micros / 1e3, 100. * micros / total, count,
                                                 ','.join(sorted(dtypes))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch_size', type=int, default=1)
    parser.add_argument('--runs', type=int, default=5, help='untraced runs timed (median)')
    parser.add_argument('--top', type=int, default=12, help='op types listed per set-up')
    options = parser.parse_args()
    tf.disable_eager_execution()
    net = nets_factory.build_network('ssd_vgg_300', 21)
    print('SSD-VGG300 forward, batch %d, TF_ENABLE_ONEDNN_OPTS=%s' % (
        options.batch_size, os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')))
    for name, precision, onednn_rewrite in SETUPS:
        print('\n%s:' % name)
        profile_setup(net, precision, onednn_rewrite, options.batch_size, options.runs, options.top)
    return 0


if __name__ == '__main__':
    sys.exit(main())
