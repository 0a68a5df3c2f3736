"""serving/: the client side (clients, protocols, web page) runs without TensorFlow, and both
sides share one ServingError."""
from test.conftest import value_after_importing

CLIENT_SIDE = ('serving.client', 'serving.web', 'serving.errors', 'serving.clients.client',
               'serving.clients.protocols', 'serving.clients.web')


def test_client_side_imports_without_tensorflow():
    assert value_after_importing(CLIENT_SIDE, (
        'sorted(m for m in sys.modules if m.split(".")[0] in '
        '("tensorflow", "tf_keras", "tensorflow_serving", "tf_slim"))')) == []


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
