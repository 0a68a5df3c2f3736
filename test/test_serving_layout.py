"""serving/: the client side (clients, protocols, web page) runs without TensorFlow, and both
sides share one ServingError."""
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT_SIDE = ('serving.client', 'serving.web', 'serving.errors', 'serving.clients.client',
               'serving.clients.protocols', 'serving.clients.web')


def test_client_side_imports_without_tensorflow():
    code = ('import importlib, sys\n'
            'for name in sys.argv[1:]: importlib.import_module(name)\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] in '
            '("tensorflow", "tf_keras", "tensorflow_serving", "tf_slim")))')
    result = subprocess.run([sys.executable, '-c', code] + list(CLIENT_SIDE), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'


def test_one_serving_error_for_both_sides():
    from serving import errors
    from serving.clients import protocols
    from serving.server import grpc_service, rest_api, servable, version_manager
    from utils.errors import ToolkitError
    for module in (protocols, servable, grpc_service, rest_api, version_manager):
        assert module.ServingError is errors.ServingError, module.__name__
    assert issubclass(errors.ServingError, ToolkitError)
    error = errors.ServingError('no such model', 'NOT_FOUND')
    assert (str(error), error.message, error.code) == ('no such model', 'no such model',
                                                       'NOT_FOUND')
