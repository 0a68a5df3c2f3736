"""Small layers SSD needs beyond slim: L2 normalisation with learnable scale, explicit padding,
moving channels last, the box-head convolution and a dilated convolution. All accept slim
arg_scopes; the first three take `data_format` ('NHWC' or 'NCHW'), the two convolutions take it
from slim.conv2d's scope.
"""
import tensorflow.compat.v1 as tf

from utils import slim_compat

slim = slim_compat.import_slim()


def _channel_axis(data_format):
    if data_format not in ('NHWC', 'NCHW'):
        raise ValueError('data_format must be NHWC or NCHW, got %r' % (data_format,))
    return -1 if data_format == 'NHWC' else 1


@slim.add_arg_scope
def l2_normalization(inputs, scale_initializer=20., trainable=True, data_format='NHWC', scope=None):
    """Normalises each spatial position to unit L2 norm over channels, then multiplies by a learnable
    per-channel scale `gamma` (ParseNet; SSD uses it on conv4_3 with initial scale 20).

    inputs: [B, H, W, C] (NHWC) or [B, C, H, W] (NCHW); output has the same shape.
    The variable is `<scope>/gamma` (scope default 'L2Normalization', as the public checkpoints).
    """
    axis = _channel_axis(data_format)
    with tf.variable_scope(scope, 'L2Normalization', [inputs]):
        channels = inputs.get_shape().as_list()[axis]
        outputs = tf.nn.l2_normalize(inputs, axis=axis, epsilon=1e-12)
        gamma = slim.model_variable('gamma', shape=[channels], dtype=inputs.dtype.base_dtype,
                                    initializer=tf.constant_initializer(scale_initializer),
                                    trainable=trainable)
        shape = [channels] if axis == -1 else [channels, 1, 1]
        return outputs * tf.reshape(gamma, shape)


@slim.add_arg_scope
def pad2d(inputs, pad=(1, 1), data_format='NHWC', scope=None):
    """Zero-pads the spatial dimensions by `pad` = (rows, columns) on each side (before a VALID conv)."""
    spatial = [[pad[0], pad[0]], [pad[1], pad[1]]]
    if _channel_axis(data_format) == -1:
        paddings = [[0, 0]] + spatial + [[0, 0]]
    else:
        paddings = [[0, 0], [0, 0]] + spatial
    with tf.name_scope(scope, 'pad2d', [inputs]):
        return tf.pad(inputs, paddings)


@slim.add_arg_scope
def channel_to_last(inputs, data_format='NHWC', scope=None):
    """[B, C, H, W] → [B, H, W, C] when data_format is NCHW; NHWC inputs are returned unchanged."""
    if _channel_axis(data_format) == -1:
        return inputs
    with tf.name_scope(scope, 'channel_to_last', [inputs]):
        return tf.transpose(inputs, [0, 2, 3, 1])


@slim.add_arg_scope
def box_head_conv(inputs, num_outputs, weights_initializer=None, scope=None):
    """3x3 linear conv of a box head (class logits or box offsets).

    Its own arg_scope target, so that the heads can start from another initialiser than the
    layers below them: `weights_initializer` None keeps slim.conv2d's (the network's) one.
    """
    overrides = {} if weights_initializer is None else {'weights_initializer': weights_initializer}
    return slim.conv2d(inputs, num_outputs, [3, 3], activation_fn=None, scope=scope, **overrides)


def dilated_conv2d(inputs, num_outputs, kernel_size, rate, scope=None):
    """slim.conv2d with dilation `rate`, computed by Conv2D's own `dilations`.

    slim.conv2d(rate=...) wraps a VALID convolution in SpaceToBatchND/BatchToSpaceND: for SSD's
    conv6 (19x19, rate 6) a 36x larger batch of padded 6x6 tiles, 1.6x the multiply-adds and no
    bias/ReLU fusion (the whole training step about 10 % slower; bench/REPORT.md). This
    layer takes slim.conv2d's arg_scope (initialisers, regulariser, activation, padding,
    data_format, trainable) and makes the same model variables, `<scope>/weights` [kh, kw, C_in,
    num_outputs] and `<scope>/biases`, in the input's dtype as slim does: checkpoints are
    interchangeable with slim.conv2d's.
    """
    args = dict(activation_fn=tf.nn.relu, padding='SAME', data_format='NHWC',
                weights_initializer=slim.xavier_initializer(), weights_regularizer=None,
                biases_initializer=tf.zeros_initializer(), trainable=True)
    args.update(slim.current_arg_scope().get(slim.arg_scope_func_key(slim.conv2d), {}))
    data_format = args['data_format']
    dtype = inputs.dtype.base_dtype
    with tf.variable_scope(scope, 'Conv', [inputs]):
        channels = inputs.get_shape().as_list()[_channel_axis(data_format)]
        weights = slim.model_variable('weights', list(kernel_size) + [channels, num_outputs],
                                      dtype, initializer=args['weights_initializer'],
                                      regularizer=args['weights_regularizer'],
                                      trainable=args['trainable'])
        biases = slim.model_variable('biases', [num_outputs], dtype,
                                     initializer=args['biases_initializer'],
                                     trainable=args['trainable'])
        outputs = tf.nn.bias_add(
            tf.nn.conv2d(inputs, weights, strides=1, padding=args['padding'], dilations=rate,
                         data_format=data_format), biases, data_format=data_format)
        return args['activation_fn'](outputs) if args['activation_fn'] else outputs
