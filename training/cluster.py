"""The trainer's cluster: its role and TensorFlow's parameter-server cluster, from the distributed
flags or from a ``TF_CONFIG`` environment variable (what Kubeflow's TFJob, Vertex AI and SageMaker
set in every task).

``TF_CONFIG`` is JSON: ``{"cluster": {"chief": ["host:port"], "worker": [...], "ps": [...]},
"task": {"type": "worker", "index": 0}}``. Its roles:

- ``chief`` (or ``master``, the older name): trains, initialises the variables, checkpoints and
  writes the run folder;
- ``worker``: trains;
- ``ps``: holds the variables;
- ``evaluator``: does not join the cluster; scores each new checkpoint of ``--train_model_dir``
  as ``eval_ssd_network.py --wait_for_checkpoints`` does (``training/evaluator_task.py``).

TensorFlow's parameter-server runtime knows only ``ps`` and ``worker`` jobs, its worker 0 being
the chief. So the chief becomes worker 0 of the TensorFlow cluster and the workers follow it, each
shifted by one (``worker`` i runs as TensorFlow's worker i + 1). Without a ``chief`` the workers
keep their indices and worker 0 is the chief, as with the flags. A cluster of one chief alone
trains in one process (an evaluator may still follow it).
"""
import collections
import json
import os
import re
import socket
import time

import tensorflow.compat.v1 as tf

from deployment import model_deploy
from model import checkpoints
from training.train_tools import TrainConfigError
from utils import cli
from utils import tf_errors

TF_CONFIG = 'TF_CONFIG'
ROLES = ('chief', 'worker', 'ps', 'evaluator')
ROLE_ALIASES = {'master': 'chief'}
# The flags a TF_CONFIG replaces; given beside it they must say the same.
CLUSTER_FLAGS = ('num_replicas', 'num_ps_tasks', 'job_name', 'task', 'ps_hosts', 'worker_hosts')

# ``role``: chief, worker, ps or evaluator; ``index``: within the role's own job.
# ``flags``: the distributed flags that run the same task ({flag name: value}); None for the
# evaluator, which is no part of the TensorFlow cluster.
ClusterRole = collections.namedtuple('ClusterRole', 'role index flags')


def _usage(message):
    return cli.UsageError('%s: %s' % (TF_CONFIG, message))


def _hosts_of(cluster, job):
    hosts = cluster.get(job, [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and ':' in h for h in hosts):
        raise _usage('cluster job %r must be a list of "host:port", got %r' % (job, hosts))
    return hosts


def parse_tf_config(text):
    """The ``ClusterRole`` a ``TF_CONFIG`` value describes; ``cli.UsageError`` (one line naming
    TF_CONFIG and what is wrong) for text that is not such JSON, an unknown role, an index
    outside its job or a cluster TensorFlow's parameter-server runtime cannot run."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise _usage('not JSON (%s)' % e)
    if not isinstance(config, dict) or not isinstance(config.get('cluster'), dict) \
            or not isinstance(config.get('task'), dict):
        raise _usage('needs a "cluster" object and a "task" object, got %.200s' % text.strip())
    cluster = {ROLE_ALIASES.get(job, job): hosts for job, hosts in config['cluster'].items()}
    if len(cluster) < len(config['cluster']):
        raise _usage('cluster names both "chief" and "master" (one chief only)')
    unknown = sorted(set(cluster) - set(ROLES))
    if unknown:
        raise _usage('cluster job %r is not one of %s' % (unknown[0], ', '.join(ROLES)))
    task_type = config['task'].get('type')
    role = ROLE_ALIASES.get(task_type, task_type)
    if role not in ROLES:
        raise _usage('task type %r is not one of %s (or master)' % (task_type, ', '.join(ROLES)))
    index = config['task'].get('index', 0)
    if not isinstance(index, int) or isinstance(index, bool):
        raise _usage('task index %r is not an integer' % (index,))
    chief, workers, ps = (_hosts_of(cluster, job) for job in ('chief', 'worker', 'ps'))
    evaluators = _hosts_of(cluster, 'evaluator')
    if len(chief) > 1:
        raise _usage('cluster has %d chief tasks (one at most)' % len(chief))
    # An evaluator may be left out of the cluster (Kubeflow's operator leaves it out).
    job_size = {'chief': len(chief), 'worker': len(workers), 'ps': len(ps),
                'evaluator': len(evaluators) if 'evaluator' in cluster else None}[role]
    if job_size is not None and not 0 <= index < job_size:
        raise _usage('task %s index %d is outside the cluster\'s %d %s task%s'
                     % (task_type, index, job_size, role, '' if job_size == 1 else 's'))
    if role == 'evaluator':
        return ClusterRole(role, index, None)
    tf_workers = chief + workers
    if not tf_workers:
        raise _usage('cluster has no chief and no worker')
    if len(tf_workers) > 1 and not ps:
        raise _usage('cluster has %d training tasks but no "ps" job: the parameter-server '
                     'runtime keeps the shared variables on parameter servers' % len(tf_workers))
    if role == 'chief' and not ps and len(tf_workers) == 1:
        # One chief alone: a single-process run.
        return ClusterRole(role, index, dict(num_replicas=1, num_ps_tasks=0, job_name='worker',
                                             task=0, ps_hosts='', worker_hosts=''))
    if role == 'ps':
        job_name, task = 'ps', index
    else:
        job_name, task = 'worker', index + len(chief) if role == 'worker' else 0
    return ClusterRole(role, index, dict(
        num_replicas=len(tf_workers), num_ps_tasks=len(ps), job_name=job_name, task=task,
        ps_hosts=','.join(ps), worker_hosts=','.join(tf_workers)))


def _same(flag_name, given, from_tf_config):
    if flag_name in ('ps_hosts', 'worker_hosts'):
        return [h.strip() for h in given.split(',') if h.strip()] == \
            [h for h in from_tf_config.split(',') if h]
    return given == from_tf_config


def check_flags_agree(cluster_role, given_flags):
    """``cli.UsageError`` naming the first of ``given_flags`` ({name: value}, the cluster flags
    given on the command line) that says otherwise than the TF_CONFIG."""
    expected = cluster_role.flags
    for name in CLUSTER_FLAGS:
        if name not in given_flags:
            continue
        if expected is None:
            raise _usage('task type evaluator trains nothing, but --%s=%s is given'
                         % (name, given_flags[name]))
        if not _same(name, given_flags[name], expected[name]):
            raise _usage('says %s=%s, --%s=%s disagrees (drop the flag: the cluster comes from '
                         'TF_CONFIG)' % (name, expected[name], name, given_flags[name]))


def _given_flags(options):
    """The cluster flags given on the command line ({name: value}); none for an options object
    that does not record it (absl's ``FlagValues`` does)."""
    given = {}
    for name in CLUSTER_FLAGS:
        try:
            present = options[name].present
        except (TypeError, KeyError, AttributeError):
            continue
        if present:
            given[name] = getattr(options, name)
    return given


def resolve(options, environ=None):
    """The run's ``ClusterRole``. With ``TF_CONFIG`` set in ``environ`` (default
    ``os.environ``): parsed, checked against the cluster flags given, and its cluster written
    into ``options``' distributed flags. Without it: the flags' role (``chief`` for worker 0).
    Calling it again gives the same answer."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG, '').strip()
    if not text:
        role = 'ps' if options.job_name == 'ps' else 'worker' if options.task else 'chief'
        return ClusterRole(role, options.task, {name: getattr(options, name)
                                                 for name in CLUSTER_FLAGS})
    cluster_role = parse_tf_config(text)
    check_flags_agree(cluster_role, _given_flags(options))
    for name, value in (cluster_role.flags or {}).items():
        setattr(options, name, value)
    return cluster_role


def _hosts(flag_name, value):
    hosts = [h.strip() for h in value.split(',') if h.strip()]
    for host in hosts:
        if ':' not in host:
            raise cli.UsageError('--%s: %r is not host:port' % (flag_name, host))
    return hosts


def check_cluster_flags(options):
    """(ps hosts, worker hosts) of the distributed flags; ``cli.UsageError`` naming the flag
    when they do not describe one cluster with this task in it."""
    if options.cluster_timeout_secs <= 0:
        raise cli.UsageError('--cluster_timeout_secs=%g must be > 0' % options.cluster_timeout_secs)
    ps_hosts = _hosts('ps_hosts', options.ps_hosts)
    worker_hosts = _hosts('worker_hosts', options.worker_hosts)
    if len(ps_hosts) != options.num_ps_tasks:
        raise cli.UsageError('--ps_hosts lists %d hosts for --num_ps_tasks=%d'
                             % (len(ps_hosts), options.num_ps_tasks))
    if len(worker_hosts) != options.num_replicas:
        raise cli.UsageError('--worker_hosts lists %d hosts for --num_replicas=%d'
                             % (len(worker_hosts), options.num_replicas))
    if options.job_name not in ('ps', 'worker'):
        raise cli.UsageError('--job_name=%s must be ps or worker' % options.job_name)
    tasks = ps_hosts if options.job_name == 'ps' else worker_hosts
    if not 0 <= options.task < len(tasks):
        raise cli.UsageError('--task=%d is out of range for %d %s tasks'
                             % (options.task, len(tasks), options.job_name))
    return ps_hosts, worker_hosts


def setup_cluster(options):
    """(DeploymentConfig, tf.distribute.Server or None) from the distributed flags (``resolve``
    has put a TF_CONFIG's cluster into them).

    A ps process serves forever here (the caller never gets back); workers get a server whose
    target the session connects to.
    """
    if options.num_replicas == 1 and options.num_ps_tasks == 0:
        return _deployment_config(options), None
    ps_hosts, worker_hosts = check_cluster_flags(options)
    cluster = tf.train.ClusterSpec({'ps': ps_hosts, 'worker': worker_hosts})
    server = tf.distribute.Server(cluster, job_name=options.job_name, task_index=options.task,
                                  config=tf.ConfigProto(allow_soft_placement=True))
    if options.job_name == 'ps':
        print('parameter server %d serving on %s' % (options.task, ps_hosts[options.task]),
              flush=True)
        server.join()
    return _deployment_config(options, replica_id=options.task), server


def _deployment_config(options, replica_id=0):
    try:
        return model_deploy.DeploymentConfig(
            num_clones=options.num_clones, clone_on_cpu=options.clone_on_cpu,
            replica_id=replica_id, num_replicas=options.num_replicas,
            num_ps_tasks=options.num_ps_tasks)
    except ValueError as e:
        raise cli.UsageError('--num_clones/--num_replicas/--num_ps_tasks/--task: %s' % e)


def unreachable_tasks(options, connect_timeout_secs=2.):
    """``[(job, index, host)]`` of the cluster's tasks (distributed flags) that refuse or do not
    answer a TCP connection within ``connect_timeout_secs``."""
    lost = []
    for job, hosts in (('ps', options.ps_hosts), ('worker', options.worker_hosts)):
        for index, host in enumerate(h.strip() for h in hosts.split(',') if h.strip()):
            name, port = host.rsplit(':', 1)
            try:
                socket.create_connection((name.strip('[]'), int(port)),
                                         connect_timeout_secs).close()
            except (OSError, ValueError):
                lost.append((job, index, host))
    return lost


def _task_name(job, index):
    return '%s %d' % ({'ps': 'parameter server', 'worker': 'worker'}[job], index)


def _named_tasks(options, error_text):
    """``[(job, index, host)]`` of the cluster's tasks ``error_text`` names as the remote end
    of a failed call (``remote target /job:ps/replica:0/task:0``)."""
    hosts = {'ps': options.ps_hosts.split(','), 'worker': options.worker_hosts.split(',')}
    named = []
    for job, index in re.findall(r'remote target /job:(ps|worker)/replica:\d+/task:(\d+)',
                                 error_text):
        task = (job, int(index), hosts[job][int(index)].strip())
        if task not in named:
            named.append(task)
    return named


def lost_task_error(options, cause, error_text='', probes=3, probe_interval_secs=1.):
    """The one-line ``TrainConfigError`` of a task that lost the cluster: the tasks that no
    longer answer a connection (looking ``probes`` times, a task dying may still answer
    at first), else those ``error_text`` names, else ``cause``; and the checkpoint a
    restarted cluster resumes from."""
    lost = []
    for attempt in range(probes):
        lost = unreachable_tasks(options)
        if lost:
            break
        if attempt + 1 < probes:
            time.sleep(probe_interval_secs)
    lost = lost or _named_tasks(options, error_text)
    if lost:
        what = 'lost %s' % ', '.join('%s (%s)' % (_task_name(job, index), host)
                                     for job, index, host in lost)
    else:
        what = 'the cluster failed (%s)' % cause
    try:
        newest = checkpoints.resolve(options.train_model_dir)
        resume = 'a restarted cluster resumes from %s' % os.path.basename(newest)
    except checkpoints.CheckpointError:
        resume = 'no checkpoint yet: a restarted cluster starts over'
    return TrainConfigError('%s: training stopped; %s' % (what, resume))


class StopOnLostTask(tf.train.SessionCreator):
    """Wraps a worker's session creator so that a lost task stops training with one line
    (``lost_task_error``), in a bounded time.

    TensorFlow's ``MonitoredSession`` meets a task that stops answering (``UnavailableError``,
    ``AbortedError``) by closing its session, whose clean-up calls to the lost task then wait
    without end, and by creating a new one, which waits for the task without end too. Here the
    session's own errors of a lost task, and a second session request, raise
    ``lost_task_error`` instead, and the session is left unclosed (the process ends): the
    scheduler restarts the tasks, and the chief resumes from the newest checkpoint.
    """

    def __init__(self, creator, options):
        self._creator, self._options = creator, options
        self._created = False

    def create_session(self):
        if self._created:
            raise lost_task_error(self._options, 'its session was lost')
        session = self._creator.create_session()
        self._created = True
        _stop_on_lost_task(session, self._options)
        return session


def _stop_on_lost_task(session, options):
    """Makes ``session`` (a ``tf.Session``) raise ``lost_task_error`` for a lost task's errors,
    and skip its ``close`` from then on: closing calls the lost task, without a time limit."""
    run, close = session.run, session.close
    lost = []

    def run_or_stop(*args, **kwargs):
        try:
            return run(*args, **kwargs)
        except (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError) as e:
            lost.append(e)
            raise lost_task_error(options, tf_errors.one_line(e), e.message) from None

    def close_unless_lost():
        if not lost:
            close()

    session.run, session.close = run_or_stop, close_unless_lost
