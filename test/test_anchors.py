"""SSD300 anchors against values worked out by hand from the SSD300 parameters."""
import numpy as np
import pytest

from nets import anchors, ssd_params

P = ssd_params.SSD300_PARAMS

# Per layer, in pixels of the 300x300 input:
#   first/last centre = (0.5 * step, (cells - 0.5) * step);
#   first anchor: square of side s_k; second: square of side sqrt(s_k * s_k+1);
#   last anchor: the last ratio r (1/2 or 1/3): h = s_k / sqrt(r), w = s_k * sqrt(r).
HAND = [  # (layer, cells, anchors/cell, first centre, last centre, s_k, sqrt(s_k s_k+1), last h, last w)
    ('block4', 38, 4, 4., 300., 21., 30.7409, 29.6985, 14.8492),
    ('block7', 19, 6, 8., 296., 45., 66.7458, 77.9423, 25.9808),
    ('block8', 10, 6, 16., 304., 99., 123.0731, 171.4730, 57.1577),
    ('block9', 5, 6, 32., 288., 153., 177.9635, 265.0038, 88.3346),
    ('block10', 3, 4, 50., 250., 207., 232.4371, 292.7422, 146.3711),
    ('block11', 1, 4, 150., 150., 261., 286.7316, 369.1097, 184.5549),
]


def _paper_anchor_boxes():
    """Every SSD300 anchor box, one at a time, from the SSD paper's formulas with SSD-Tensorflow's
    steps and sizes (pixels of the 300x300 input): layer by layer, row, column, then anchor."""
    boxes = []
    for (cells, steps, (s_k, s_next), ratios) in zip(
            (38, 19, 10, 5, 3, 1), (8, 16, 32, 64, 100, 300),
            ((21, 45), (45, 99), (99, 153), (153, 207), (207, 261), (261, 315)),
            ((2, .5), (2, .5, 3, 1 / 3), (2, .5, 3, 1 / 3), (2, .5, 3, 1 / 3), (2, .5), (2, .5))):
        sizes = [(s_k, s_k), (np.sqrt(s_k * s_next),) * 2] + [
            (s_k / np.sqrt(r), s_k * np.sqrt(r)) for r in ratios]     # (height, width)
        for row in range(cells):
            for column in range(cells):
                cy, cx = (row + .5) * steps, (column + .5) * steps
                boxes += [(cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2) for h, w in sizes]
    return np.array(boxes) / 300.


def test_ssd300_anchors_equal_the_paper_formulas_anchor_by_anchor():
    expected = _paper_anchor_boxes()
    assert len(expected) == anchors.total_anchors(P) == 8732   # docs/CONTRACT.md §4
    np.testing.assert_allclose(anchors.flat_anchor_boxes(anchors.anchors_all_layers(P)),
                               expected, atol=1e-6)


@pytest.mark.parametrize('index', range(6))
def test_first_and_last_anchor_of_each_layer(index):
    name, cells, per_cell, first_c, last_c, s_k, s_prime, last_h, last_w = HAND[index]
    assert P.feat_layers[index] == name
    y, x, h, w = anchors.anchors_all_layers(P)[index]
    assert y.shape == (cells, cells, 1) and x.shape == (cells, cells, 1)
    assert h.shape == (per_cell,) and w.shape == (per_cell,)
    tol = 1e-4 / 300
    np.testing.assert_allclose([y[0, 0, 0], x[0, 0, 0]], [first_c / 300] * 2, atol=tol)
    np.testing.assert_allclose([y[-1, -1, 0], x[-1, -1, 0]], [last_c / 300] * 2, atol=tol)
    np.testing.assert_allclose([h[0], w[0]], [s_k / 300] * 2, atol=tol)
    np.testing.assert_allclose([h[1], w[1]], [s_prime / 300] * 2, atol=tol)
    np.testing.assert_allclose([h[-1], w[-1]], [last_h / 300, last_w / 300], atol=tol)
    # y varies along rows only, x along columns only.
    assert y[0, -1, 0] == y[0, 0, 0] and x[-1, 0, 0] == x[0, 0, 0]


def test_flat_boxes_follow_layer_row_column_anchor_order():
    layers = anchors.anchors_all_layers(P)
    boxes = anchors.flat_anchor_boxes(layers)
    # block7 (second layer), row 2, column 5, anchor 3 (ratio 0.5: h = 45*sqrt2, w = 45/sqrt2 px).
    index = 38 * 38 * 4 + (2 * 19 + 5) * 6 + 3
    cy, cx = 2.5 * 16, 5.5 * 16
    h, w = 45 * np.sqrt(2), 45 / np.sqrt(2)
    expected = np.array([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]) / 300
    np.testing.assert_allclose(boxes[index], expected, atol=1e-6)


def test_non_square_image_normalises_each_axis_by_its_own_size():
    y, x, h, w = anchors.anchors_one_layer((200, 400), (2, 4), (40., 90.), (2.,), step=100)
    np.testing.assert_allclose(y[:, 0, 0], [50 / 200, 150 / 200])
    np.testing.assert_allclose(x[0, :, 0], [50 / 400, 150 / 400, 250 / 400, 350 / 400])
    np.testing.assert_allclose(h, [40 / 200, 60 / 200, 40 / np.sqrt(2) / 200], rtol=1e-6)
    np.testing.assert_allclose(w, [40 / 400, 60 / 400, 40 * np.sqrt(2) / 400], rtol=1e-6)
