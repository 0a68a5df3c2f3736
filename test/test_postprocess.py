"""Post-processing: the TF graph version agrees with the NumPy one; hand-worked selections."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import np_box_ops, np_postprocess, postprocess, ssd_params
from nets import anchors as anchors_lib

tf.disable_eager_execution()

PARAMS = ssd_params.SSD300_PARAMS._replace(num_classes=4, no_annotation_label=4)
ANCHORS = anchors_lib.anchors_all_layers(PARAMS)
SCALING = PARAMS.prior_scaling


def _network_like(batch, seed, sharpness=3.):
    """Random softmax outputs and offsets shaped like SSD300's six layers."""
    rng = np.random.RandomState(seed)
    predictions, localisations = [], []
    for i, (h, w) in enumerate(PARAMS.feat_shapes):
        a = ssd_params.num_anchors_per_cell(PARAMS, i)
        logits = rng.randn(batch, h, w, a, PARAMS.num_classes) * sharpness
        e = np.exp(logits - logits.max(-1, keepdims=True))
        predictions.append((e / e.sum(-1, keepdims=True)).astype(np.float32))
        localisations.append((rng.randn(batch, h, w, a, 4) * .5).astype(np.float32))
    return predictions, localisations


def _tf_detect(predictions, localisations, **kwargs):
    with tf.Graph().as_default():
        out = postprocess.detected_bboxes([tf.constant(p) for p in predictions],
                                          [tf.constant(l) for l in localisations], ANCHORS, SCALING, **kwargs)
        with tf.Session() as sess:
            return sess.run(out)


@pytest.mark.parametrize('kwargs', [
    dict(select_threshold=.5, nms_threshold=.45, top_k=400, keep_top_k=200,
         bbox_img=np.array([[0, 0, 1, 1], [.1, .05, .9, .8]], np.float32)),
    dict(select_threshold=.9, nms_threshold=.3, top_k=50, keep_top_k=30, bbox_img=None),   # padding
    dict(select_threshold=.2, nms_threshold=.6, top_k=20, keep_top_k=10, bbox_img=[.2, .2, .8, .9]),
])
def test_tf_graph_agrees_with_numpy(kwargs):
    predictions, localisations = _network_like(batch=2, seed=5)
    out = _tf_detect(predictions, localisations, **kwargs)
    window = [0, 0, 1, 1] if kwargs['bbox_img'] is None else kwargs['bbox_img']
    windows = np.broadcast_to(np.reshape(window, (-1, 4)), (2, 4))
    for b in range(2):
        ref = np_postprocess.detect([p[b] for p in predictions], [l[b] for l in localisations], ANCHORS,
                                    SCALING, kwargs['select_threshold'], kwargs['nms_threshold'],
                                    kwargs['top_k'], kwargs['keep_top_k'], windows[b])
        count = ref['num_detections']
        assert out['num_detections'][b] == count > 0
        np.testing.assert_array_equal(out['detection_classes'][b], ref['detection_classes'])
        np.testing.assert_allclose(out['detection_scores'][b], ref['detection_scores'], atol=1e-6)
        np.testing.assert_allclose(out['detection_boxes'][b], ref['detection_boxes'], atol=1e-5)
        assert np.all(np.diff(ref['detection_scores'][:count]) <= 0)
        assert np.all(ref['detection_scores'][:count] > kwargs['select_threshold'])
        assert not ref['detection_boxes'][count:].any() and not ref['detection_classes'][count:].any()
        boxes = ref['detection_boxes'][:count]
        assert boxes.min() >= -1e-6 and boxes.max() <= 1 + 1e-6
        for cls in np.unique(ref['detection_classes'][:count]):      # NMS held within each class
            same = boxes[ref['detection_classes'][:count] == cls]
            overlaps = np_box_ops.iou(same, same) - np.eye(len(same))
            assert overlaps.max() <= kwargs['nms_threshold'] + 1e-6
    assert out['detection_classes'].dtype == np.int64 and out['num_detections'].dtype == np.int32
    assert out['detection_boxes'].shape == (2, kwargs['keep_top_k'], 4)


def _hand_outputs():
    """All-background outputs except three anchors of block11 (one cell, centre (.5, .5)).

    block11's anchors are: 0 square 261 px, 1 square 286.7 px, 2 ratio 2, 3 ratio 1/2.
    Anchor 0 class 2 score .9 and anchor 1 class 2 score .8 overlap (IoU (261/286.7)^2 = .83):
    NMS keeps anchor 0. Anchor 3 class 3 score .7 survives (other class). Zero offsets.
    """
    predictions, localisations = [], []
    for i, (h, w) in enumerate(PARAMS.feat_shapes):
        a = ssd_params.num_anchors_per_cell(PARAMS, i)
        p = np.zeros((1, h, w, a, PARAMS.num_classes), np.float32)
        p[..., 0] = 1.
        predictions.append(p)
        localisations.append(np.zeros((1, h, w, a, 4), np.float32))
    last = predictions[-1][0, 0, 0]
    last[0] = [.1, 0, .9, 0]
    last[1] = [.2, 0, .8, 0]
    last[3] = [.3, 0, 0, .7]
    return predictions, localisations


def test_hand_worked_selection_nms_and_clipping():
    predictions, localisations = _hand_outputs()
    out = _tf_detect(predictions, localisations, select_threshold=.5, keep_top_k=5)
    assert out['num_detections'][0] == 2
    np.testing.assert_array_equal(out['detection_classes'][0], [2, 3, 0, 0, 0])
    np.testing.assert_allclose(out['detection_scores'][0], [.9, .7, 0, 0, 0], atol=1e-6)
    # Anchor 0: 261 px square centred at 150 px -> [19.5, 19.5, 280.5, 280.5] / 300.
    # Anchor 3: h = 261*sqrt2 = 369.1 px (clipped to [0, 1]), w = 261/sqrt2 = 184.6 px.
    half_w = 261 / np.sqrt(2) / 2 / 300
    np.testing.assert_allclose(out['detection_boxes'][0, :2],
                               [[19.5 / 300, 19.5 / 300, 280.5 / 300, 280.5 / 300],
                                [0., .5 - half_w, 1., .5 + half_w]], atol=1e-5)
    # Within a window [.25, .25, .75, .75] the clipped box fills the window: [0, 0, 1, 1].
    windowed = _tf_detect(predictions, localisations, select_threshold=.5, keep_top_k=5,
                          bbox_img=[.25, .25, .75, .75])
    np.testing.assert_allclose(windowed['detection_boxes'][0, 0], [0, 0, 1, 1], atol=1e-6)
    ref = np_postprocess.detect([p[0] for p in predictions], localisations, ANCHORS, SCALING,
                                select_threshold=.5, keep_top_k=5)
    np.testing.assert_allclose(ref['detection_boxes'], out['detection_boxes'][0], atol=1e-6)


def test_nothing_above_threshold_gives_empty_padded_output():
    predictions, localisations = _hand_outputs()
    out = _tf_detect(predictions, localisations, select_threshold=.95, keep_top_k=4)
    assert out['num_detections'][0] == 0
    assert not out['detection_boxes'].any() and not out['detection_classes'].any()
    ref = np_postprocess.detect(predictions, localisations, ANCHORS, SCALING, select_threshold=.95,
                                keep_top_k=4)
    assert ref['num_detections'] == 0 and ref['detection_boxes'].shape == (4, 4)


def test_graph_uses_only_standard_ops():
    with tf.Graph().as_default() as graph:
        predictions, localisations = _network_like(batch=1, seed=0)
        batch_free = lambda arrays: [tf.placeholder(tf.float32, (None,) + a.shape[1:]) for a in arrays]
        postprocess.detected_bboxes(batch_free(predictions), batch_free(localisations), ANCHORS, SCALING)
        types = {op.type for op in graph.get_operations()}
    assert not types & {'PyFunc', 'EagerPyFunc', 'PyFuncStateless'}
    assert 'CombinedNonMaxSuppression' in types
