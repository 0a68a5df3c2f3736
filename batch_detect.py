"""Detects objects in many images with an exported SavedModel, as an Apache Beam pipeline.

    python batch_detect.py --model_dir=export/ssd_vgg_300/1 --input_pattern='photos/*.jpg' \
        --output_path=output/batch/detections.jsonl [--runner=DataflowRunner ...]

Each image the glob matches (a local path or any filesystem Beam reads: gs://, s3://, hdfs://...)
goes through the export's ``serving_default`` signature in Beam's ``RunInference`` (the
TensorFlow model handler), turned upright by its EXIF orientation first. The output is one JSON
line per image, in the format of an entry of ``detector.py --json``'s detections.json:
``{"image": name, "height": H, "width": W, "boxes": [[ymin, xmin, ymax, xmax], ...] (pixels of the
upright image), "scores": [...], "classes": [...]}``, sorted by score; ``--output_path`` is the
file, or with ``--num_shards`` > 1 the prefix of ``<prefix>-SSSSS-of-NNNNN``. Images that cannot
be decoded are reported on stderr, one line each, and left out.

Without ``--runner`` the pipeline runs on this machine (Beam's DirectRunner, as many worker
processes as cores); ``--runner`` and Beam's other pipeline options (``--project``,
``--temp_location``, ``--direct_num_workers``...) pass through to Beam unchanged. Needs the
optional extra: ``pip install --no-deps -r requirements-beam.txt``.

Exit status: 0 when the pipeline ran, 1 when Beam is missing, the model cannot be loaded or no
file matches, 2 for bad flags.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if __name__ == '__main__':  # run as a tool: no TensorFlow C++ log lines in its output
    from utils import tf_logging
    tf_logging.quiet_tensorflow()

from utils import cli  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402

SIGNATURE = 'serving_default'
DETECTION_KEYS = ('image', 'height', 'width', 'boxes', 'scores', 'classes')


class BatchDetectError(ToolkitError):
    """A model, input or Beam problem; the message names it."""


def define_flags():
    """The tool's own flags (a ``utils.cli.FlagSet``); Beam's options are not among them."""
    flag_set = cli.FlagSet()
    flag_set.group('Model')
    flag_set.string('model_dir', None, 'Export version folder (<export_dir>/<model_name>/'
                    '<version>, as export_saved_model.py writes it).')
    flag_set.group('Input and output')
    flag_set.string('input_pattern', None, 'Glob of the images (any filesystem Beam reads).')
    flag_set.string('output_path', None, 'JSON-lines file (or shard prefix with --num_shards).')
    flag_set.integer('num_shards', 1, 'Output files (1: exactly --output_path).')
    flag_set.integer('batch_size', 8, 'Most images in one model call.')
    return flag_set


def split_argv(argv, flag_values):
    """``(the tool's own arguments, Beam's)``: arguments naming one of ``flag_values``' flags
    (``--name``, ``--name=v``, ``--noname``) stay; the others go to Beam's pipeline options."""
    own, beam_args = argv[:1], []
    for arg in argv[1:]:
        name = arg.lstrip('-').split('=', 1)[0]
        known = arg.startswith('-') and (name in flag_values or (
            name.startswith('no') and name[2:] in flag_values))
        (own if known or not arg.startswith('-') else beam_args).append(arg)
    return own, beam_args


def pipeline_options(beam_args):
    """Beam's ``PipelineOptions`` for ``beam_args``; without ``--runner``, the DirectRunner with
    one worker process per core (unless those options are given)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    args = list(beam_args)
    if not any(a.startswith('--runner') for a in args):
        args.append('--runner=DirectRunner')
        if not any(a.startswith('--direct_num_workers') for a in args):
            args.append('--direct_num_workers=%d' % (os.cpu_count() or 1))
        if not any(a.startswith('--direct_running_mode') for a in args):
            args.append('--direct_running_mode=multi_processing')
        if not any(a.startswith('--default_sdk_harness_log_level') for a in args):
            args.append('--default_sdk_harness_log_level=WARNING')
    return PipelineOptions(args)


def entry(name, encoded_size, outputs):
    """One JSON-line dict from ``serving_default``'s outputs for one image (``detection_boxes
    [K, 4]`` pixels, ``detection_scores [K]``, ``detection_classes [K]``, ``num_detections``)."""
    count = int(outputs['num_detections'])
    height, width = encoded_size
    return {'image': name, 'height': int(height), 'width': int(width),
            'boxes': [[float(v) for v in box] for box in outputs['detection_boxes'][:count]],
            'scores': [float(s) for s in outputs['detection_scores'][:count]],
            'classes': [int(c) for c in outputs['detection_classes'][:count]]}


def keyed_image(readable_file):
    """``[((name, height, width), encoded bytes upright)]`` for one matched file (Beam's
    ``ReadableFile``); ``[]`` with one line on stderr for a file that is no readable image."""
    from serving.clients import client
    from utils import image_header
    name = os.path.basename(readable_file.metadata.path)
    try:
        data = client.upright_bytes(readable_file.read(), name)
        size = image_header.image_size(data)
        if size is None:
            raise image_header.ImageHeaderError('no image signature')
    except (ToolkitError, image_header.ImageHeaderError, OSError) as e:
        print('skipped %s: not a readable image (%s)' % (readable_file.metadata.path, e),
              file=sys.stderr, flush=True)
        return []
    import tensorflow as tf
    return [((name, size[1], size[2]), tf.constant(data))]


def serving_default_inference(model, batch, inference_args, model_id=None):
    """``RunInference``'s call of the export's ``serving_default`` on a batch of encoded images
    (string scalar tensors) → one ``PredictionResult`` per image, its inference the signature's
    outputs for that image (NumPy)."""
    import tensorflow as tf
    from apache_beam.ml.inference.base import PredictionResult
    outputs = model.signatures[SIGNATURE](encoded_image=tf.stack(batch), **inference_args)
    outputs = {key: value.numpy() for key, value in outputs.items()}
    return [PredictionResult(example, {key: value[i] for key, value in outputs.items()}, model_id)
            for i, example in enumerate(batch)]


def model_handler(model_dir, batch_size):
    """Beam's TensorFlow model handler for the export's ``serving_default``, keyed by image.

    The handler's own loader reads Keras SavedModels; an export is a TF1-style SavedModel with
    signatures, which ``tf.saved_model.load`` reads, so that is the loader here.
    """
    from apache_beam.ml.inference.base import KeyedModelHandler
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor

    class SavedModelSignatureHandler(TFModelHandlerTensor):
        def load_model(self):
            import tensorflow as tf
            return tf.saved_model.load(self._model_uri)

    return KeyedModelHandler(SavedModelSignatureHandler(
        model_dir, inference_fn=serving_default_inference, min_batch_size=1,
        max_batch_size=batch_size))


def to_json_line(keyed_result):
    (name, height, width), result = keyed_result
    return json.dumps(entry(name, (height, width), result.inference))


def build_pipeline(pipeline, model_dir, input_pattern, output_path, num_shards=1, batch_size=8):
    """Adds the batch detection to ``pipeline`` (a ``beam.Pipeline``)."""
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.ml.inference.base import RunInference
    return (pipeline
            | 'Match' >> fileio.MatchFiles(input_pattern,
                                           empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            | 'Read' >> fileio.ReadMatches(compression=CompressionTypes.UNCOMPRESSED)
            | 'Upright' >> beam.FlatMap(keyed_image)
            | 'Detect' >> RunInference(model_handler(model_dir, batch_size))
            | 'ToJson' >> beam.Map(to_json_line)
            | 'Write' >> beam.io.WriteToText(output_path, num_shards=num_shards,
                                             shard_name_template='' if num_shards == 1 else None))


def _check_flags(options):
    for name in ('model_dir', 'input_pattern', 'output_path'):
        if not getattr(options, name):
            raise cli.UsageError('--%s is required' % name)
    if not os.path.isfile(os.path.join(options.model_dir, 'saved_model.pb')) and \
            '://' not in options.model_dir:
        raise cli.UsageError('--model_dir=%s is not an export version folder (no saved_model.pb)'
                             % options.model_dir)
    if options.num_shards < 1:
        raise cli.UsageError('--num_shards=%d must be >= 1' % options.num_shards)
    if options.batch_size < 1:
        raise cli.UsageError('--batch_size=%d must be >= 1' % options.batch_size)


def _run(options, beam_args):
    _check_flags(options)
    import logging
    # Beam's notices about clients and modules a local run does not use.
    logging.getLogger().setLevel(logging.ERROR)
    try:
        import apache_beam  # noqa: F401  pylint: disable=unused-import
    except ImportError as e:
        raise BatchDetectError('Apache Beam is not installed (%s): pip install --no-deps -r '
                               'requirements-beam.txt' % e)
    import apache_beam as beam
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
            build_pipeline(pipeline, options.model_dir, options.input_pattern,
                           options.output_path, options.num_shards, options.batch_size)
    except (IOError, ValueError, RuntimeError) as e:
        raise BatchDetectError('batch detection of %s with %s failed: %s' % (
            options.input_pattern, options.model_dir, str(e).strip().splitlines()[-1]
            if str(e).strip() else type(e).__name__))
    print('detections of %s written to %s%s' % (
        options.input_pattern, options.output_path,
        '' if options.num_shards == 1 else '-*-of-%05d' % options.num_shards), file=sys.stderr)
    return 0


def main(argv=None):
    """The command line: ``main(['batch_detect.py', '--model_dir=...', ...])`` → exit status."""
    argv = sys.argv if argv is None else argv
    flag_set = define_flags()
    own, beam_args = split_argv(argv, flag_set.values)
    return cli.run(own, flag_set, __doc__, lambda options: _run(options, beam_args))


if __name__ == '__main__':
    sys.exit(main())

