"""SSD hyper-parameters as a plain namedtuple (no TensorFlow, so clients can import it).

All sizes are in pixels of the network input (`img_shape`), all anchor offsets are in cells.
"""
import collections

SSDParams = collections.namedtuple('SSDParams', [
    'img_shape',           # (height, width) of the network input, pixels.
    'num_classes',         # Number of classes including background (id 0).
    'no_annotation_label', # Label id used for "no annotation" (= num_classes).
    'feat_layers',         # End-point names of the feature layers carrying a box head.
    'feat_shapes',         # (H_i, W_i) of each feature layer for `img_shape`.
    'anchor_size_bounds',  # [min, max] anchor scale as a fraction of the image (documentation of the sizes).
    'anchor_sizes',        # Per layer (s_k, s_k+1) pixels: squares of side s_k and sqrt(s_k * s_k+1).
    'anchor_ratios',       # Per layer the extra aspect ratios (w/h) of anchors of size s_k.
    'anchor_steps',        # Per layer the distance between anchor centres, pixels.
    'anchor_offset',       # Centre of cell (i, j) is at ((i + offset) * step, (j + offset) * step).
    'normalizations',      # Per layer: > 0 applies L2 normalisation with this initial scale, -1 none.
    'prior_scaling',       # (y, x, h, w) variances dividing the encoded offsets.
])

# Scope of every SSD-VGG300 variable, as SSD-Tensorflow checkpoints name it (docs/CONTRACT.md §4).
SSD300_SCOPE = 'ssd_300_vgg'

SSD300_PARAMS = SSDParams(
    img_shape=(300, 300),
    num_classes=21,
    no_annotation_label=21,
    feat_layers=('block4', 'block7', 'block8', 'block9', 'block10', 'block11'),
    feat_shapes=((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)),
    anchor_size_bounds=(0.15, 0.90),
    anchor_sizes=((21., 45.), (45., 99.), (99., 153.), (153., 207.), (207., 261.), (261., 315.)),
    anchor_ratios=((2, .5), (2, .5, 3, 1. / 3), (2, .5, 3, 1. / 3), (2, .5, 3, 1. / 3), (2, .5), (2, .5)),
    anchor_steps=(8, 16, 32, 64, 100, 300),
    anchor_offset=0.5,
    normalizations=(20, -1, -1, -1, -1, -1),
    prior_scaling=(0.1, 0.1, 0.2, 0.2),
)


def num_anchors_per_cell(params, layer_index):
    """Anchors per cell of feature layer `layer_index`: the two square sizes plus one per extra ratio."""
    return len(params.anchor_sizes[layer_index]) + len(params.anchor_ratios[layer_index])
