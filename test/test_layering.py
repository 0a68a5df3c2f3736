"""The import rules of ARCHITECTURE.md, read from the source (every import, a function's lazy
ones included), and the client side's freedom from TensorFlow, checked in a fresh interpreter.

Every module belongs to a room; a room imports only the rooms ``MAY_IMPORT`` lists for it:
- the layers utils < datasets, nets, preprocessing, deployment < model < training: a package
  imports the layers below it and itself, never a package of its own layer;
- the command-line tools (``TOOLS``) import the layers, never each other nor serving/;
- serving/server/ (and ``serving.model_server``) imports model/ and below and serving's shared
  modules (errors, defaults), which import utils/ only;
- serving/clients/ (and ``serving.client``, ``serving.web``) imports serving's shared modules
  and, of the layers, only modules that load no TensorFlow; never serving/server/;
- ``batch_detect`` (Beam) imports the layers and, as a client of an export, serving's shared
  modules and serving/clients/;
- bench/ and scripts/ import anything but each other.
``NO_TENSORFLOW`` modules (what the clients may reach, and the PyTorch benchmark) import only
each other.
"""
import ast
import os

import pytest

from test.conftest import value_after_importing

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED_DIRS = {'.venv', '.git', 'test', '__pycache__', 'Images', 'ckpt', 'docs', 'output'}
LAYERS = {'utils': 0, 'datasets': 1, 'nets': 1, 'preprocessing': 1, 'deployment': 1,
          'model': 2, 'training': 3}
TOOLS = {'train_ssd_network', 'eval_ssd_network', 'detector', 'export_saved_model',
         'export_tflite', 'audit_labels'}
SERVING_ROOMS = {'serving', 'serving.server', 'serving.clients'}


def _below(layer):
    return {package for package, level in LAYERS.items() if level < layer}


MAY_IMPORT = {package: _below(level) | {package} for package, level in LAYERS.items()}
MAY_IMPORT.update({
    'tools': set(LAYERS),
    'serving': {'utils', 'serving'},
    'serving.server': _below(LAYERS['training']) | {'serving', 'serving.server'},
    'serving.clients': _below(LAYERS['training']) | {'serving', 'serving.clients'},
    'bench': set(LAYERS) | {'tools', 'bench'} | SERVING_ROOMS,
    'scripts': set(LAYERS) | {'tools', 'scripts'} | SERVING_ROOMS,
    # Batch detection runs an export as its clients do (their upright bytes), inside Beam.
    'batch_detect': set(LAYERS) | {'serving', 'serving.clients'},
    'conftest': set(),
})
TENSORFLOW_PACKAGES = ('tensorflow', 'tf_keras', 'tensorflow_serving', 'tf_slim')


def room(module):
    """The room of a module name (see the module docstring)."""
    top = module.split('.')[0]
    if module in TOOLS:
        return 'tools'
    if module.startswith('serving.server') or module == 'serving.model_server':
        return 'serving.server'
    if module.startswith('serving.clients') or module in ('serving.client', 'serving.web'):
        return 'serving.clients'
    return top


def _python_files():
    for folder, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith('.')]
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                yield os.path.relpath(path, REPO_ROOT).replace(os.sep, '/')


def _module_name(relpath):
    name = relpath[:-3].replace('/', '.')
    return name[:-len('.__init__')] if name.endswith('.__init__') else name


MODULES = {_module_name(path): path for path in _python_files()}
NO_TENSORFLOW = sorted(
    [m for m in MODULES if room(m) in ('utils', 'serving', 'serving.clients')
     and m != 'utils.slim_compat'] +
    ['datasets', 'datasets.dataset_config', 'datasets.dataset_factory', 'datasets.read_dataset',
     'datasets.read_dataset.pascalvoc2007', 'datasets.read_dataset.vehicle', 'datasets.records',
     'datasets.utils', 'datasets.utils.dataset_utils', 'model', 'model.model_info',
     'model.tflite_runner',
     'model.versions', 'nets', 'nets.anchors', 'nets.np_postprocess', 'nets.ssd_params',
     'preprocessing', 'preprocessing.np_transform'] +
    # The PyTorch yardstick runs where TensorFlow need not be installed.
    ['bench', 'bench.bench_pytorch', 'bench.common'])


def _imports(relpath):
    """The repository modules ``relpath`` imports anywhere (``from a import b`` gives a and a.b
    when they are modules)."""
    with open(os.path.join(REPO_ROOT, relpath)) as f:
        tree = ast.parse(f.read(), relpath)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update('%s.%s' % (node.module, alias.name) for alias in node.names)
    return {name for name in names if name in MODULES}


def breaches(imports):
    """``'a imports b'`` for every import that breaks a rule; ``imports``: {module: names of
    repository modules it imports}."""
    found = []
    for module, names in sorted(imports.items()):
        allowed = MAY_IMPORT[room(module)]
        for name in sorted(names):
            if room(name) not in allowed:
                found.append('%s imports %s' % (module, name))
            elif module in NO_TENSORFLOW and name not in NO_TENSORFLOW:
                found.append('%s imports %s (TensorFlow on the client side)' % (module, name))
    return found


def test_every_module_imports_only_what_its_room_may():
    assert breaches({module: _imports(path) for module, path in MODULES.items()}) == []


@pytest.mark.parametrize('module, name', [
    ('utils.boxes', 'model.inference'),                    # a layer reaching up
    ('nets.anchors', 'preprocessing.transform'),           # a peer of the same layer
    ('export_saved_model', 'serving.server.limits'),       # a tool reaching into the server
    ('detector', 'export_saved_model'),                    # a tool importing another
    ('serving.server.servable', 'training.graph'),         # the server above model/
    ('serving.clients.web', 'serving.server.limits'),      # the client side into the server
    ('serving.clients.client', 'nets.postprocess'),        # the client side into TensorFlow
    ('serving.errors', 'serving.clients.protocols'),       # shared serving code reaching up
    ('bench.common', 'scripts.demo'),
])
def test_the_rules_refuse_a_breach(module, name):
    assert breaches({module: {name}}) != []


def test_every_module_has_a_room_and_the_rules_see_the_tree():
    assert {room(m) for m in MODULES} <= set(MAY_IMPORT)
    assert TOOLS <= set(MODULES) and set(NO_TENSORFLOW) <= set(MODULES)
    assert {m for m in MODULES if room(m) == 'serving.clients'} >= {
        'serving.client', 'serving.web', 'serving.clients.client', 'serving.clients.protocols',
        'serving.clients.web'}


def test_the_client_side_imports_without_tensorflow():
    """Every NO_TENSORFLOW module imported at once in a fresh interpreter: none of TensorFlow's
    packages is loaded (a third-party import that pulls it in is caught here too)."""
    assert value_after_importing(NO_TENSORFLOW, (
        'sorted(m for m in sys.modules if m.split(".")[0] in %r)'
        % (TENSORFLOW_PACKAGES,))) == []
