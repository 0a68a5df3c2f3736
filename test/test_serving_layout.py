"""serving/: both sides share one ServingError (the layering test keeps TensorFlow off the client
side)."""


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
