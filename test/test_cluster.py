"""training/cluster.py: a TF_CONFIG turned into the parameter-server runtime's cluster and this
task's flags (the chief as TensorFlow's worker 0), and its one-line errors."""
import json

import pytest

import train_ssd_network
from training import cluster
from utils import cli

CHIEF, W0, W1, PS0, EV = ('chief:2222', 'worker0:2222', 'worker1:2222', 'ps0:2222', 'eval:2222')


def _tf_config(task_type, index=0, **jobs):
    jobs = jobs or dict(chief=[CHIEF], worker=[W0, W1], ps=[PS0])
    return json.dumps({'cluster': jobs, 'task': {'type': task_type, 'index': index},
                       'environment': 'cloud'})


@pytest.mark.parametrize('task_type, index, job_name, task', [
    ('chief', 0, 'worker', 0), ('master', 0, 'worker', 0),
    ('worker', 0, 'worker', 1), ('worker', 1, 'worker', 2), ('ps', 0, 'ps', 0)])
def test_the_chief_is_tensorflow_worker_0_and_workers_shift_by_one(task_type, index, job_name,
                                                                   task):
    role = cluster.parse_tf_config(_tf_config(task_type, index))
    assert role.role == {'master': 'chief'}.get(task_type, task_type)
    assert role.index == index
    assert role.flags == dict(num_replicas=3, num_ps_tasks=1, job_name=job_name, task=task,
                              ps_hosts=PS0, worker_hosts=','.join([CHIEF, W0, W1]))


def test_master_names_the_chief_job_too():
    role = cluster.parse_tf_config(_tf_config('worker', 0, master=[CHIEF], worker=[W0], ps=[PS0]))
    assert role.flags['worker_hosts'] == '%s,%s' % (CHIEF, W0)
    assert role.flags['task'] == 1


def test_without_a_chief_worker_0_is_the_chief():
    role = cluster.parse_tf_config(_tf_config('worker', 1, worker=[W0, W1], ps=[PS0]))
    assert (role.flags['task'], role.flags['worker_hosts']) == (1, '%s,%s' % (W0, W1))


def test_a_lone_chief_trains_in_one_process():
    role = cluster.parse_tf_config(_tf_config('chief', 0, chief=[CHIEF]))
    assert (role.flags['num_replicas'], role.flags['num_ps_tasks']) == (1, 0)


@pytest.mark.parametrize('jobs', [dict(chief=[CHIEF], worker=[W0], ps=[PS0]),
                                  dict(chief=[CHIEF], worker=[W0], ps=[PS0], evaluator=[EV])])
def test_the_evaluator_is_no_part_of_the_tensorflow_cluster(jobs):
    role = cluster.parse_tf_config(_tf_config('evaluator', 0, **jobs))
    assert (role.role, role.index, role.flags) == ('evaluator', 0, None)


@pytest.mark.parametrize('text, words', [
    ('{"cluster": ', 'not JSON'),
    ('[1, 2]', 'needs a "cluster" object'),
    (_tf_config('trainer'), "task type 'trainer' is not one of"),
    (_tf_config('worker', 2), 'task worker index 2 is outside the cluster\'s 2 worker tasks'),
    (_tf_config('ps', 1), 'task ps index 1 is outside'),
    (_tf_config('chief', -1), 'task chief index -1 is outside'),
    (_tf_config('worker', '0'), "task index '0' is not an integer"),
    (_tf_config('evaluator', 1, chief=[CHIEF], ps=[PS0], evaluator=[EV]), 'index 1 is outside'),
    (_tf_config('chief', 0, chief=[CHIEF], worker=[W0]), 'no "ps" job'),
    (_tf_config('chief', 0, chief=[CHIEF, W0], ps=[PS0]), '2 chief tasks'),
    (_tf_config('chief', 0, chief=[CHIEF], master=[W0], ps=[PS0]), 'both "chief" and "master"'),
    (_tf_config('chief', 0, chief=[CHIEF], ps=[PS0], trainer=[W0]), "job 'trainer' is not one"),
    (_tf_config('chief', 0, chief=['chief'], ps=[PS0]), 'must be a list of "host:port"'),
])
def test_a_bad_tf_config_is_one_line_naming_it(text, words):
    with pytest.raises(cli.UsageError) as error:
        cluster.parse_tf_config(text)
    message = str(error.value)
    assert message.startswith('TF_CONFIG: ') and words in message and '\n' not in message


def _options(*argv):
    options = train_ssd_network.define_flags().values
    options(['train_ssd_network.py'] + list(argv))
    return options


def test_resolve_writes_the_cluster_into_the_flags_and_agrees_with_given_flags():
    environ = {'TF_CONFIG': _tf_config('worker', 1)}
    options = _options('--job_name=worker', '--ps_hosts=%s' % PS0)
    role = cluster.resolve(options, environ)
    assert role.role == 'worker'
    assert (options.job_name, options.task, options.num_replicas, options.num_ps_tasks) == \
        ('worker', 2, 3, 1)
    assert options.worker_hosts == ','.join([CHIEF, W0, W1])
    assert cluster.resolve(options, environ) == role  # again: the same


@pytest.mark.parametrize('flag, words', [
    ('--task=1', 'says task=2, --task=1 disagrees'),
    ('--job_name=ps', 'says job_name=worker, --job_name=ps disagrees'),
    ('--num_replicas=2', 'says num_replicas=3'),
    ('--worker_hosts=%s,%s' % (W0, W1), 'says worker_hosts=%s' % ','.join([CHIEF, W0, W1])),
])
def test_flags_that_disagree_with_tf_config_are_one_line(flag, words):
    with pytest.raises(cli.UsageError) as error:
        cluster.resolve(_options(flag), {'TF_CONFIG': _tf_config('worker', 1)})
    assert words in str(error.value)


def test_an_evaluator_given_cluster_flags_is_refused():
    with pytest.raises(cli.UsageError, match='evaluator trains nothing, but --task=1'):
        cluster.resolve(_options('--task=1'), {'TF_CONFIG': _tf_config('evaluator', 0)})


def test_without_tf_config_the_flags_decide():
    options = _options('--job_name=worker', '--task=1', '--num_replicas=2', '--num_ps_tasks=1')
    assert cluster.resolve(options, {}).role == 'worker'
    assert cluster.resolve(_options(), {}).role == 'chief'
    assert cluster.resolve(_options('--job_name=ps'), {'TF_CONFIG': ' '}).role == 'ps'


def test_the_trainer_cli_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TF_CONFIG', _tf_config('worker', 5))
    status = train_ssd_network.main(['train_ssd_network.py', '--train_model_dir=%s' % tmp_path,
                                     '--dataset_dir=%s' % tmp_path])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.splitlines() == ["error: TF_CONFIG: task worker index 5 is outside the "
                                "cluster's 2 worker tasks"]
