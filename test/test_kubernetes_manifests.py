"""The Kubernetes manifests of kubernetes/: valid against the Kubernetes schemas (offline,
``kubernetes-validate``'s bundled ones; the TFJob against kubernetes/tfjob.schema.json with each
replica's pod template checked as a core PodTemplate), and in agreement with the rest of the
repository: the trainer's and exporter's flags, the exporter's defaults, docker_run.sh,
serving/defaults.py and the web page's Dockerfile. Every expected value is read from those files."""
import glob
import json
import os
import posixpath
import re
import shlex

import pytest

kubernetes_validate = pytest.importorskip('kubernetes_validate')
jsonschema = pytest.importorskip('jsonschema')
yaml = pytest.importorskip('yaml')

from serving import defaults  # noqa: E402
from test.conftest import REPO_ROOT  # noqa: E402

MANIFEST_DIR = os.path.join(REPO_ROOT, 'kubernetes')
KUBERNETES_VERSION = '1.33.0'
TFJOB_ROLES = ('Chief', 'Worker', 'PS', 'Evaluator')
CLUSTER_FLAGS = ('num_replicas', 'num_ps_tasks', 'task', 'job_name', 'ps_hosts', 'worker_hosts')


def _manifests():
    """{(kind, name): document} of every YAML file in kubernetes/."""
    documents = {}
    for path in sorted(glob.glob(os.path.join(MANIFEST_DIR, '*.yaml'))):
        with open(path) as f:
            for document in yaml.safe_load_all(f):
                key = (document['kind'], document['metadata']['name'])
                assert key not in documents, 'two manifests define %s %s' % key
                documents[key] = document
    return documents


MANIFESTS = _manifests()


def _read(relative_path):
    with open(os.path.join(REPO_ROOT, relative_path)) as f:
        return f.read()


class DockerRun(object):
    """What docker_run.sh sets: its variables' defaults, the container ports it publishes, the
    mount target and the flags it gives TF Serving (names and default values)."""

    def __init__(self, text):
        self.defaults = dict(re.findall(r'^(\w+)=\$\{\1:-([^}]*)\}', text, re.M))
        self.defaults.update(re.findall(r'^(\w+)=\$\{\d:-([^}]*)\}', text, re.M))
        published = dict(re.findall(r'-p "\$(\w+):(\d+)"', text))
        self.grpc_port, self.rest_port = int(published['GRPC_PORT']), int(published['REST_PORT'])
        self.mount_target = re.search(r'target=([^",]+)', text).group(1)
        self.model_name_env = re.search(r'-e "(\w+)=\$MODEL_NAME"', text).group(1)
        self.server_flags = {name: self.defaults[variable] for name, variable in
                             re.findall(r'"--(tensorflow_\w+)=\$(\w+)"', text)}

    def mount_path(self, model_name):
        return self.mount_target.replace('$MODEL_NAME', model_name)


DOCKER_RUN = DockerRun(_read('docker_run.sh'))


def _tool_flags(module_name):
    """A fresh set of the tool's flags (its ``define_flags()``), unparsed."""
    import importlib
    return importlib.import_module(module_name).define_flags().values


def _parse_flags(module_name, args):
    """The tool's flag values for ``args`` (its own parser: an unknown flag fails here)."""
    flag_values = _tool_flags(module_name)
    flag_values([module_name] + list(args))
    return flag_values


def _container(template, name=None):
    """The container ``name`` (default: the first) of a pod template."""
    containers = template['spec']['containers']
    return containers[0] if name is None else next(c for c in containers if c['name'] == name)


def _env(container):
    return {item['name']: item['value'] for item in container.get('env', ())}


def _arg_flags(args):
    """{name: value} of ``--name=value`` arguments."""
    return dict(arg[2:].split('=', 1) for arg in args)


def _model_name():
    """The exporter's default --model_name, the one name every manifest uses."""
    name = _tool_flags('export_saved_model')['model_name'].default
    assert name == DOCKER_RUN.defaults['MODEL_NAME']
    return name


def _pod_volume_claims(pod_spec):
    return {v['name']: v['persistentVolumeClaim']['claimName'] for v in pod_spec['volumes']}


def _path_on_volume(container, pod_spec, path):
    """(claim, path inside the claim) of ``path`` in ``container``, through its volume mounts."""
    claims = _pod_volume_claims(pod_spec)
    for mount in container['volumeMounts']:
        root = mount['mountPath'].rstrip('/')
        if path == root or path.startswith(root + '/'):
            inside = posixpath.join(mount.get('subPath', ''), path[len(root):].lstrip('/'))
            return claims[mount['name']], inside.strip('/')
    raise AssertionError('%s is on no volume of container %s' % (path, container['name']))


@pytest.mark.parametrize('key', sorted(k for k in MANIFESTS if k[0] != 'TFJob'))
def test_manifest_is_valid_against_the_kubernetes_schema(key):
    kubernetes_validate.validate(MANIFESTS[key], KUBERNETES_VERSION, strict=True)


def test_a_misspelt_field_fails_the_validation():
    broken = json.loads(json.dumps(MANIFESTS[('Deployment', 'ssd-serving')]))
    broken['spec']['template']['spec']['containers'][0]['readinesProbe'] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _tfjob_schema():
    with open(os.path.join(MANIFEST_DIR, 'tfjob.schema.json')) as f:
        return json.load(f)


def _validate_tfjob(document):
    jsonschema.validate(document, _tfjob_schema())
    for role, replica in document['spec']['tfReplicaSpecs'].items():
        pod_template = {'apiVersion': 'v1', 'kind': 'PodTemplate',
                        'metadata': {'name': 'tfjob-%s' % role.lower()},
                        'template': replica['template']}
        kubernetes_validate.validate(pod_template, KUBERNETES_VERSION, strict=True)
        # The operator finds the TensorFlow container by this name (and sets TF_CONFIG in it).
        assert 'tensorflow' in [c['name'] for c in replica['template']['spec']['containers']]


def test_tfjob_is_valid_and_has_every_role():
    job = MANIFESTS[('TFJob', 'ssd-train')]
    _validate_tfjob(job)
    replicas = job['spec']['tfReplicaSpecs']
    assert set(replicas) == set(TFJOB_ROLES)
    assert replicas['Chief']['replicas'] == 1
    assert all(replicas[role]['replicas'] >= 1 for role in TFJOB_ROLES)


@pytest.mark.parametrize('breakage', ['unknown_role', 'bad_restart_policy', 'bad_pod_field'])
def test_the_tfjob_check_catches_a_broken_job(breakage):
    broken = json.loads(json.dumps(MANIFESTS[('TFJob', 'ssd-train')]))
    replicas = broken['spec']['tfReplicaSpecs']
    if breakage == 'unknown_role':
        replicas['Trainer'] = replicas['Worker']
    elif breakage == 'bad_restart_policy':
        replicas['PS']['restartPolicy'] = 'Sometimes'
    else:
        replicas['Worker']['template']['spec']['containers'][0]['volumeMount'] = []
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        _validate_tfjob(broken)


def test_tfjob_runs_the_trainer_with_its_own_flags_and_no_cluster_flags():
    job = MANIFESTS[('TFJob', 'ssd-train')]
    commands = set()
    for role, replica in job['spec']['tfReplicaSpecs'].items():
        pod_spec = replica['template']['spec']
        container = _container(replica['template'])
        assert container['command'] == ['python', 'train_ssd_network.py']
        commands.add(tuple(container['args']))
        options = _parse_flags('train_ssd_network', container['args'])
        given = _arg_flags(container['args'])
        assert not set(CLUSTER_FLAGS) & set(given), 'the role comes from TF_CONFIG'
        for path in (options.train_model_dir, options.dataset_dir):
            _path_on_volume(container, pod_spec, path)
    assert len(commands) == 1, 'every role runs the same command'


def test_export_job_reads_the_run_folder_and_writes_where_serving_reads():
    job = MANIFESTS[('TFJob', 'ssd-train')]
    chief = job['spec']['tfReplicaSpecs']['Chief']['template']
    train_dir = _parse_flags('train_ssd_network', _container(chief)['args']).train_model_dir
    export = MANIFESTS[('Job', 'ssd-export')]
    export_container = _container(export['spec']['template'])
    assert export_container['command'] == ['python', 'export_saved_model.py']
    options = _parse_flags('export_saved_model', export_container['args'])
    assert options.model_name == _model_name()
    checkpoint_claim = _path_on_volume(export_container, export['spec']['template']['spec'],
                                       options.ckpt_path)
    train_claim = _path_on_volume(_container(chief), chief['spec'], train_dir)
    # The best checkpoint the evaluator keeps (training/best_checkpoint.py: <train_dir>/best).
    assert checkpoint_claim == (train_claim[0], posixpath.join(train_claim[1], 'best'))

    serving = MANIFESTS[('Deployment', 'ssd-serving')]
    serving_container = _container(serving['spec']['template'], 'tensorflow-serving')
    model_path = DOCKER_RUN.mount_path(options.model_name)
    assert _path_on_volume(serving_container, serving['spec']['template']['spec'], model_path) \
        == _path_on_volume(export_container, export['spec']['template']['spec'],
                           posixpath.join(options.export_dir, options.model_name))


def test_serving_deployment_agrees_with_docker_run_and_the_serving_defaults():
    model_name = _model_name()
    serving = MANIFESTS[('Deployment', 'ssd-serving')]
    pod = serving['spec']['template']['spec']
    container = _container(serving['spec']['template'], 'tensorflow-serving')
    assert container['image'].split(':')[0] == DOCKER_RUN.defaults['IMAGE']
    assert _env(container)[DOCKER_RUN.model_name_env] == model_name
    ports = {p['name']: p['containerPort'] for p in container['ports']}
    assert ports == {'grpc': DOCKER_RUN.grpc_port, 'rest': DOCKER_RUN.rest_port}
    for probe in ('readinessProbe', 'livenessProbe'):
        check = container[probe]['httpGet']
        assert check['path'] == '/v1/models/%s' % model_name
        assert check['port'] == 'rest'
    args = _arg_flags(container['args'])
    assert set(DOCKER_RUN.server_flags) <= set(args)
    # docker_run.sh's 0 means every core of the machine; a pod has its CPU limit instead.
    assert DOCKER_RUN.server_flags['tensorflow_intra_op_parallelism'] == '0'
    assert args['tensorflow_intra_op_parallelism'] == container['resources']['limits']['cpu']
    assert int(args['rest_api_timeout_in_ms']) == int(defaults.REST_TIMEOUT_SECONDS * 1000)
    assert pod['terminationGracePeriodSeconds'] == defaults.SHUTDOWN_GRACE_SECONDS
    assert container['resources']['requests']['cpu']


def _selects(service, deployment):
    labels = deployment['spec']['template']['metadata']['labels']
    return all(labels.get(k) == v for k, v in service['spec']['selector'].items())


def test_services_and_autoscaler_point_at_their_deployments():
    serving = MANIFESTS[('Deployment', 'ssd-serving')]
    service = MANIFESTS[('Service', 'ssd-serving')]
    assert _selects(service, serving) and not _selects(service, MANIFESTS[('Deployment',
                                                                          'ssd-web')])
    assert {p['name']: p['port'] for p in service['spec']['ports']} == {
        'grpc': DOCKER_RUN.grpc_port, 'rest': DOCKER_RUN.rest_port}
    autoscaler = MANIFESTS[('HorizontalPodAutoscaler', 'ssd-serving')]
    target = autoscaler['spec']['scaleTargetRef']
    assert (target['kind'], target['name']) == ('Deployment', serving['metadata']['name'])
    assert autoscaler['spec']['minReplicas'] <= autoscaler['spec']['maxReplicas']
    web_service = MANIFESTS[('Service', 'ssd-web')]
    assert _selects(web_service, MANIFESTS[('Deployment', 'ssd-web')])


def test_every_volume_claim_is_defined():
    claims = {name for kind, name in MANIFESTS if kind == 'PersistentVolumeClaim'}
    pods = [d['spec']['template']['spec'] for (kind, _), d in MANIFESTS.items()
            if kind in ('Deployment', 'Job')]
    pods += [r['template']['spec'] for r in
             MANIFESTS[('TFJob', 'ssd-train')]['spec']['tfReplicaSpecs'].values()]
    for pod in pods:
        assert set(_pod_volume_claims(pod).values()) <= claims


def _dockerfile(relative_path):
    """(ENV defaults, exposed ports, the image tag its build comment gives) of a Dockerfile."""
    text = _read(relative_path)
    env = {}
    for block in re.findall(r'^ENV (.*?)(?<!\\)$', text, re.M | re.S):
        env.update(item.split('=', 1) for item in shlex.split(block.replace('\\\n', ' ')))
    exposed = [int(p) for p in re.findall(r'^EXPOSE (\d+)', text, re.M)]
    tag = re.search(r'docker build -f %s (?:\S+ )*?-t (\S+) \.' % re.escape(relative_path),
                    text).group(1)
    copied = [src for line in re.findall(r'^COPY (.*)$', text, re.M)
              for src in line.split()[:-1]]
    return env, exposed, tag, copied


def test_dockerfiles_copy_files_that_exist():
    for path in ('serving/clients/Dockerfile', 'kubernetes/toolkit.Dockerfile'):
        for source in _dockerfile(path)[3]:
            assert os.path.exists(os.path.join(REPO_ROOT, source)), '%s: %s' % (path, source)


def test_web_page_deployment_talks_rest_to_the_serving_service():
    import serving.clients.web as web
    env, exposed, tag, _ = _dockerfile('serving/clients/Dockerfile')
    deployment = MANIFESTS[('Deployment', 'ssd-web')]
    container = _container(deployment['spec']['template'])
    assert container['image'].split(':')[0] == tag
    assert [p['containerPort'] for p in container['ports']] == exposed
    settings = _env(container)
    known = set(re.findall(r"get\('(\w+)'", _read('serving/clients/web.py')))
    assert {name[len(web.ENV_PREFIX):] for name in settings} <= known
    assert set(settings) <= set(env) | {web.ENV_PREFIX + 'MODEL_INFO'}
    service = MANIFESTS[('Service', 'ssd-serving')]
    rest_port = next(p['port'] for p in service['spec']['ports'] if p['name'] == 'rest')
    assert settings['SSD_SERVER'] == '%s:%d' % (service['metadata']['name'], rest_port)
    assert settings['SSD_PROTOCOL'] == 'rest'
    assert settings['SSD_MODEL_NAME'] == _model_name()
    # Class names from the run folder's model_info.json, on the training volume.
    chief = MANIFESTS[('TFJob', 'ssd-train')]['spec']['tfReplicaSpecs']['Chief']['template']
    train_dir = _parse_flags('train_ssd_network', _container(chief)['args']).train_model_dir
    assert _path_on_volume(container, deployment['spec']['template']['spec'],
                           settings['SSD_MODEL_INFO']) \
        == _path_on_volume(_container(chief), chief['spec'], train_dir)
