"""Post-processing, graph and NumPy, against a brute-force reference written out here (scalar
formulas, one anchor and one pair of boxes at a time) and hand-worked selections."""
import math

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from nets import np_postprocess, postprocess, ssd_params
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


def _pair_iou(p, q):
    h = max(0., min(p[2], q[2]) - max(p[0], q[0]))
    w = max(0., min(p[3], q[3]) - max(p[1], q[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - h * w
    return h * w / union if union > 0 else 0.


def _brute_force(predictions, localisations, select_threshold, nms_threshold, top_k, keep_top_k,
                 window):
    """Detections of ONE image, the SSD way, anchor by anchor: [(score, class, box)] sorted."""
    wy0, wx0, wy1, wx1 = [float(v) for v in window]
    boxes, scores = [], []
    for (ay, ax, ah, aw), loc, pred in zip(ANCHORS, localisations, predictions):
        for i in range(loc.shape[0]):
            for j in range(loc.shape[1]):
                for a in range(loc.shape[2]):
                    dx, dy, dw, dh = [float(v) for v in loc[i, j, a]]
                    cy = float(ay[i, j, 0]) + dy * SCALING[0] * float(ah[a])
                    cx = float(ax[i, j, 0]) + dx * SCALING[1] * float(aw[a])
                    h = float(ah[a]) * math.exp(dh * SCALING[2])
                    w = float(aw[a]) * math.exp(dw * SCALING[3])
                    y0, x0 = min(max(cy - h / 2, wy0), wy1), min(max(cx - w / 2, wx0), wx1)
                    y1, x1 = min(max(cy + h / 2, wy0), wy1), min(max(cx + w / 2, wx0), wx1)
                    boxes.append(((y0 - wy0) / (wy1 - wy0), (x0 - wx0) / (wx1 - wx0),
                                  (y1 - wy0) / (wy1 - wy0), (x1 - wx0) / (wx1 - wx0)))
                    scores.append(pred[i, j, a])
    found = []
    for cls in range(1, PARAMS.num_classes):
        ranked = sorted((-float(s[cls]), k) for k, s in enumerate(scores)
                        if s[cls] > select_threshold)
        kept = []
        for negative, k in ranked[:top_k]:
            if all(_pair_iou(boxes[k], boxes[m]) <= nms_threshold for _, m in kept):
                kept.append((negative, k))
        found += [(-negative, cls, boxes[k]) for negative, k in kept]
    return sorted(found, key=lambda d: -d[0])[:keep_top_k]


@pytest.mark.parametrize('kwargs', [
    dict(select_threshold=.5, nms_threshold=.45, top_k=400, keep_top_k=200,
         bbox_img=np.array([[0, 0, 1, 1], [.1, .05, .9, .8]], np.float32)),
    dict(select_threshold=.9, nms_threshold=.3, top_k=50, keep_top_k=30, bbox_img=None),   # padding
    dict(select_threshold=.2, nms_threshold=.6, top_k=20, keep_top_k=10, bbox_img=[.2, .2, .8, .9]),
])
def test_graph_and_numpy_agree_with_brute_force(kwargs):
    predictions, localisations = _network_like(batch=2, seed=5)
    out = _tf_detect(predictions, localisations, **kwargs)
    window = [0, 0, 1, 1] if kwargs['bbox_img'] is None else kwargs['bbox_img']
    windows = np.broadcast_to(np.reshape(window, (-1, 4)), (2, 4))
    thresholds = [kwargs[k] for k in ('select_threshold', 'nms_threshold', 'top_k', 'keep_top_k')]
    for b in range(2):
        image_predictions = [p[b] for p in predictions]
        image_localisations = [l[b] for l in localisations]
        expected = _brute_force(image_predictions, image_localisations, *thresholds, windows[b])
        count = len(expected)
        ref = np_postprocess.detect(image_predictions, image_localisations, ANCHORS, SCALING,
                                    *thresholds, windows[b])
        assert out['num_detections'][b] == ref['num_detections'] == count > 0
        for result in (ref, {key: value[b] for key, value in out.items()}):
            np.testing.assert_array_equal(result['detection_classes'][:count],
                                          [d[1] for d in expected])
            np.testing.assert_allclose(result['detection_scores'][:count],
                                       [d[0] for d in expected], atol=1e-6)
            np.testing.assert_allclose(result['detection_boxes'][:count],
                                       [d[2] for d in expected], atol=1e-5)
            assert not result['detection_boxes'][count:].any()
            assert not result['detection_classes'][count:].any()
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


def test_nms_hand_worked():
    boxes = np.array([[0, 0, 1, 1], [0, .1, 1, 1.1], [0, .6, 1, 1.6], [2, 2, 3, 3]], np.float32)
    scores = np.array([.9, .8, .7, .95], np.float32)
    # IoU(0,1) = .9/1.1 = .82 -> 1 suppressed; IoU(0,2) = .4/1.6 = .25 -> kept at threshold .45.
    assert list(np_postprocess.nms(boxes, scores, .45, 10)) == [3, 0, 2]
    assert list(np_postprocess.nms(boxes, scores, .45, 2)) == [3, 0]
    assert list(np_postprocess.nms(boxes, scores, .26, 10)) == [3, 0, 2]
    assert list(np_postprocess.nms(boxes, scores, .24, 10)) == [3, 0]
    # Only an IoU strictly above the threshold suppresses: identical boxes survive threshold 1.
    assert list(np_postprocess.nms(boxes[[0, 0]], np.array([.5, .4]), 1., 10)) == [0, 1]
    assert np_postprocess.nms(boxes[:0], scores[:0], .5, 10).shape == (0,)


def test_nms_is_greedy_a_suppressed_box_suppresses_nothing():
    # IoU(A, B) = IoU(B, C) = .7/1.3 = .54 > .45, IoU(A, C) = .25: B goes, so C stays.
    boxes = np.array([[0, 0, 1, 1], [0, .3, 1, 1.3], [0, .6, 1, 1.6]], np.float32)
    assert list(np_postprocess.nms(boxes, np.array([.9, .8, .7]), .45, 10)) == [0, 2]
    assert list(np_postprocess.nms(boxes, np.array([.8, .9, .7]), .45, 10)) == [1]
