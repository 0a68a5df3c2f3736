"""What one request may cost the model server, bounded before TensorFlow sees it (stdlib only).

``RequestLimits`` fields are named after their ``serving.model_server`` flags; a request over
one is refused with INVALID_ARGUMENT (REST 400) naming the limit and its flag.
"""
import collections

from utils import image_header

RequestLimits = collections.namedtuple('RequestLimits',
                                       'max_image_pixels max_batch_rows max_tensor_elements')
RequestLimits.__doc__ = """``max_image_pixels`` per encoded image (read from its header),
``max_batch_rows`` along the batch axis (the first axis of an input the signature declares with
a variable first size, e.g. the images of serving_default), ``max_tensor_elements`` per input
tensor (as its shape declares them)."""

# 2**24 elements: the float32 values a request of serving.defaults.MAX_MESSAGE_BYTES can carry.
DEFAULT_LIMITS = RequestLimits(max_image_pixels=image_header.DEFAULT_MAX_IMAGE_PIXELS,
                               max_batch_rows=64, max_tensor_elements=2 ** 24)
