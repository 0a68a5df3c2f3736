"""SSD-VGG300 pre-processing: evaluation resize, the training augmentation keeping boxes on their
objects, flips, zoom-out, label alignment, tf.data use and the factory (issue 3)."""
import time

import cv2
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from preprocessing import preprocessing_factory
from preprocessing.processing import ssd_vgg_preprocessing as ssd_pre

MEANS = np.float32([123.68, 116.78, 103.94])
BACKGROUND = (200, 200, 200)
# label -> colour of its rectangle; none of them is close to the mean colour used for zoom-out.
COLOURS = {1: (230, 20, 20), 2: (20, 200, 20), 3: (20, 20, 230), 4: (240, 240, 30)}
# label -> [ymin, xmin, ymax, xmax] in pixels of a 240 x 320 image; the rectangles do not overlap.
RECTS = {1: (20, 30, 110, 130), 2: (30, 180, 100, 300), 3: (140, 20, 220, 90), 4: (130, 150, 230, 290)}
H, W = 240, 320
NO_PHOTO = {'photometric_distortion': False}


def _scene():
    """The coloured-rectangles image, its labels and its normalised boxes (independent ground truth)."""
    image = np.empty((H, W, 3), np.uint8)
    image[:] = BACKGROUND
    labels, boxes = [], []
    for label, (y0, x0, y1, x1) in RECTS.items():
        image[y0:y1, x0:x1] = COLOURS[label]
        labels.append(label)
        boxes.append([y0 / H, x0 / W, y1 / H, x1 / W])
    return image, np.int64(labels), np.float32(boxes)


class _Transform:
    """A pre-processing call on placeholders in its own graph; every run draws new random numbers."""

    def __init__(self, is_training, seed=1, **kwargs):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.set_random_seed(seed)
            self.image = tf.placeholder(tf.uint8, [None, None, 3])
            self.labels = tf.placeholder(tf.int64, [None])
            self.boxes = tf.placeholder(tf.float32, [None, 4])
            fn = preprocessing_factory.get_preprocessing('ssd_vgg_300', is_training)
            self.outputs = fn(self.image, self.labels, self.boxes, **kwargs)
        self.sess = tf.Session(graph=self.graph)

    def __call__(self, image, labels, boxes):
        return self.sess.run(self.outputs, {self.image: image, self.labels: labels, self.boxes: boxes})


def _nearest_colour(rgb):
    """Label of the nearest palette colour per pixel: 1..4 rectangles, 0 background, -1 mean canvas."""
    names = list(COLOURS) + [0, -1]
    palette = np.float32([COLOURS[k] for k in COLOURS] + [BACKGROUND, MEANS])
    dist = np.linalg.norm(rgb[..., None, :].astype(np.float32) - palette, axis=-1)
    return np.asarray(names)[dist.argmin(-1)]


def _pixels_in_box(box, size=300):
    """Boolean mask of the output pixels whose centre lies inside a normalised box."""
    centres = (np.arange(size) + 0.5) / size
    rows = (centres >= box[0]) & (centres <= box[2])
    cols = (centres >= box[1]) & (centres <= box[3])
    return rows[:, None] & cols[None, :]


# ---------------------------------------------------------------- evaluation


def test_eval_shape_dtype_and_exact_mean_subtraction():
    colour = np.uint8([10, 200, 255])
    image = np.tile(colour, (123, 457, 1))
    out, labels, boxes, bbox_img = _Transform(False)(image, [2], [[0.1, 0.2, 0.3, 0.4]])
    assert out.shape == (300, 300, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.broadcast_to(colour - MEANS, out.shape), atol=1e-4)
    assert labels.tolist() == [2]
    np.testing.assert_allclose(boxes, [[0.1, 0.2, 0.3, 0.4]], atol=1e-6)
    np.testing.assert_array_equal(bbox_img, [0, 0, 1, 1])


@pytest.mark.parametrize('height, width', [(375, 500), (120, 90)])
def test_eval_warp_resize_matches_opencv_bilinear(height, width):
    image = np.random.RandomState(height).randint(0, 256, (height, width, 3)).astype(np.uint8)
    out = _Transform(False)(image, [1], [[0, 0, 1, 1]])[0]
    # OpenCV's INTER_LINEAR uses the same half-pixel centres and clamps at the border.
    reference = cv2.resize(image.astype(np.float32), (300, 300), interpolation=cv2.INTER_LINEAR) - MEANS
    np.testing.assert_allclose(out, reference, atol=0.05)


def test_eval_nchw_and_unwhiten_round_trip():
    image = np.random.RandomState(3).randint(0, 256, (300, 300, 3)).astype(np.uint8)
    with tf.Graph().as_default(), tf.Session() as sess:
        fn = preprocessing_factory.get_preprocessing('ssd_300_vgg', False)
        nchw = fn(tf.constant(image), None, None, data_format='NCHW')[0]
        nhwc = fn(tf.constant(image), None, None)[0]
        assert nchw.shape.as_list() == [3, 300, 300]
        back_nchw, back_nhwc = sess.run([ssd_pre.unwhiten_image(nchw, 'NCHW'),
                                         ssd_pre.unwhiten_image(nhwc[None])])
    # A 300x300 input is sampled at its own pixel centres, so the round trip is exact.
    np.testing.assert_array_equal(back_nchw, image)
    np.testing.assert_array_equal(back_nhwc[0], image)


# ---------------------------------------------------------------- training


def test_augmentation_keeps_boxes_on_their_objects():
    """The issue's check: 100 random transforms (no photometric distortion) of coloured rectangles."""
    image, labels, boxes = _scene()
    transform = _Transform(True, seed=3, **NO_PHOTO)
    changed = dropped = zoomed = 0
    for _ in range(100):
        out, out_labels, out_boxes = transform(image, labels, boxes)
        assert out.shape == (300, 300, 3) and out.dtype == np.float32
        assert len(out_labels) == len(out_boxes) >= 1
        assert np.all(out_boxes >= 0) and np.all(out_boxes <= 1)
        assert np.all(out_boxes[:, 2] > out_boxes[:, 0]) and np.all(out_boxes[:, 3] > out_boxes[:, 1])
        classes = _nearest_colour(out + MEANS)
        for label, box in zip(out_labels, out_boxes):
            inside = _pixels_in_box(box)
            assert inside.sum() > 0
            # The colour is looked up by the label: a misaligned label would fail here too.
            share = np.mean(classes[inside] == label)
            assert share >= 0.9, 'box %s of label %d: %.0f%% of its pixels' % (box, label, 100 * share)
        changed += not np.allclose(out_boxes, boxes[np.searchsorted(labels, out_labels)], atol=1e-3)
        dropped += len(out_labels) < len(labels)
        zoomed += np.mean(classes == -1) > 0.05  # a mean-coloured canvas border, not just blended edges
    # The checks above only mean something if the augmentation really moved, dropped and zoomed.
    assert changed > 50 and dropped > 10 and zoomed > 10, (changed, dropped, zoomed)


def test_flip_maps_image_and_boxes_exactly():
    image = np.random.RandomState(5).randint(0, 256, (300, 300, 3)).astype(np.uint8)
    transform = _Transform(True, zoom_out=False, random_crop=False, **NO_PHOTO)
    whitened = image - MEANS
    seen = set()
    for _ in range(12):
        out, out_labels, out_boxes = transform(image, [7, 9], [[0.1, 0.2, 0.5, 0.4], [0., 0., 1., 0.25]])
        assert out_labels.tolist() == [7, 9]
        if np.allclose(out, whitened, atol=1e-3):
            seen.add('kept')
            np.testing.assert_allclose(out_boxes, [[0.1, 0.2, 0.5, 0.4], [0, 0, 1, 0.25]], atol=1e-6)
        else:
            seen.add('flipped')
            np.testing.assert_allclose(out, whitened[:, ::-1], atol=1e-3)
            np.testing.assert_allclose(out_boxes, [[0.1, 0.6, 0.5, 0.8], [0, 0.75, 1, 1]], atol=1e-6)
    assert seen == {'kept', 'flipped'}


def test_zoom_out_keeps_boxes_on_objects():
    image, labels, boxes = _scene()
    transform = _Transform(True, zoom_out_probability=1.0, random_crop=False, flip=False, **NO_PHOTO)
    for _ in range(10):
        out, out_labels, out_boxes = transform(image, labels, boxes)
        classes = _nearest_colour(out + MEANS)
        # Where the image landed, read from the pixels alone (the canvas is mean-coloured).
        rows = np.flatnonzero(np.any(classes != -1, axis=1))
        cols = np.flatnonzero(np.any(classes != -1, axis=0))
        placed = np.float32([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) / 300.
        assert placed[2] - placed[0] < 1.0  # really zoomed out
        expected = np.tile(placed[:2], 2) + boxes * np.tile(placed[2:] - placed[:2], 2)
        assert out_labels.tolist() == labels.tolist()
        np.testing.assert_allclose(out_boxes, expected, atol=2.5 / 300)
        for label, box in zip(out_labels, out_boxes):
            assert np.mean(classes[_pixels_in_box(box)] == label) >= 0.9


def test_labels_follow_their_boxes_when_boxes_are_dropped():
    """Same-size rectangles (one colour each) so that only the label-colour pairing tells them apart."""
    image = np.empty((300, 300, 3), np.uint8)
    image[:] = BACKGROUND
    labels = np.int64([4, 2, 3, 1])  # deliberately not sorted
    corners = [(10, 10), (10, 190), (190, 10), (190, 190)]
    boxes = []
    for label, (y, x) in zip(labels, corners):
        image[y:y + 100, x:x + 100] = COLOURS[label]
        boxes.append([y / 300., x / 300., (y + 100) / 300., (x + 100) / 300.])
    transform = _Transform(True, seed=11, zoom_out=False, **NO_PHOTO)
    partial = 0
    for _ in range(40):
        out, out_labels, out_boxes = transform(image, labels, np.float32(boxes))
        partial += 0 < len(out_labels) < 4
        classes = _nearest_colour(out + MEANS)
        for label, box in zip(out_labels, out_boxes):
            assert np.mean(classes[_pixels_in_box(box)] == label) >= 0.9
    assert partial > 5


def test_crop_never_loses_every_box_and_empty_input_is_fine():
    image, _, _ = _scene()
    transform = _Transform(True, seed=5, **NO_PHOTO)
    small = np.float32([[0.45, 0.45, 0.5, 0.5]])
    for _ in range(30):
        assert transform(image, [3], small)[1].tolist() == [3]
    out, out_labels, out_boxes = transform(image, np.zeros([0], np.int64), np.zeros([0, 4], np.float32))
    assert out.shape == (300, 300, 3) and out_labels.shape == (0,) and out_boxes.shape == (0, 4)


def test_photometric_distortion_changes_colours_within_range():
    image = np.tile(np.uint8([90, 140, 60]), (50, 60, 1))
    transform = _Transform(True, seed=2, zoom_out=False, random_crop=False, flip=False)
    means = []
    for _ in range(20):
        out = transform(image, [1], [[0.1, 0.1, 0.9, 0.9]])[0] + MEANS
        assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3
        assert np.ptp(out.reshape(-1, 3), axis=0).max() < 1e-3  # a flat image stays flat
        means.append(out[0, 0])
    assert len({tuple(np.round(m, 1)) for m in means}) > 10


def test_training_runs_in_tf_data_map_and_prints_throughput(capsys):
    image = np.random.RandomState(0).randint(0, 256, (375, 500, 3)).astype(np.uint8)
    fn = preprocessing_factory.get_preprocessing('ssd_vgg_300', True)
    with tf.Graph().as_default():
        data = tf.data.Dataset.from_tensors((image, np.int64([1, 2]),
                                             np.float32([[.1, .1, .6, .5], [.3, .5, .9, .9]])))
        data = data.repeat().map(fn, num_parallel_calls=2).prefetch(4)
        out_image, out_labels, out_boxes = tf.data.make_one_shot_iterator(data).get_next()
        assert out_image.shape.as_list() == [300, 300, 3]
        assert out_boxes.shape.as_list() == [None, 4]
        with tf.Session() as sess:
            sess.run(out_image)
            count = 40
            start = time.perf_counter()
            for _ in range(count):
                _, labels, boxes = sess.run([out_image, out_labels, out_boxes])
                assert 1 <= len(labels) == len(boxes)
            rate = count / (time.perf_counter() - start)
    with capsys.disabled():
        print('\n[preprocessing] training transform of a 500x375 image in tf.data: %.0f images/s' % rate)


# ---------------------------------------------------------------- factory and bad input


def test_graphs_hold_standard_ops_only():
    """TF Serving's C++ runtime has no Python: neither branch may use py_func."""
    with tf.Graph().as_default() as graph:
        image = tf.placeholder(tf.uint8, [None, None, 3])
        for is_training in (True, False):
            preprocessing_factory.get_preprocessing('ssd_vgg_300', is_training)(
                image, [1], [[0, 0, 1, 1]])
        op_types = {op.type for op in graph.get_operations()}
    assert 'CropAndResize' in op_types
    assert not op_types & {'PyFunc', 'PyFuncStateless', 'EagerPyFunc'}


def test_factory_names_and_branches():
    with pytest.raises(ValueError, match="unknown preprocessing name 'vgg'; "
                                         "known names: ssd_300_vgg, ssd_vgg_300"):
        preprocessing_factory.get_preprocessing('vgg', True)
    with tf.Graph().as_default():
        image = tf.zeros([40, 50, 3], tf.uint8)
        train_fn = preprocessing_factory.get_preprocessing('ssd_300_vgg', True)
        assert len(train_fn(image, [1], [[0, 0, 1, 1]])) == 3
        assert len(train_fn(image, [1], [[0, 0, 1, 1]], is_training=False)) == 4
        assert len(preprocessing_factory.get_preprocessing('ssd_vgg_300', False)(image, None, None)) == 4


def test_bad_input_is_a_clear_value_error():
    fn = preprocessing_factory.get_preprocessing('ssd_vgg_300', True)
    with tf.Graph().as_default():
        image = tf.zeros([40, 50, 3], tf.uint8)
        with pytest.raises(ValueError, match='unknown training pre-processing option.*photometric'):
            fn(image, [1], [[0, 0, 1, 1]], photometric=False)
        with pytest.raises(ValueError, match='image must be uint8 RGB.*float32'):
            fn(tf.zeros([40, 50, 3]), [1], [[0, 0, 1, 1]])
        with pytest.raises(ValueError, match='image must be uint8 RGB.*shape'):
            fn(tf.zeros([40, 50], tf.uint8), [1], [[0, 0, 1, 1]])
        with pytest.raises(ValueError, match="data_format must be 'NHWC' or 'NCHW'"):
            fn(image, [1], [[0, 0, 1, 1]], data_format='HWC')
        with pytest.raises(ValueError, match='resize must be a Resize member'):
            fn(image, [1], [[0, 0, 1, 1]], is_training=False, resize='warp')
