"""The import rule of ARCHITECTURE.md: a package imports only from layers below it (and itself).

    utils  <  datasets, nets, preprocessing, deployment  <  model  <  training  <  the rest

Packages of one layer do not import each other; importing the serving client side (clients,
protocols, web page) never loads TensorFlow or the server side, even through the modules it
imports (test_serving_layout.py checks the same at run time).
"""
import ast
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {'utils': 0, 'datasets': 1, 'nets': 1, 'preprocessing': 1, 'deployment': 1,
          'model': 2, 'training': 3}
TOP = 4        # serving/, bench/, scripts/ and the command-line scripts at the root
SKIPPED_DIRS = {'.venv', '.git', 'test', '__pycache__', 'Images', 'ckpt', 'docs', 'output'}


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


def _walk(node, into_functions):
    for child in ast.iter_child_nodes(node):
        if into_functions or not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield child
            yield from _walk(child, into_functions)


def _imports(relpath, into_functions=True):
    """Every absolute module name ``relpath`` imports (``from a import b`` gives a and a.b);
    with ``into_functions=False`` only those its import runs (not a function's lazy imports)."""
    with open(os.path.join(REPO_ROOT, relpath)) as f:
        tree = ast.parse(f.read(), relpath)
    names = set()
    for node in _walk(tree, into_functions):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update('%s.%s' % (node.module, alias.name) for alias in node.names)
    return names


MODULES = {_module_name(path): path for path in _python_files()}


def _layer(module):
    return LAYERS.get(module.split('.')[0], TOP)


def _ours(name):
    return name.split('.')[0] in {m.split('.')[0] for m in MODULES}


def test_every_package_imports_only_from_lower_layers_or_itself():
    breaches = []
    for module, path in sorted(MODULES.items()):
        package = module.split('.')[0]
        for name in sorted(_imports(path)):
            if not _ours(name) or name.split('.')[0] == package or name not in MODULES:
                continue
            if _layer(name) >= _layer(module) and _layer(module) < TOP:
                breaches.append('%s imports %s' % (path, name))
    assert breaches == []


def _closure(module):
    """The repository modules that importing ``module`` imports, and the outside packages (a
    function's own imports, such as the gRPC client's, load only when it is called)."""
    seen, outside, todo = set(), set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in _imports(MODULES[current], into_functions=False):
            if name in MODULES:
                todo.append(name)
            elif not _ours(name):
                outside.add(name.split('.')[0])
    return seen, outside


CLIENT_SIDE = sorted(m for m in MODULES if m.startswith('serving.clients'))


@pytest.mark.parametrize('module', CLIENT_SIDE)
def test_the_serving_client_side_needs_neither_tensorflow_nor_the_server(module):
    reached, outside = _closure(module)
    assert 'tensorflow' not in outside and 'tensorflow_serving' not in outside
    assert not [m for m in reached if m.startswith('serving.server')]


def test_the_rule_sees_the_layers():
    """Guards the test itself: it must find the packages it rules over, and a client side."""
    assert {m.split('.')[0] for m in MODULES} >= set(LAYERS) | {'serving', 'bench'}
    assert CLIENT_SIDE
