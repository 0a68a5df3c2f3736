"""export_saved_model.py: signatures (via saved_model_cli), standard ops only, detected_model equal
to the checkpoint's network, serving_default equal to detector.py, versioning and CLI errors.

The helpers ``make_checkpoint``, ``make_images`` and ``exported_model`` are shared with
test_client.py and test_web.py.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from test.conftest import REPO_ROOT

PYTHON = sys.executable
CLASS_NAMES = ['Ambulance', 'Bus', 'Car', 'Motorcycle', 'Truck']
NUM_CLASSES = len(CLASS_NAMES) + 1
WIDTH = 0.125
# docs/CONTRACT.md §4, written out independently of nets/ssd_params.py.
FEAT_SHAPES = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
ANCHORS_PER_CELL = [4, 6, 6, 6, 4, 4]
# Random weights give confident scores; a high threshold keeps the comparisons about tens of
# well-separated boxes rather than 200 near-ties.
SELECT_THRESHOLD = 0.9
KEEP_TOP_K = 50


def make_checkpoint(train_dir, step=10, seed=1):
    """A tiny SSD-VGG300 (width 1/8, 6 classes) initialised and saved as model.ckpt-<step>."""
    from test import checkpoints
    return checkpoints.make_checkpoint(train_dir, num_classes=NUM_CLASSES, width_multiplier=WIDTH,
                                       step=step, seed=seed)


def make_images(directory):
    """Two synthetic pictures of different sizes: ``scene.jpg`` (240x320) and ``scene.png``
    (200x150); returns their paths. A smooth random field under a few rectangles: no flat area
    (flat areas make exact score ties, whose NMS winner is arbitrary), few JPEG artefacts."""
    import cv2
    paths = []
    for name, (height, width), seed in (('scene.jpg', (240, 320), 3), ('scene.png', (200, 150), 4)):
        rng = np.random.RandomState(seed)
        field = rng.uniform(40, 215, (6, 8, 3)).astype(np.float32)
        image = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image, 0, 255).astype(np.uint8)
        for _ in range(4):
            y, x = rng.randint(0, height - 40), rng.randint(0, width - 40)
            cv2.rectangle(image, (x, y), (x + rng.randint(20, 60), y + rng.randint(20, 60)),
                          [int(v) for v in rng.randint(0, 255, 3)], 3)
        path = os.path.join(directory, name)
        cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 95] if name.endswith('.jpg') else [])
        paths.append(path)
    return paths


def exported_model(tmp_path_factory):
    """(checkpoint prefix, export dir, version folder, image paths) of a fresh export."""
    import export_saved_model
    root = tmp_path_factory.mktemp('export_case')
    prefix = make_checkpoint(str(root / 'train'))
    version_dir = export_saved_model.export(prefix, str(root / 'export'), 'ssd', None,
                                            select_threshold=SELECT_THRESHOLD,
                                            keep_top_k=KEEP_TOP_K)
    images_dir = root / 'images'
    images_dir.mkdir()
    return prefix, str(root / 'export'), version_dir, make_images(str(images_dir))


@pytest.fixture(scope='module')
def export_case(tmp_path_factory):
    return exported_model(tmp_path_factory)


def run_signature(version_dir, signature, feeds):
    """Loads the SavedModel with the TF1 loader and runs ``signature`` on ``feeds`` (input key →
    value); returns output key → array."""
    import tensorflow.compat.v1 as tf
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as sess:
        meta = tf.saved_model.loader.load(sess, ['serve'], version_dir)
        sig = meta.signature_def[signature]
        return sess.run({k: v.name for k, v in sig.outputs.items()},
                        {sig.inputs[k].name: v for k, v in feeds.items()})


def _saved_graph_def(version_dir):
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(version_dir, 'saved_model.pb'), 'rb') as f:
        saved.ParseFromString(f.read())
    return saved.meta_graphs[0].graph_def


def checkpoint_network_outputs(prefix, image):
    """The raw network (built from nets_factory, restored with a plain Saver) on one image."""
    import tensorflow.compat.v1 as tf
    from nets import nets_factory
    from utils import slim_compat
    slim = slim_compat.import_slim()
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as sess:
        net = nets_factory.build_network('ssd_vgg_300', NUM_CLASSES, width_multiplier=WIDTH)
        with slim.arg_scope(net.arg_scope(data_format='NHWC')):
            predictions, localisations, _, _ = net.net(tf.constant(image[None]), is_training=False)
        tf.train.Saver().restore(sess, prefix)
        return sess.run((predictions, localisations))


def _cli_signatures(version_dir):
    """Parses ``saved_model_cli show --all`` → {signature: {'inputs'|'outputs': {key: (dtype,
    shape)}, 'method': str}}."""
    cli = os.path.join(os.path.dirname(PYTHON), 'saved_model_cli')
    text = subprocess.run([cli, 'show', '--all', '--dir', version_dir], capture_output=True,
                          text=True, check=True, timeout=120).stdout
    signatures = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"signature_def\['(\w+)'\]:", line)
        if match:
            current = signatures.setdefault(match.group(1), {'inputs': {}, 'outputs': {}})
            continue
        match = re.match(r"\s+(inputs|outputs)\['(\w+)'\] tensor_info:", line)
        if match:
            entry = current[match.group(1)]
            key = match.group(2)
            continue
        match = re.match(r'\s+dtype: (\w+)', line)
        if match:
            entry[key] = (match.group(1),)
            continue
        match = re.match(r'\s+shape: \(([-\d, ]*)\)', line)
        if match:
            entry[key] += (tuple(int(v) for v in match.group(1).replace(' ', '').split(',') if v),)
            continue
        match = re.match(r'\s+Method name is: (\S+)', line)
        if match:
            current['method'] = match.group(1)
    return signatures


def test_saved_model_cli_lists_both_signatures(export_case):
    _, _, version_dir, _ = export_case
    signatures = _cli_signatures(version_dir)
    assert sorted(signatures) == ['detected_model', 'serving_default']

    raw = signatures['detected_model']
    assert raw['method'] == 'tensorflow/serving/predict'
    assert raw['inputs'] == {'images': ('DT_FLOAT', (300, 300, 3))}
    expected = {}
    for i, ((height, width), anchors) in enumerate(zip(FEAT_SHAPES, ANCHORS_PER_CELL)):
        expected['predict%d' % i] = ('DT_FLOAT', (1, height, width, anchors, NUM_CLASSES))
        expected['local%d' % i] = ('DT_FLOAT', (1, height, width, anchors, 4))
    assert raw['outputs'] == expected

    default = signatures['serving_default']
    assert default['method'] == 'tensorflow/serving/predict'
    assert default['inputs'] == {'encoded_image': ('DT_STRING', (-1,))}
    assert default['outputs'] == {
        'detection_boxes': ('DT_FLOAT', (-1, KEEP_TOP_K, 4)),
        'detection_scores': ('DT_FLOAT', (-1, KEEP_TOP_K)),
        'detection_classes': ('DT_INT64', (-1, KEEP_TOP_K)),
        'num_detections': ('DT_INT32', (-1,)),
    }


def test_exported_graph_has_standard_ops_only(export_case):
    _, _, version_dir, _ = export_case
    graph_def = _saved_graph_def(version_dir)
    ops = set(node.op for node in graph_def.node)
    for function in graph_def.library.function:
        ops.update(node.op for node in function.node_def)
    # The decoder lives in the map_fn body: seeing it proves function bodies were searched.
    assert 'DecodeImage' in ops
    assert not ops & {'PyFunc', 'PyFuncStateless', 'EagerPyFunc'}


def test_model_info_beside_the_saved_model(export_case):
    import json
    _, _, version_dir, _ = export_case
    with open(os.path.join(version_dir, 'assets.extra', 'model_info.json')) as f:
        info = json.load(f)
    assert info['class_names'] == CLASS_NAMES
    assert info['num_classes'] == NUM_CLASSES
    assert info['select_threshold'] == SELECT_THRESHOLD
    assert sorted(os.listdir(os.path.dirname(version_dir))) == ['1']  # no temporary folder left


def test_detected_model_equals_checkpoint_network(export_case):
    prefix, _, version_dir, _ = export_case
    image = np.random.RandomState(0).uniform(-120., 130., (300, 300, 3)).astype(np.float32)
    served = run_signature(version_dir, 'detected_model', {'images': image})
    predictions, localisations = checkpoint_network_outputs(prefix, image)
    for i in range(6):
        np.testing.assert_allclose(served['predict%d' % i], predictions[i], atol=1e-5, rtol=0)
        np.testing.assert_allclose(served['local%d' % i], localisations[i], atol=1e-5, rtol=0)
    # Probabilities: the last axis sums to one (a softmax, not logits).
    np.testing.assert_allclose(served['predict0'].sum(-1), 1., atol=1e-5)


def test_serving_default_matches_detector(export_case):
    import detector
    prefix, _, version_dir, image_paths = export_case
    encoded = [open(path, 'rb').read() for path in image_paths]
    served = run_signature(version_dir, 'serving_default', {'encoded_image': encoded})
    local = detector.Detector(prefix, select_threshold=SELECT_THRESHOLD, keep_top_k=KEEP_TOP_K)
    try:
        for index, data in enumerate(encoded):
            image, boxes, scores, classes = local.run(data)
            count = served['num_detections'][index]
            assert count == len(scores) > 0
            np.testing.assert_array_equal(served['detection_classes'][index, :count], classes)
            np.testing.assert_allclose(served['detection_scores'][index, :count], scores,
                                       atol=1e-5, rtol=0)
            np.testing.assert_allclose(served['detection_boxes'][index, :count], boxes,
                                       atol=1e-2, rtol=0)   # pixels
            # Padding rows are zero and boxes lie in the original image's pixel frame.
            assert not served['detection_scores'][index, count:].any()
            height, width = image.shape[:2]
            assert boxes[:, 2].max() <= height + 1e-3 and boxes[:, 3].max() <= width + 1e-3
    finally:
        local.close()


def test_choose_version(tmp_path):
    import export_saved_model as export
    model_dir = tmp_path / 'm'
    assert export.choose_version(str(model_dir)) == 1
    # Digits outside ASCII ('²', '٣') and numbers beyond int64 are not versions.
    for name in ('1', '3', '.tmp-4-1', 'notes', '\u00b2', '\u0663', '99999999999999999999'):
        (model_dir / name).mkdir(parents=True)
    assert export.existing_versions(str(model_dir)) == [1, 3]
    assert export.choose_version(str(model_dir)) == 4
    assert export.choose_version(str(model_dir), 2) == 2
    assert export.choose_version(str(model_dir), 3, overwrite=True) == 3
    with pytest.raises(export.ExportError, match='version 3 already exists.*--overwrite'):
        export.choose_version(str(model_dir), 3)
    with pytest.raises(export.ExportError, match='--model_version must be a positive int64'):
        export.choose_version(str(model_dir), 2 ** 63)


IMAGE_20x30 = np.random.RandomState(0).randint(0, 255, (20, 30, 3)).astype(np.uint8)


def test_header_size_in_the_graph_agrees_with_the_python_reader():
    """One table drives both readers: every header layout gives (20, 30) in the graph too."""
    import tensorflow.compat.v1 as tf
    import export_saved_model as export
    from test.conftest import encoded_images
    from utils import image_header
    images = encoded_images(IMAGE_20x30)
    images['OS/2 BMP 2x300'] = encoded_images(np.zeros((2, 300, 3), np.uint8))['BMP OS/2']
    images['text'], images['short'] = b'plain text, not an image', b'BM'
    with tf.Graph().as_default(), tf.Session() as sess:
        placeholder = tf.placeholder(tf.string, [])
        size = export._header_size(placeholder)
        for name, data in sorted(images.items()):
            expected = (image_header.image_size(data) or (None, 0, 0))[1:] \
                if name != 'short' else (0, 0)
            assert tuple(sess.run(size, {placeholder: data})) == expected, name


@pytest.mark.parametrize('name', ['JPEG', 'PNG', 'GIF', 'BMP', 'WebP lossy'])
def test_serving_default_graph_refuses_images_above_the_pixel_limit(name):
    # 600 pixels pass, 599 do not, refused from the header before decoding.
    import tensorflow.compat.v1 as tf
    import export_saved_model as export
    from nets.ssd_params import SSD300_PARAMS
    from test.conftest import encoded_images
    encoded = encoded_images(IMAGE_20x30)[name]
    with tf.Graph().as_default(), tf.Session() as sess:
        placeholder = tf.placeholder(tf.string, [])
        within = export._decode_and_preprocess(placeholder, SSD300_PARAMS, max_image_pixels=600)
        above = export._decode_and_preprocess(placeholder, SSD300_PARAMS, max_image_pixels=599)
        image, size, bbox_img = sess.run(within, {placeholder: encoded})
        assert image.shape == (300, 300, 3) and size.tolist() == [20, 30]
        assert bbox_img.tolist() == [0, 0, 1, 1]
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=re.escape('encoded_image: image of 30x20 pixels (from its '
                                           'header) exceeds the limit of 599 pixels '
                                           '(--max_image_pixels)')):
            sess.run(above, {placeholder: encoded})


def test_exported_serving_default_refuses_a_declared_huge_png(export_case):
    import tensorflow.compat.v1 as tf
    from test.conftest import declared_png
    version_dir = export_case[2]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=re.escape('image of 12000x12000 pixels (from its header) exceeds the '
                                       'limit of 50000000 pixels (--max_image_pixels)')):
        run_signature(version_dir, 'serving_default',
                      {'encoded_image': np.array([declared_png(12000, 12000)], object)})


def test_overwrite_replaces_a_version(export_case, tmp_path):
    import export_saved_model as export
    prefix, export_dir, version_dir, _ = export_case
    target = str(tmp_path / 'export')
    os.makedirs(os.path.join(target, 'ssd', '1'))
    with open(os.path.join(target, 'ssd', '1', 'stale'), 'w') as f:
        f.write('old')
    path = export.export(prefix, target, 'ssd', 1, overwrite=True)
    assert sorted(os.listdir(path)) == ['assets.extra', 'saved_model.pb', 'variables']
    assert sorted(os.listdir(os.path.join(target, 'ssd'))) == ['1']


def _run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    return subprocess.run([PYTHON, 'export_saved_model.py'] + list(args), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_refuses_an_existing_version(export_case):
    prefix, export_dir, _, _ = export_case
    result = _run_cli('--ckpt_path=%s' % prefix, '--export_dir=%s' % export_dir,
                      '--model_name=ssd', '--model_version=1')
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'error: version 1 already exists in %s: pass --overwrite to replace it, or omit '
        '--model_version to write version 2' % os.path.join(export_dir, 'ssd'))
    assert 'Traceback' not in result.stderr


def test_bad_checkpoint_path_leaves_no_folder(export_case, tmp_path):
    import export_saved_model as export
    from model import model_info
    prefix = export_case[0]
    with pytest.raises(model_info.ModelInfoError, match='not a checkpoint prefix: use %s$'
                       % re.escape(prefix)):
        export.export(prefix + '.index', str(tmp_path), 'ssd')
    assert os.listdir(str(tmp_path)) == []


@pytest.fixture(scope='module')
def bfloat16_export(export_case):
    import export_saved_model
    prefix, export_dir, _, _ = export_case
    return export_saved_model.export(prefix, export_dir, 'ssd_bf16', None,
                                     select_threshold=SELECT_THRESHOLD, keep_top_k=KEEP_TOP_K,
                                     precision='bfloat16')


def test_bfloat16_export_keeps_the_signatures_and_computes_in_bfloat16(export_case,
                                                                       bfloat16_export):
    from test.test_frozen_weights import constant_casts
    assert _cli_signatures(bfloat16_export) == _cli_signatures(export_case[2])
    graph_def = _saved_graph_def(bfloat16_export)
    nodes = {node.name: node for node in graph_def.node}
    convs = [node for node in graph_def.node if node.op == 'Conv2D']
    assert convs and {node.attr['T'].type for node in convs} == {14}   # DT_BFLOAT16
    # The weights are bfloat16 constants: no run casts them again, no variable is left.
    assert {nodes[conv.input[1]].op for conv in convs} == {'Const'}
    assert constant_casts(graph_def) == []
    assert not [node for node in graph_def.node if node.op in ('VarHandleOp', 'VariableV2')]
    assert os.listdir(os.path.join(bfloat16_export, 'variables')) == []
    # Each weight is stored once (both signatures' networks share it), in 2 bytes instead of 4.
    sizes = [os.path.getsize(os.path.join(path, 'saved_model.pb'))
             for path in (bfloat16_export, export_case[2])]
    assert sizes[0] < 0.6 * sizes[1], sizes


def test_export_without_frozen_weights_serves_the_same(export_case, tmp_path):
    import export_saved_model
    import tensorflow.compat.v1 as tf
    prefix, _, version_dir, image_paths = export_case
    variables_dir = export_saved_model.export(prefix, str(tmp_path), 'ssd', None,
                                              select_threshold=SELECT_THRESHOLD,
                                              keep_top_k=KEEP_TOP_K, freeze_weights=False)
    assert _cli_signatures(variables_dir) == _cli_signatures(version_dir)
    # Variables are saved in float32, as in the checkpoint; the frozen export has none.
    reader = tf.train.load_checkpoint(os.path.join(variables_dir, 'variables', 'variables'))
    assert set(reader.get_variable_to_dtype_map().values()) == {tf.float32}
    assert os.listdir(os.path.join(version_dir, 'variables')) == []
    encoded = [open(path, 'rb').read() for path in image_paths]
    frozen = run_signature(version_dir, 'serving_default', {'encoded_image': encoded})
    variables = run_signature(variables_dir, 'serving_default', {'encoded_image': encoded})
    assert frozen['num_detections'].min() > 0
    np.testing.assert_array_equal(frozen['num_detections'], variables['num_detections'])
    np.testing.assert_array_equal(frozen['detection_classes'], variables['detection_classes'])
    np.testing.assert_allclose(frozen['detection_scores'], variables['detection_scores'],
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(frozen['detection_boxes'], variables['detection_boxes'],
                               atol=1e-3, rtol=0)


def test_bfloat16_export_agrees_with_float32(export_case, bfloat16_export):
    _, _, version_dir, image_paths = export_case
    image = np.random.RandomState(0).uniform(-120., 130., (300, 300, 3)).astype(np.float32)
    full = run_signature(version_dir, 'detected_model', {'images': image})
    half = run_signature(bfloat16_export, 'detected_model', {'images': image})
    worst = max(np.abs(full['predict%d' % i] - half['predict%d' % i]).max() for i in range(6))
    assert 0 < worst < 0.05, worst
    encoded = [open(path, 'rb').read() for path in image_paths]
    served = run_signature(bfloat16_export, 'serving_default', {'encoded_image': encoded})
    assert served['detection_boxes'].dtype == np.float32
    assert served['num_detections'].shape == (2,)
