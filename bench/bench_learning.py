"""Learning check: trains the reduced-width SSD300 from scratch on generated sample data and prints
steps, minutes and mAP@0.5 on the held-out generated images.

    python bench/bench_learning.py                      # the demo settings (below)
    python bench/bench_learning.py --max_number_of_steps=300 --width_multiplier=0.125

Generates ``--num_images`` images with ``datasets/write_dataset/sample_data.py`` (80 % train,
20 % test), converts both splits to TFRecords, runs ``train_ssd_network.py`` exactly as a user
would, then scores the test split with the inference graph of ``model/inference.py`` and the VOC
metric of ``utils/voc_metric.py`` (boxes in pixels of each original image).
"""
import os
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from utils import tf_logging  # noqa: E402  (imports no TensorFlow)

tf_logging.start_tool(__name__)  # as a script: no TensorFlow C++ log lines

import tensorflow.compat.v1 as tf  # noqa: E402

from bench import common  # noqa: E402
from utils import cli  # noqa: E402



def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``); the training ones default to the demo's."""
    flag_set = cli.FlagSet()
    flag_set.group('Data')
    flag_set.string('work_dir', None, 'Folder for data and checkpoints (default: a temp folder).')
    flag_set.integer('num_images', 300, 'Generated images (80 % train, 20 % held-out test).')
    flag_set.integer('seed', 0, 'Seed of the generated images and of the training (--seed).')
    flag_set.group('Training (the settings the demo uses)')
    flag_set.float('width_multiplier', 0.125, 'Width of the reduced SSD300.')
    flag_set.integer('batch_size', 8, 'Training batch size.')
    flag_set.string('optimizer', 'adam', 'Optimizer.')
    flag_set.float('learning_rate', 0.002, 'Initial learning rate.')
    flag_set.string('learning_rate_decay_type', 'polynomial', 'fixed, exponential or polynomial.')
    flag_set.float('end_learning_rate', 0.0001, 'Final learning rate of the polynomial decay.')
    flag_set.float('weight_decay', 0.0001, 'L2 weight decay.')
    flag_set.integer('max_number_of_steps', 900, 'Training steps.')
    flag_set.boolean('zoom_out', False, 'Zoom-out augmentation (the trainer flag).')
    flag_set.boolean('photometric_distortion', False, 'Colour distortion (the trainer flag); the '
                     'generated classes differ by colour.')
    flag_set.string('weights_initializer', 'he', 'Trainer flag: he (for training from scratch).')
    flag_set.group('Evaluation')
    flag_set.float('select_threshold', 0.01, 'Score threshold of the detections scored by mAP.')
    return flag_set


def prepare_data(options, work_dir):
    """Generated VOC folder -> TFRecords (splits train and test); returns the TFRecords folder."""
    from datasets.write_dataset import dataset_to_tfrecords, sample_data
    voc_dir = os.path.join(work_dir, 'sample_voc')
    tfrecords_dir = os.path.join(work_dir, 'tfrecords')
    if not os.path.isdir(tfrecords_dir):
        sample_data.generate_voc_dataset(voc_dir, num_images=options.num_images, seed=options.seed)
        for split in ('train', 'test'):
            dataset_to_tfrecords.convert(voc_dir, tfrecords_dir, 'vehicle', split=split)
    return tfrecords_dir


def train(options, tfrecords_dir, train_dir):
    """Runs the trainer CLI; returns wall-clock minutes."""
    command = [sys.executable, os.path.join(REPO_ROOT, 'train_ssd_network.py'),
               '--train_model_dir=%s' % train_dir, '--dataset_dir=%s' % tfrecords_dir,
               '--dataset_name=vehicle', '--train_or_test=train', '--clone_on_cpu',
               '--width_multiplier=%g' % options.width_multiplier,
               '--batch_size=%d' % options.batch_size, '--optimizer=%s' % options.optimizer,
               '--learning_rate=%g' % options.learning_rate,
               '--learning_rate_decay_type=%s' % options.learning_rate_decay_type,
               '--end_learning_rate=%g' % options.end_learning_rate,
               # Polynomial decay reaches its end rate at the last step.
               '--num_epochs_per_decay=%g' % _epochs(options, tfrecords_dir),
               '--weight_decay=%g' % options.weight_decay,
               '--zoom_out=%s' % options.zoom_out,
               '--photometric_distortion=%s' % options.photometric_distortion,
               '--weights_initializer=%s' % options.weights_initializer,
               '--max_number_of_steps=%d' % options.max_number_of_steps, '--seed=%d' % options.seed,
               '--log_every_n_steps=50', '--save_interval_secs=600', '--save_summaries_secs=600']
    start = time.time()
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    return (time.time() - start) / 60.0


def _epochs(options, tfrecords_dir):
    from datasets import dataset_factory
    spec = dataset_factory.get_dataset('vehicle', 'train', tfrecords_dir)
    return options.max_number_of_steps * options.batch_size / float(spec.num_samples)


def evaluate(options, tfrecords_dir, train_dir):
    """mAP@0.5 (VOC07 11-point and VOC2010+ area) of the newest checkpoint on the test split."""
    from datasets import dataset_factory, input_pipeline, record_check
    from model import inference
    from utils import voc_metric
    spec = dataset_factory.get_dataset('vehicle', 'test', tfrecords_dir)
    with tf.Graph().as_default(), record_check.naming_corrupt_records(spec.data_sources):
        net, info, prefix = inference.load_model(train_dir)
        example = tf.data.make_one_shot_iterator(
            input_pipeline.make_dataset(spec, shuffle=False, num_epochs=1)).get_next()
        image, bbox_img = inference.preprocess_for_detection(example['image'], net,
                                                             info['model_name'])
        detections = inference.detect(net, image[None], example['shape'][None, :2],
                                      select_threshold=options.select_threshold, bbox_img=bbox_img)
        metric = voc_metric.VOCMetric(info['class_names'])
        with tf.Session() as sess:
            inference.restore(sess, prefix)
            fetches = [example, {k: detections[k] for k in inference.DETECTION_KEYS}]
            while True:
                try:
                    ex, det = sess.run(fetches)
                except tf.errors.OutOfRangeError:
                    break
                height, width = ex['shape'][:2]
                n = det['num_detections'][0]
                metric.add(ex['filename'], ex['bboxes'] * [height, width, height, width],
                           ex['labels'], ex['difficult'], det['detection_boxes'][0, :n],
                           det['detection_scores'][0, :n], det['detection_classes'][0, :n])
    return metric.evaluate()


def _benchmark(options):
    work_dir = options.work_dir or tempfile.mkdtemp(prefix='bench_learning_')
    tfrecords_dir = prepare_data(options, work_dir)
    train_dir = os.path.join(work_dir, 'train')
    minutes = train(options, tfrecords_dir, train_dir)
    results = evaluate(options, tfrecords_dir, train_dir)
    note = ('width %g, batch %d, %s lr %g (%s), zoom_out %s, photometric %s, %s init, %d steps, '
            '%d generated images' % (options.width_multiplier, options.batch_size, options.optimizer,
                        options.learning_rate, options.learning_rate_decay_type, options.zoom_out,
                        options.photometric_distortion,
                        options.weights_initializer, options.max_number_of_steps, options.num_images))
    common.report('learning_steps', options.max_number_of_steps, 'steps', note)
    common.report('learning_train_minutes', minutes, 'min', note)
    common.report('learning_map_voc07', results['map_voc07'], 'mAP@0.5', 'held-out test split')
    common.report('learning_map_voc2010', results['map_voc2010'], 'mAP@0.5', 'held-out test split')
    for name, entry in sorted(results['classes'].items()):
        print('  %-12s AP07 %s (%d objects)' % (name, entry['ap_voc07'], entry['num_positives']))
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
