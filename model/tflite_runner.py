"""Runs an exported SSD ``.tflite`` detector with LiteRT (``ai-edge-litert``), no TensorFlow.

The layout ``export_tflite.py`` writes, which is also that of the Object Detection API's SSD
models and what MediaPipe's ``ObjectDetector`` reads:
- one input ``[1, height, width, 3]``: the RGB picture at the network size, float32 pixels in
  [0, 255] or uint8 (full-integer models); the model subtracts the VGG means itself;
- the four outputs of ``TFLite_Detection_PostProcess``, in the order of their tensor indices
  (the op's ports): boxes ``[1, K, 4]`` ``[ymin, xmin, ymax, xmax]`` normalised to the input,
  classes ``[1, K]`` (0 = the first real class), scores ``[1, K]``, count ``[1]``.

``TFLiteDetector.detect_array`` gives ``(boxes, scores, classes)`` as the other tools do:
boxes in pixels of the original image, clipped to it, class ids 1..num_classes-1 (background
is 0 in this toolkit, absent from the model's class outputs).

NumPy only (LiteRT is imported when a model is opened): the detector, the evaluator and the
TF-free client side share it.
"""
import os

import numpy as np

from model import model_info
from preprocessing import np_transform
from utils import boxes as boxes_lib
from utils import tf_logging
from utils.errors import ToolkitError

INPUT_TYPES = (np.float32, np.uint8)


class TFLiteModelError(ToolkitError, ValueError):
    """A ``.tflite`` file that cannot be read or is not a detector of the layout above."""


def _interpreter(path, num_threads):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise TFLiteModelError('running %s needs LiteRT: pip install ai-edge-litert' % path)
    if not os.path.isfile(path):
        raise TFLiteModelError('%s: no such file' % path)
    try:
        with tf_logging.native_stderr_held():  # LiteRT announces its XNNPACK delegate
            interpreter = Interpreter(model_path=path, num_threads=num_threads)
            interpreter.allocate_tensors()
            interpreter.invoke()  # the delegate is applied (and announced) at the first run
    except (ValueError, RuntimeError) as e:
        raise TFLiteModelError('%s is not a TFLite model LiteRT can run (%s)'
                               % (path, str(e).strip().splitlines()[0]))
    return interpreter


def check_layout(path, inputs, outputs):
    """Raises TFLiteModelError unless ``inputs``/``outputs`` (interpreter details, outputs in
    tensor-index order) are the detector layout of this module; returns ``K``."""
    def refuse(what):
        raise TFLiteModelError('%s is not an SSD detector of this toolkit\'s layout: %s'
                               % (path, what))
    if len(inputs) != 1:
        refuse('%d inputs, expected one image' % len(inputs))
    shape = list(inputs[0]['shape'])
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or inputs[0]['dtype'] not in INPUT_TYPES:
        refuse('input %s %s, expected [1, height, width, 3] float32 or uint8'
               % (shape, np.dtype(inputs[0]['dtype']).name))
    if len(outputs) != 4:
        refuse('%d outputs, expected the 4 of TFLite_Detection_PostProcess' % len(outputs))
    shapes = [list(output['shape']) for output in outputs]
    k = shapes[0][1] if len(shapes[0]) == 3 else -1
    if shapes != [[1, k, 4], [1, k], [1, k], [1]] or k < 1:
        refuse('outputs %s, expected boxes [1, K, 4], classes [1, K], scores [1, K], count [1]'
               % shapes)
    return k


def read_class_names(path):
    """Class names (id order, no background) from the ``model_info.json`` beside ``path``;
    None when there is none."""
    info_path = model_info.find_model_info(path)
    return model_info.read_model_info(info_path)['class_names'] if os.path.isfile(info_path) \
        else None


class TFLiteDetector(object):
    """One ``.tflite`` detector in a LiteRT interpreter (XNNPACK on CPU).

    ``num_threads``: CPU threads of the interpreter (None: LiteRT's default).
    """

    def __init__(self, path, num_threads=None):
        self.path = path
        self.interpreter = _interpreter(path, num_threads)
        inputs = self.interpreter.get_input_details()
        self._outputs = sorted(self.interpreter.get_output_details(), key=lambda d: d['index'])
        self.max_detections = check_layout(path, inputs, self._outputs)
        self._input = inputs[0]
        self.input_shape = tuple(int(size) for size in self._input['shape'][1:3])
        self.input_dtype = np.dtype(self._input['dtype'])
        self.class_names = read_class_names(path)

    def network_input(self, image):
        """RGB uint8 ``[H, W, 3]`` → the model input ``[1, height, width, 3]``: warp-resized
        (bilinear, as the graph's preprocessing), rounded to uint8 for a uint8 input."""
        pixels = np_transform.resize_bilinear(image, self.input_shape)
        if self.input_dtype == np.uint8:
            pixels = np.clip(np.round(pixels), 0, 255)
        return pixels.astype(self.input_dtype)[None]

    def raw_outputs(self, network_input):
        """The model on one input ``[1, height, width, 3]`` → ``(boxes [K, 4] normalised,
        classes [K] 0-based, scores [K], count)``, as the op returns them."""
        self.interpreter.set_tensor(self._input['index'], network_input)
        self.interpreter.invoke()
        boxes, classes, scores, count = [self.interpreter.get_tensor(output['index'])[0]
                                         for output in self._outputs]
        return boxes, classes, scores, int(np.reshape(count, [-1])[0])

    def detect_array(self, image):
        """RGB uint8 ``[H, W, 3]`` → ``(boxes [D, 4] pixels of image, scores [D], classes [D]
        int64)``, sorted by score."""
        boxes, classes, scores, count = self.raw_outputs(self.network_input(image))
        boxes = boxes_lib.clip_to_window(np.asarray(boxes[:count], np.float32),
                                         np.asarray(np_transform.UNIT_WINDOW, np.float32))
        return (np_transform.to_pixels(boxes, image.shape[:2]),
                np.asarray(scores[:count], np.float32),
                np.asarray(classes[:count]).astype(np.int64) + 1)
