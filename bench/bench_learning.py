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

import tensorflow.compat.v1 as tf  # noqa: E402

from bench import common  # noqa: E402

flags = tf.app.flags
# --- Data ---
flags.DEFINE_string('work_dir', None, 'Folder for data and checkpoints (default: a temp folder).')
flags.DEFINE_integer('num_images', 300, 'Generated images (80 % train, 20 % held-out test).')
flags.DEFINE_integer('seed', 0, 'Seed of the generated images.')
# --- Training (the settings the demo uses) ---
flags.DEFINE_float('width_multiplier', 0.125, 'Width of the reduced SSD300.')
flags.DEFINE_integer('batch_size', 8, 'Training batch size.')
flags.DEFINE_string('optimizer', 'adam', 'Optimizer.')
flags.DEFINE_float('learning_rate', 0.002, 'Initial learning rate.')
flags.DEFINE_string('learning_rate_decay_type', 'polynomial', 'fixed, exponential or polynomial.')
flags.DEFINE_float('end_learning_rate', 0.0001, 'Final learning rate of the polynomial decay.')
flags.DEFINE_float('weight_decay', 0.0001, 'L2 weight decay.')
flags.DEFINE_integer('max_number_of_steps', 900, 'Training steps.')
flags.DEFINE_boolean('zoom_out', False, 'Zoom-out augmentation (the trainer flag).')
flags.DEFINE_boolean('photometric_distortion', False, 'Colour distortion (the trainer flag); '
                     'the generated classes differ by colour.')
flags.DEFINE_string('weights_initializer', 'he', 'Trainer flag: he (for training from scratch).')
# --- Evaluation ---
flags.DEFINE_float('select_threshold', 0.01, 'Score threshold of the detections scored by mAP.')
FLAGS = flags.FLAGS


def prepare_data(work_dir):
    """Generated VOC folder -> TFRecords (splits train and test); returns the TFRecords folder."""
    from datasets.write_dataset import dataset_to_tfrecords, sample_data
    voc_dir = os.path.join(work_dir, 'sample_voc')
    tfrecords_dir = os.path.join(work_dir, 'tfrecords')
    if not os.path.isdir(tfrecords_dir):
        sample_data.generate_voc_dataset(voc_dir, num_images=FLAGS.num_images, seed=FLAGS.seed)
        for split in ('train', 'test'):
            dataset_to_tfrecords.convert(voc_dir, tfrecords_dir, 'vehicle', split=split)
    return tfrecords_dir


def train(tfrecords_dir, train_dir):
    """Runs the trainer CLI; returns wall-clock minutes."""
    command = [sys.executable, os.path.join(REPO_ROOT, 'train_ssd_network.py'),
               '--train_model_dir=%s' % train_dir, '--dataset_dir=%s' % tfrecords_dir,
               '--dataset_name=vehicle', '--train_or_test=train', '--clone_on_cpu',
               '--width_multiplier=%g' % FLAGS.width_multiplier,
               '--batch_size=%d' % FLAGS.batch_size, '--optimizer=%s' % FLAGS.optimizer,
               '--learning_rate=%g' % FLAGS.learning_rate,
               '--learning_rate_decay_type=%s' % FLAGS.learning_rate_decay_type,
               '--end_learning_rate=%g' % FLAGS.end_learning_rate,
               # Polynomial decay reaches its end rate at the last step.
               '--num_epochs_per_decay=%g' % _epochs(tfrecords_dir),
               '--weight_decay=%g' % FLAGS.weight_decay,
               '--zoom_out=%s' % FLAGS.zoom_out,
               '--photometric_distortion=%s' % FLAGS.photometric_distortion,
               '--weights_initializer=%s' % FLAGS.weights_initializer,
               '--max_number_of_steps=%d' % FLAGS.max_number_of_steps,
               '--log_every_n_steps=50', '--save_interval_secs=600', '--save_summaries_secs=600']
    start = time.time()
    subprocess.run(command, cwd=REPO_ROOT, check=True)
    return (time.time() - start) / 60.0


def _epochs(tfrecords_dir):
    from datasets import dataset_factory
    spec = dataset_factory.get_dataset('vehicle', 'train', tfrecords_dir)
    return FLAGS.max_number_of_steps * FLAGS.batch_size / float(spec.num_samples)


def evaluate(tfrecords_dir, train_dir):
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
                                      select_threshold=FLAGS.select_threshold, bbox_img=bbox_img)
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


def main(_):
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix='bench_learning_')
    tfrecords_dir = prepare_data(work_dir)
    train_dir = os.path.join(work_dir, 'train')
    minutes = train(tfrecords_dir, train_dir)
    results = evaluate(tfrecords_dir, train_dir)
    note = ('width %g, batch %d, %s lr %g (%s), zoom_out %s, photometric %s, %s init, %d steps, %d generated '
            'images' % (FLAGS.width_multiplier, FLAGS.batch_size, FLAGS.optimizer,
                        FLAGS.learning_rate, FLAGS.learning_rate_decay_type, FLAGS.zoom_out,
                        FLAGS.photometric_distortion,
                        FLAGS.weights_initializer, FLAGS.max_number_of_steps, FLAGS.num_images))
    common.report('learning_steps', FLAGS.max_number_of_steps, 'steps', note)
    common.report('learning_train_minutes', minutes, 'min', note)
    common.report('learning_map_voc07', results['map_voc07'], 'mAP@0.5', 'held-out test split')
    common.report('learning_map_voc2010', results['map_voc2010'], 'mAP@0.5', 'held-out test split')
    for name, entry in sorted(results['classes'].items()):
        print('  %-12s AP07 %s (%d objects)' % (name, entry['ap_voc07'], entry['num_positives']))
    return 0


if __name__ == '__main__':
    sys.exit(tf.app.run(main))
