"""SSD-VGG300 (Liu et al., 2016) in tf-slim, with the public SSD-Tensorflow variable names.

Backbone VGG-16 conv1..conv5 (pool5 3x3 stride 1), dilated conv6 (3x3, rate 6) and conv7 (1x1),
extra blocks 8-11 (1x1 then 3x3; blocks 8-9 pad 1 and stride 2, blocks 10-11 VALID), and a box
head (`<layer>_box/conv_loc`, `<layer>_box/conv_cls`, 3x3) on block4 (after L2 normalisation),
block7, block8, block9, block10 and block11: 38, 19, 10, 5, 3, 1 cells for a 300x300 input.
`width_multiplier` scales every backbone/extra conv's channels (at least 8); heads keep their
A*4 / A*C outputs, so layers and anchors are the same at any width.
"""
import tensorflow.compat.v1 as tf

from nets import anchors as anchors_lib
from nets import box_coding
from nets import custom_layers
from nets import matching
from nets import postprocess
from nets import ssd_losses
from nets import ssd_params
from nets.ssd_params import SSDParams  # noqa: F401  (docs/CONTRACT.md §4 names it here)
from utils import slim_compat
from utils.ssd_defaults import KEEP_TOP_K, MATCH_THRESHOLD, NMS_THRESHOLD, TOP_K

slim = slim_compat.import_slim()

MIN_CHANNELS = 8
SCOPE = ssd_params.SSD300_SCOPE


class SSDNet(object):
    """SSD-VGG300: network, anchors, target encoding, losses and post-processing for `params`."""

    default_params = ssd_params.SSD300_PARAMS

    def __init__(self, params=None, width_multiplier=1.0):
        if width_multiplier <= 0:
            raise ValueError('width_multiplier must be > 0, got %r' % (width_multiplier,))
        self.params = params if params is not None else self.default_params
        self.width_multiplier = float(width_multiplier)

    def _width(self, channels):
        return max(MIN_CHANNELS, int(round(channels * self.width_multiplier)))

    # ---- network -------------------------------------------------------------------------
    def net(self, inputs, is_training=True, reuse=None, scope=SCOPE):
        """Builds the network.

        inputs: float32 [B, 300, 300, 3] (VGG-mean-subtracted RGB) in the data_format of the
        enclosing `arg_scope` ([B, 3, 300, 300] for NCHW). `is_training` is accepted for the
        common slim signature (SSD300 has no dropout or batch norm).
        Returns (predictions, localisations, logits, end_points): per feature layer
        [B, H, W, A, C] softmax, [B, H, W, A, 4] offsets, [B, H, W, A, C] logits (always
        channels-last), and a dict of the backbone end points ('block1'..'block11').
        """
        del is_training
        width = self._width
        end_points = {}
        with tf.variable_scope(scope, SCOPE, [inputs], reuse=reuse):
            net = inputs
            vgg_blocks = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))   # (convs, channels)
            for block, (repeats, channels) in enumerate(vgg_blocks, 1):
                net = slim.repeat(net, repeats, slim.conv2d, width(channels), [3, 3], scope='conv%d' % block)
                end_points['block%d' % block] = net
                if block < 5:
                    net = slim.max_pool2d(net, [2, 2], scope='pool%d' % block)
            net = slim.max_pool2d(net, [3, 3], stride=1, scope='pool5')
            net = custom_layers.dilated_conv2d(net, width(1024), [3, 3], rate=6, scope='conv6')
            end_points['block6'] = net
            net = slim.conv2d(net, width(1024), [1, 1], scope='conv7')
            end_points['block7'] = net
            for block, (squeeze, channels, stride) in zip(
                    range(8, 12), ((256, 512, 2), (128, 256, 2), (128, 256, 1), (128, 256, 1))):
                with tf.variable_scope('block%d' % block):
                    net = slim.conv2d(net, width(squeeze), [1, 1], scope='conv1x1')
                    if stride == 2:
                        net = custom_layers.pad2d(net, pad=(1, 1))
                    net = slim.conv2d(net, width(channels), [3, 3], stride=stride, padding='VALID',
                                      scope='conv3x3')
                end_points['block%d' % block] = net

            predictions, localisations, logits = [], [], []
            for i, layer in enumerate(self.params.feat_layers):
                with tf.variable_scope(layer + '_box'):
                    cls, loc = self._box_head(end_points[layer], i)
                predictions.append(tf.nn.softmax(cls))
                logits.append(cls)
                localisations.append(loc)
            return predictions, localisations, logits, end_points

    def _box_head(self, features, layer_index):
        """Class logits [B, H, W, A, C] and offsets [B, H, W, A, 4] of one feature layer."""
        params = self.params
        if params.normalizations[layer_index] > 0:
            features = custom_layers.l2_normalization(
                features, scale_initializer=float(params.normalizations[layer_index]))
        num_anchors = ssd_params.num_anchors_per_cell(params, layer_index)
        loc = custom_layers.box_head_conv(features, num_anchors * 4, scope='conv_loc')
        cls = custom_layers.box_head_conv(features, num_anchors * params.num_classes,
                                          scope='conv_cls')
        loc, cls = custom_layers.channel_to_last(loc), custom_layers.channel_to_last(cls)
        cells = loc.get_shape().as_list()[1:3]   # static for a fixed-size input; batch stays dynamic
        if tuple(cells) != tuple(params.feat_shapes[layer_index]):
            raise ValueError('feature layer %s is %s cells but the anchors expect %s: the input must be '
                             '%dx%d' % (params.feat_layers[layer_index], cells,
                                        list(params.feat_shapes[layer_index]), *params.img_shape))
        loc = tf.reshape(loc, [-1] + cells + [num_anchors, 4])
        cls = tf.reshape(cls, [-1] + cells + [num_anchors, params.num_classes])
        return cls, loc

    @staticmethod
    def arg_scope(weight_decay=0.0005, data_format='NHWC'):
        """slim arg_scope: ReLU convs, SAME padding, Xavier weights, L2 weight decay, `data_format`
        ('NHWC' on CPU, 'NCHW' allowed on GPU) for convs, pooling and the custom layers."""
        with slim.arg_scope([slim.conv2d], activation_fn=tf.nn.relu,
                            weights_regularizer=slim.l2_regularizer(weight_decay),
                            weights_initializer=slim.xavier_initializer(),
                            biases_initializer=tf.zeros_initializer()):
            with slim.arg_scope([slim.conv2d, slim.max_pool2d], padding='SAME', data_format=data_format):
                with slim.arg_scope([custom_layers.pad2d, custom_layers.l2_normalization,
                                     custom_layers.channel_to_last], data_format=data_format) as scope:
                    return scope

    # ---- anchors, targets, losses, detections ------------------------------------------------
    def anchors(self, img_shape=None):
        """Per layer (y [H, W, 1], x [H, W, 1], h [A], w [A]) NumPy float32, normalised."""
        return anchors_lib.anchors_all_layers(self.params, img_shape)

    def bboxes_encode(self, labels, bboxes, anchors, match_threshold=MATCH_THRESHOLD, scope=None):
        """Targets of ONE image: see nets.matching.bboxes_encode (gclasses, glocalisations, gscores)."""
        return matching.bboxes_encode(labels, bboxes, anchors, self.params.prior_scaling,
                                      match_threshold, scope or 'ssd_bboxes_encode')

    def bboxes_decode(self, localisations, anchors, scope='ssd_bboxes_decode'):
        """Per-layer offsets [..., H, W, A, 4] → corner boxes, normalised."""
        return box_coding.decode_all(localisations, anchors, self.params.prior_scaling, scope)

    def detected_bboxes(self, predictions, localisations, select_threshold=0.01,
                        nms_threshold=NMS_THRESHOLD, top_k=TOP_K, keep_top_k=KEEP_TOP_K,
                        bbox_img=None):
        """Padded, sorted detections of a batch: see nets.postprocess.detected_bboxes."""
        return postprocess.detected_bboxes(predictions, localisations, self.anchors(),
                                           self.params.prior_scaling, select_threshold, nms_threshold,
                                           top_k, keep_top_k, bbox_img)

    def losses(self, logits, localisations, gclasses, glocalisations, gscores,
               match_threshold=MATCH_THRESHOLD, negative_ratio=3., alpha=1., label_smoothing=0.,
               class_weights=None, scope=None):
        """Adds the SSD losses to tf.losses and returns the total: see nets.ssd_losses.ssd_losses."""
        return ssd_losses.ssd_losses(logits, localisations, gclasses, glocalisations, gscores,
                                     match_threshold, negative_ratio, alpha, label_smoothing,
                                     class_weights, scope)
