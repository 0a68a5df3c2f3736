"""Drawing: boxes land on the right pixels of a same-size PNG; PR curves one file per scored class."""
import matplotlib.image as mpimg
import numpy as np

from utils import visualization
from utils.voc_metric import VOCMetric

GRAY = 128.


def _read_rgb(path):
    return np.round(mpimg.imread(path)[..., :3] * 255.)


def _near_color(pixels, color, tolerance=12.):
    """True when one of ``pixels [K, 3]`` is within ``tolerance`` of ``color`` (0..255)."""
    return bool(np.min(np.abs(pixels - np.asarray(color) * 255.).max(axis=1)) < tolerance)


def test_boxes_drawn_at_pixel_coordinates(tmp_path):
    image = np.full((160, 200, 3), GRAY, np.uint8)
    path = visualization.save_detections(
        str(tmp_path / 'out.png'), image, boxes=[[40, 30, 120, 100], [10, 150, 60, 190]],
        classes=[2, 1], scores=[.87, .5], class_names=['Bus', 'Car'])
    drawn = _read_rgb(path)
    assert drawn.shape == (160, 200, 3)  # one image pixel per picture pixel
    car, bus = visualization.class_color(2), visualization.class_color(1)
    assert car != bus
    # Box edges (within a pixel of the coordinates) in the class colour.
    assert _near_color(drawn[80, 28:33], car)     # left edge x = 30
    assert _near_color(drawn[80, 98:103], car)    # right edge x = 100
    assert _near_color(drawn[118:123, 65], car)   # bottom edge y = 120
    assert _near_color(drawn[35, 148:153], bus)   # second box, left edge x = 150
    assert not _near_color(drawn[80, 28:33], bus)
    # Inside and outside the boxes the picture is untouched.
    np.testing.assert_array_equal(drawn[80, 65], [GRAY] * 3)
    np.testing.assert_array_equal(drawn[150, 10], [GRAY] * 3)
    # The label sits above the box's top-left corner.
    assert np.any(np.abs(drawn[25:40, 30:60] - GRAY).max(axis=-1) > 40)


def test_label_of_a_box_at_the_top_edge_is_drawn_inside_it(tmp_path):
    image = np.full((160, 200, 3), GRAY, np.uint8)
    path = visualization.save_detections(str(tmp_path / 'top.png'), image, boxes=[[0, 30, 120, 190]],
                                         classes=[1], scores=[.9], class_names=['Car'])
    drawn = _read_rgb(path)
    colour = visualization.class_color(1)
    # The label's background fills rows just below the top edge, inside the box.
    label_area = drawn[3:12, 35:80].reshape(-1, 3)
    assert np.mean(np.abs(label_area - np.asarray(colour) * 255.).max(axis=1) < 60) > 0.3


def test_no_detections_keeps_image(tmp_path):
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, size=(70, 90, 3)).astype(np.uint8)
    path = visualization.save_detections(str(tmp_path / 'plain.png'), image, np.zeros((0, 4)),
                                         [], [], ['Car'])
    np.testing.assert_allclose(_read_rgb(path), image, atol=1)


def test_precision_recall_png_per_scored_class(tmp_path):
    metric = VOCMetric(['Car', 'Bus/Coach', 'Truck'])
    metric.add(0, [[0, 0, .5, .5], [.5, .5, 1, 1]], [1, 2], None,
               [[0, 0, .5, .5], [.5, .5, 1, 1], [0, .5, .5, 1]], [.9, .8, .7], [1, 2, 3])
    paths = visualization.save_precision_recall_curves(str(tmp_path / 'pr'), metric.evaluate())
    # Truck has no ground truth: no curve. The slash is not allowed in a file name.
    assert sorted(p.rsplit('/', 1)[1] for p in paths) == ['pr_Bus_Coach.png', 'pr_Car.png']
    assert mpimg.imread(paths[0]).shape[:2] == (400, 480)


def test_headless_machine_has_no_display(monkeypatch):
    monkeypatch.setattr(visualization.sys, 'platform', 'linux')
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    assert not visualization.has_display()
    assert visualization.show_image('/nonexistent.png') is False


def test_a_name_no_installed_font_draws_is_labelled_by_id_in_one_line(tmp_path, capsys,
                                                                     monkeypatch):
    import warnings
    # A font that covers only ASCII stands in for a machine without CJK fonts.
    monkeypatch.setattr(visualization, '_characters_of',
                        lambda path: frozenset(range(32, 127)))
    visualization.font_for.cache_clear()
    monkeypatch.setattr(visualization, '_UNDRAWABLE_WARNED', set())
    drawn = []
    with warnings.catch_warnings():
        warnings.simplefilter('error')   # matplotlib's "Glyph ... missing" would fail here
        for _ in range(2):
            figure = visualization.detections_figure(
                np.zeros((60, 80, 3), np.uint8), [[10, 10, 40, 50]], [2], [.8],
                ['Car', '救护车'], title='街.jpg')
            drawn.append(sorted(t.get_text() for t in figure.axes[0].texts))
    visualization.font_for.cache_clear()
    assert drawn[0] == drawn[1] == ['?.jpg', 'class 2 0.80']
    assert capsys.readouterr().err.splitlines() == [
        "warning: no installed font draws '救护车' (install one that does, e.g. Debian's "
        "fonts-noto-cjk): pictures show 'class 2' instead",
        "warning: no installed font draws '街.jpg' (install one that does, e.g. Debian's "
        "fonts-noto-cjk): pictures show '?.jpg' instead"]
