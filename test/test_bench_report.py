"""bench/common report sections and run_all's refusal to measure on a busy machine."""
import sys

from bench import common, run_all


def test_sections_are_replaced_in_place_and_kept_by_the_main_table(tmp_path):
    path = str(tmp_path / 'REPORT.md')
    common.write_report_section(path, 'Fine-tuning', ['mAP 0.1'])
    common.write_report_section(path, 'Other', ['x'])
    common.write_report_section(path, 'Fine-tuning', ['mAP 0.5', '| a | b |'])
    assert common.read_report_sections(path) == {
        'Fine-tuning': '## Fine-tuning\n\nmAP 0.5\n| a | b |', 'Other': '## Other\n\nx'}
    # run_all rewrites the head (its table) and keeps the sections, in their order.
    common.write_report(path, '# Benchmark report\n\n| t |', common.read_report_sections(path))
    text = open(path).read()
    assert text.startswith('# Benchmark report\n\n| t |\n\n<!-- section: Fine-tuning -->\n')
    assert text.index('mAP 0.5') < text.index('## Other') and text.count('mAP') == 1


def test_run_all_refuses_a_busy_machine(tmp_path, monkeypatch, capsys):
    output = tmp_path / 'REPORT.md'
    monkeypatch.setattr(run_all.os, 'getloadavg', lambda: (1.7, 1.0, 0.5))
    monkeypatch.setattr(sys, 'argv', ['run_all.py', '--output=%s' % output])
    assert run_all.main() == 1
    err = capsys.readouterr().err
    assert 'load average is 1.70' in err and '--force' in err
    assert not output.exists()
