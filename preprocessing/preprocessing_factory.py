"""Pre-processing lookup by network name: ``get_preprocessing(name, is_training)``."""
from preprocessing.processing import ssd_vgg_preprocessing

_PREPROCESSING_MODULES = {
    'ssd_vgg_300': ssd_vgg_preprocessing,
    'ssd_300_vgg': ssd_vgg_preprocessing,
}


def get_preprocessing(name, is_training=False):
    """Returns ``preprocess_image(image, labels, bboxes, out_shape, data_format, is_training, **kwargs)``
    of network ``name`` with ``is_training`` as its default (docs/CONTRACT.md §5).

    Raises ValueError naming the known networks when ``name`` is unknown.
    """
    if name not in _PREPROCESSING_MODULES:
        raise ValueError('unknown preprocessing name %r; known names: %s'
                         % (name, ', '.join(sorted(_PREPROCESSING_MODULES))))
    module = _PREPROCESSING_MODULES[name]

    def preprocessing_fn(image, labels, bboxes, out_shape=module.OUT_SHAPE, data_format='NHWC',
                         is_training=is_training, **kwargs):
        return module.preprocess_image(image, labels, bboxes, out_shape, data_format,
                                       is_training=is_training, **kwargs)
    return preprocessing_fn
