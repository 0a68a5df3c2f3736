"""TF Serving's REST JSON conventions in serving/server/rest_api.py, on hand-written values (no server)."""
import grpc
import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving.server import rest_api
from serving.errors import ServingError


def _info(dtype, dims):
    info = meta_graph_pb2.TensorInfo(dtype=dtype.as_datatype_enum)
    for size in dims:
        info.tensor_shape.dim.add(size=size)
    return info


def _signature(**inputs):
    sig = meta_graph_pb2.SignatureDef()
    for alias, (dtype, dims) in inputs.items():
        sig.inputs[alias].CopyFrom(_info(dtype, dims))
    return sig


def test_numbers_take_the_input_dtype():
    array = rest_api.json_to_ndarray('x', [[1, 2.5], [3, 4]], _info(tf.float32, [-1, 2]))
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, [[1., 2.5], [3., 4.]])
    ints = rest_api.json_to_ndarray('n', [7, 8], _info(tf.int64, [-1]))
    assert ints.dtype == np.int64 and ints.tolist() == [7, 8]


@pytest.mark.parametrize('value, dtype, fragment', [
    ([1.5, 2], tf.int32, 'expected dtype int32, got JSON values of type float'),
    ([True, False], tf.float32, 'got JSON values of type bool'),
    ([1, None], tf.float32, 'got JSON values of type mixed or null'),
    ([[1], [2, 3]], tf.float32, 'not a rectangular array'),
    ([['a'], ['b', 'c']], tf.string, 'not a rectangular array'),
    ([1, 2], tf.string, "expected strings or {\"b64\": ...}, got int"),
])
def test_wrong_json_values_name_the_input(value, dtype, fragment):
    with pytest.raises(ServingError) as raised:
        rest_api.json_to_ndarray('x', value, _info(dtype, [-1]))
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.message.startswith("input 'x'")
    assert fragment in raised.value.message


def test_strings_accept_text_and_b64():
    array = rest_api.json_to_ndarray('s', [['hé', {'b64': 'AAH/'}]], _info(tf.string, [-1, 2]))
    assert array.dtype == object and array.shape == (1, 2)
    assert array.tolist() == [['hé'.encode('utf-8'), b'\x00\x01\xff']]


def test_row_format_stacks_rows_and_columnar_takes_names():
    sig = _signature(a=(tf.float32, [-1, 2]), b=(tf.int64, [-1]))
    inputs, row_format = rest_api.request_inputs(
        {'instances': [{'a': [1, 2], 'b': 5}, {'a': [3, 4], 'b': 6}]}, 'sig', sig)
    assert row_format
    np.testing.assert_array_equal(inputs['a'], [[1, 2], [3, 4]])
    assert inputs['b'].tolist() == [5, 6]
    inputs, row_format = rest_api.request_inputs(
        {'inputs': {'a': [[1, 2]], 'b': [5]}}, 'sig', sig)
    assert not row_format and inputs['a'].shape == (1, 2)


def test_bare_values_need_a_single_input_signature():
    single = _signature(s=(tf.string, [-1]))
    inputs, _ = rest_api.request_inputs({'instances': [{'b64': 'AA=='}, 'x']}, 'sig', single)
    assert inputs['s'].tolist() == [b'\x00', b'x']
    with pytest.raises(ServingError, match="'inputs' must name the inputs"):
        rest_api.request_inputs({'inputs': [1]}, 'sig', _signature(
            a=(tf.float32, [-1]), b=(tf.float32, [-1])))
    with pytest.raises(ServingError, match='same inputs'):
        rest_api.request_inputs({'instances': [{'s': 'x'}, {'t': 'y'}]}, 'sig', single)


def test_response_layouts():
    outputs = {'boxes': np.arange(8, dtype=np.float32).reshape(2, 1, 4),
               'count': np.array([1, 0], np.int32)}
    rows = rest_api.response_body(outputs, row_format=True)
    assert rows == {'predictions': [{'boxes': [[0., 1., 2., 3.]], 'count': 1},
                                    {'boxes': [[4., 5., 6., 7.]], 'count': 0}]}
    assert rest_api.response_body({'count': outputs['count']}, True) == {'predictions': [1, 0]}
    assert rest_api.response_body({'count': outputs['count']}, False) == {'outputs': [1, 0]}
    columns = rest_api.response_body(outputs, row_format=False)
    assert columns == {'outputs': {'boxes': [[[0., 1., 2., 3.]], [[4., 5., 6., 7.]]],
                                   'count': [1, 0]}}
    with pytest.raises(ServingError, match='no common batch dimension'):
        rest_api.response_body({'a': np.zeros(2), 'b': np.zeros(3)}, row_format=True)


def test_string_outputs_decode_text_and_b64_for_bytes_aliases():
    names = np.array([b'car', b'bus'], dtype=object)
    assert rest_api.response_body({'label': names}, False) == {'outputs': ['car', 'bus']}
    assert rest_api.response_body({'raw_bytes': names}, False) == {
        'outputs': [{'b64': 'Y2Fy'}, {'b64': 'YnVz'}]}
