"""Network registry: name → network class (docs/CONTRACT.md §4); new networks go in `_NETWORKS`."""
from nets.nets_model import ssd_vgg_300

_NETWORKS = {
    'ssd_vgg_300': ssd_vgg_300.SSDNet,
    'ssd_300_vgg': ssd_vgg_300.SSDNet,   # the public SSD-Tensorflow spelling
}


def get_network(name):
    """The network class registered as `name`; ValueError naming the known names otherwise."""
    if name not in _NETWORKS:
        raise ValueError('unknown network %r; known networks: %s' % (name, ', '.join(sorted(_NETWORKS))))
    return _NETWORKS[name]


def build_network(name, num_classes, width_multiplier=1.0):
    """An instance of network `name` for `num_classes` classes (background included)."""
    cls = get_network(name)
    params = cls.default_params._replace(num_classes=num_classes, no_annotation_label=num_classes)
    return cls(params, width_multiplier=width_multiplier)
