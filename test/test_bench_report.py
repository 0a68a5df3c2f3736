"""bench/common report sections and run_all's refusal to measure on a busy machine."""
import sys

from bench import common, run_all


ZEN3 = common.Machine('AMD EPYC', 2, ())
ZEN4 = common.Machine('AMD EPYC', 2, ('AVX-512', 'AVX512_BF16'))


def test_the_machine_is_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\ncpu family\t: 6\nmodel\t\t: 143\n'
                       'model name\t: Intel(R) Xeon(R) Platinum 8480+\n'
                       'flags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n'
                       'processor\t: 1\ncpu family\t: 6\nmodel\t\t: 207\n'
                       'model name\t: Intel(R) Xeon(R) Platinum 8480+\n')
    machine = common.this_machine(str(cpuinfo))
    assert machine.cpu == 'Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143)'
    assert machine.instructions == ('AVX-512', 'AVX512_BF16', 'AMX')
    assert common.machine_heading(machine._replace(cores=4), '2026-12-05') == (
        '## Intel(R) Xeon(R) Platinum 8480+ (family 6, model 143), 4 cores, AVX-512, '
        'AVX512_BF16, AMX (2026-12-05)')
    # Without family and model numbers the model name alone names the CPU.
    cpuinfo.write_text('processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n')
    assert common.this_machine(str(cpuinfo)).cpu == 'AMD EPYC'
    assert common.machine_heading(ZEN3, '2026-12-03') == (
        '## AMD EPYC, 2 cores, no AVX-512, no AVX512_BF16, no AMX (2026-12-03)')
    assert common.machine_key(ZEN3) != common.machine_key(ZEN4)


def test_each_machine_keeps_its_own_table_and_parts(tmp_path):
    path = str(tmp_path / 'REPORT.md')
    common.write_report_section(path, 'Fine-tuning', ['mAP 0.1'], machine=ZEN4)
    common.update_machine_section(path, head='| zen3 table |', machine=ZEN3, date='2026-12-03')
    common.write_report_section(path, 'Fine-tuning', ['mAP 0.5', '| a | b |'], machine=ZEN4)
    common.update_machine_section(path, head='| zen4 table |', machine=ZEN4, date='2026-12-06')
    preamble, machines = common.read_report(path)
    assert preamble == common.REPORT_PREAMBLE
    assert list(machines) == [common.machine_key(ZEN4), common.machine_key(ZEN3)]
    zen4, zen3 = machines.values()
    assert zen4 == common.MachineSection(
        '## AMD EPYC, 2 cores, AVX-512, AVX512_BF16, no AMX (2026-12-06)', '| zen4 table |',
        {'Fine-tuning': '### Fine-tuning\n\nmAP 0.5\n| a | b |'})
    assert zen3 == common.MachineSection(
        '## AMD EPYC, 2 cores, no AVX-512, no AVX512_BF16, no AMX (2026-12-03)', '| zen3 table |',
        {})
    text = open(path).read()
    assert text.count('mAP') == 1 and text.index('zen4 table') < text.index('mAP 0.5')
    common.write_report(path, *common.read_report(path))
    assert open(path).read() == text  # reading and writing back changes nothing


def test_a_run_writes_only_its_machines_table(tmp_path, monkeypatch):
    output = tmp_path / 'REPORT.md'
    common.update_machine_section(str(output), head='- Date: 2026-12-03 19:47 UTC\n\n'
                                  '| bench_data.py | x | 1 | s | zen3 |  |', machine=ZEN3,
                                  date='2026-12-03')
    common.write_report_section(str(output), 'Notes', ['by hand'], machine=ZEN3)
    figures = {'bench_data.py': [['data.x', '2', 's', 'zen4']],
               'bench_network.py': [['net.y', '3', 'ms', 'zen4']]}
    monkeypatch.setattr(run_all.common, 'this_machine', lambda: ZEN4)
    monkeypatch.setattr(run_all, 'environment_description', lambda: '24 GiB')
    monkeypatch.setattr(run_all.os, 'getloadavg', lambda: (0.1, 0.1, 0.1))
    monkeypatch.setattr(run_all, 'run_benchmark', lambda script, args: (figures[script], 5., True))
    for only in ('bench_data.py', 'bench_network.py'):
        monkeypatch.setattr(sys, 'argv', ['run_all.py', '--output=%s' % output, '--only=%s' % only])
        assert run_all.main() == 0
    _, machines = common.read_report(str(output))
    zen3 = machines[common.machine_key(ZEN3)]
    assert 'zen3' in zen3.head and 'zen4' not in zen3.head and list(zen3.parts) == ['Notes']
    zen4 = machines[common.machine_key(ZEN4)]
    assert zen4.heading.startswith('## AMD EPYC, 2 cores, AVX-512, AVX512_BF16, no AMX (')
    rows = [line for line in zen4.head.splitlines() if line.startswith('| bench_')]
    assert [row.split(' | ')[1] for row in rows] == [
        'data.x', 'benchmark wall time', 'net.y', 'benchmark wall time']
    assert '(run of ' in rows[0] and '(run of ' not in rows[2]  # kept from the first run
    # A benchmark after the last one run keeps its rows too.
    monkeypatch.setattr(sys, 'argv', ['run_all.py', '--output=%s' % output, '--only=bench_data.py'])
    assert run_all.main() == 0
    zen4 = common.read_report(str(output))[1][common.machine_key(ZEN4)]
    rows = [line for line in zen4.head.splitlines() if line.startswith('| bench_')]
    assert [row.split(' | ')[1] for row in rows] == [
        'data.x', 'benchmark wall time', 'net.y', 'benchmark wall time']
    assert '(run of ' not in rows[0] and '(run of ' in rows[2]


def test_run_all_refuses_a_busy_machine(tmp_path, monkeypatch, capsys):
    output = tmp_path / 'REPORT.md'
    monkeypatch.setattr(run_all.os, 'getloadavg', lambda: (1.7, 1.0, 0.5))
    monkeypatch.setattr(sys, 'argv', ['run_all.py', '--output=%s' % output])
    assert run_all.main() == 1
    err = capsys.readouterr().err
    assert 'load average is 1.70' in err and '--force' in err
    assert not output.exists()


def test_comparisons_divide_the_slower_figure_by_the_faster_and_judge_the_target():
    lines = run_all.comparison_lines({
        'in_process_serving_default_batch8_float32': 2.4,
        'in_process_serving_default_batch8_bfloat16': 1.0,
        'torch_forward_bfloat16_batch8': 1.9, 'forward_bfloat16_batch8': 1.6})
    assert lines == [
        '- serving_default batch 8: bfloat16 export vs float32 export: 2.40x '
        '(in_process_serving_default_batch8_float32 / in_process_serving_default_batch8_bfloat16)'
        ' (target >= 2x: met)']
    assert run_all.comparison_lines({'forward_bfloat16_batch8': 1.0}) == []


def test_speed_table_gives_ratios_to_pytorch_and_to_the_matmul_peak():
    values = {'network_gflop_per_image': 60., 'matmul_peak_float32': 300.,
              'matmul_peak_bfloat16': 1200.,
              'forward_float32_batch1': 0.3, 'torch_forward_float32_batch1': 0.2,
              'forward_bfloat16_batch8': 0.5, 'torch_forward_bfloat16_batch8': 0.8,
              'training_bfloat16_seconds_per_step': 2.0}
    rows = run_all.speed_table(values)
    assert len(rows) == 5   # header, rule, the three measured paths
    # 60 GFLOP in 0.3 s = 200 GFLOP/s, 67 % of 300; PyTorch 0.2 s / 0.3 s = 0.67.
    assert rows[2] == ('| forward float32, batch 1 | 0.300 | 0.200 | 0.67 (1: not met) | 200 | '
                       '67 % of 300 |')
    # 8 images x 60 GFLOP in 0.5 s = 960 GFLOP/s, 80 % of the bfloat16 peak; 0.8 / 0.5 = 1.6.
    assert rows[3] == ('| forward bfloat16, batch 8 | 0.500 | 0.800 | 1.60 (1: met) | 960 | '
                       '80 % of 1200 |')
    # A step is three passes: 8 x 60 x 3 / 2 s = 720 GFLOP/s; no PyTorch figure.
    assert rows[4] == ('| training step bfloat16, batch 8 | 2.000 | no PyTorch here | '
                       'no PyTorch here | 720 | 60 % of 1200 |')
    without_peak = run_all.speed_table({'forward_float32_batch1': 0.3})
    assert without_peak[2].endswith('| n/a | n/a |')
    assert run_all.speed_table({}) == []


def test_pytorch_twin_has_our_network_size_and_outputs():
    """The yardstick is the same network: as many parameters as our SSD300 graph for 21 classes
    (26,285,486), and logits and offsets for its 8732 anchors."""
    import numpy as np
    import pytest
    import tensorflow.compat.v1 as tf
    torch = pytest.importorskip('torch')
    from bench import bench_pytorch
    from nets import nets_factory
    from utils import slim_compat
    with tf.Graph().as_default():
        net = nets_factory.build_network('ssd_vgg_300', 21)
        with slim_compat.import_slim().arg_scope(net.arg_scope()):
            net.net(tf.zeros([1, 300, 300, 3]), is_training=False)
        ours = sum(int(np.prod(v.shape.as_list())) for v in tf.trainable_variables())
    model = bench_pytorch.build_ssd300(torch)
    assert sum(p.numel() for p in model.parameters()) == ours == 26285486
    with torch.no_grad():
        logits, boxes = model(torch.zeros(1, 3, 300, 300))
    assert tuple(logits.shape) == (1, 8732, 21) and tuple(boxes.shape) == (1, 8732, 4)


def test_pytorch_twin_trains_with_the_trainers_optimizer_and_weight_decay():
    """The yardstick's step does our step's update work: RMSProp with the trainer's default
    decay, momentum and epsilon, and its L2 weight decay on the 35 convolution weights only."""
    import pytest
    torch = pytest.importorskip('torch')
    import train_ssd_network
    from bench import bench_pytorch
    from training import train_tools
    defaults = train_ssd_network.define_flags().values
    defaults(['train_ssd_network.py'])
    assert defaults.optimizer == 'rmsprop' and defaults.opt_epsilon is None
    assert (bench_pytorch.RMSPROP_DECAY, bench_pytorch.RMSPROP_MOMENTUM,
            bench_pytorch.WEIGHT_DECAY) == (defaults.rmsprop_decay, defaults.rmsprop_momentum,
                                            defaults.weight_decay)
    assert bench_pytorch.RMSPROP_EPSILON == train_tools.DEFAULT_EPSILON['rmsprop']
    model = bench_pytorch.build_ssd300(torch)
    decayed, plain = bench_pytorch.trainer_like_optimizer(torch, model).param_groups
    assert decayed['weight_decay'] == 0.0005 and plain['weight_decay'] == 0
    assert [p.dim() for p in decayed['params']] == [4] * 35
    assert len(plain['params']) == 36   # 35 biases and conv4_3's scale
    assert decayed['momentum'] == 0.9 and decayed['alpha'] == 0.9 and decayed['eps'] == 1.0


def test_only_keeps_the_rows_of_the_other_benchmarks_with_their_date(tmp_path):
    path = str(tmp_path / 'REPORT.md')
    common.update_machine_section(path, machine=ZEN3, head=(
        '- Date: 2026-11-25 21:23 UTC\n\n'
        '| benchmark | figure | value | unit | note |\n|---|---|---|---|---|\n'
        '| bench_learning.py | learning_map_voc07 | 0.663 | mAP@0.5 | held-out split |\n'
        '| bench_data.py | x | 1 | s | a (run of 2026-11-01 10:00 UTC) | 0.10 |'))
    common.write_report_section(path, 'Kept', ['| bench_fake.py | not | a | row | here |'],
                                machine=ZEN3)
    assert run_all.previous_rows(path, ZEN3) == {
        'bench_learning.py': ['| bench_learning.py | learning_map_voc07 | 0.663 | mAP@0.5 | '
                              'held-out split (run of 2026-11-25 21:23 UTC) |  |'],
        'bench_data.py': ['| bench_data.py | x | 1 | s | a (run of 2026-11-01 10:00 UTC) | 0.10 |']}
    assert run_all.previous_rows(path, ZEN4) == {}
