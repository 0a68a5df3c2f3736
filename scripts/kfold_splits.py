"""K-fold split lists for auditing training labels, and the merge of the folds' detections.

A model audits its own training labels badly (it learnt them, errors included). K-fold
predictions fix that: split the training images into K folds, train K models each on the other
folds, let each predict its held-out fold, and audit the whole split with those predictions.

    # 1. the split lists: ImageSets/Main/fold<k>_train.txt and fold<k>_heldout.txt
    python scripts/kfold_splits.py --dataset_dir=Images/sample_vehicles --split=train --folds=5
    # 2. per fold k (0..K-1): convert both lists, train on fold<k>_train, predict fold<k>_heldout
    python datasets/write_dataset/dataset_to_tfrecords.py --dataset_dir=Images/sample_vehicles \\
        --output_dir=Images/tfrecords/kfold --dataset_name=vehicle --split=fold0_train
    python datasets/write_dataset/dataset_to_tfrecords.py --dataset_dir=Images/sample_vehicles \\
        --output_dir=Images/tfrecords/kfold --dataset_name=vehicle --split=fold0_heldout
    python train_ssd_network.py --train_model_dir=output/kfold/0 \\
        --dataset_dir=Images/tfrecords/kfold --dataset_name=vehicle --train_or_test=fold0_train \\
        <your training flags>
    python eval_ssd_network.py --ckpt_path=output/kfold/0 --dataset_dir=Images/tfrecords/kfold \\
        --dataset_name=vehicle --split=fold0_heldout --output_dir=output/kfold/0/eval
    # 3. one detections file for the whole split, and the audit
    python scripts/kfold_splits.py --merge_detections=output/kfold/0/eval/detections.json,...\\
        --merged_file=output/kfold/detections.json
    python audit_labels.py --dataset_dir=Images/tfrecords/kfold --dataset_name=vehicle \\
        --split=train --detections_file=output/kfold/detections.json --out_of_fold

(``--split=train`` in the audit needs the whole split converted too:
``dataset_to_tfrecords.py ... --split=train``.) Cost: K trainings, each on (K-1)/K of the
images: K times one training run. On a 2-core Intel Xeon Ice Lake-SP (family 6, model 106),
measured 2026-12-08 on a machine shared with other sessions, one training of the demo's
width-0.125 model (2000 steps, batch 8) took 33 min: about 2.8 h for K = 5. The full-width
recipe's 1600 steps took 90-106 min per run on other 2-core CPUs without AMX (bench/REPORT.md;
not measured on that Ice Lake): about 8-9 h for K = 5. On a GPU: not measured.

Folds are a seeded shuffle of the split's ids dealt round-robin, so their sizes differ by at
most one; the same ``--seed`` gives the same folds.
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402

from utils import cli  # noqa: E402
from utils import files  # noqa: E402
from utils import voc_metric  # noqa: E402
from utils.errors import ToolkitError  # noqa: E402


class KFoldError(ToolkitError):
    """A split list or a detections file that cannot be used (one line, exit status 1)."""


def define_flags():
    flag_set = cli.FlagSet()
    flag_set.group('Split lists')
    flag_set.string('dataset_dir', None, 'VOC-layout folder whose ImageSets/Main/<split>.txt '
                    'is divided; the fold lists are written beside it.')
    flag_set.string('split', 'train', 'Split list to divide into folds.')
    flag_set.integer('folds', 5, 'Number of folds K (>= 2).')
    flag_set.integer('seed', 0, 'Seed of the shuffle before the ids are dealt to the folds.')
    flag_set.group('Merging the folds\' detections')
    flag_set.string('merge_detections', None, 'Comma-separated detections.json files (one per '
                    'held-out fold) to merge instead of writing split lists.')
    flag_set.string('merged_file', None, 'Where the merged detections file goes.')
    return flag_set


def fold_lists(image_ids, folds, seed=0):
    """``image_ids`` (list) → list of K ``(train ids, held-out ids)``, each sorted; every id is
    held out exactly once."""
    order = np.random.RandomState(seed).permutation(len(image_ids))
    members = [sorted(image_ids[i] for i in order[k::folds]) for k in range(folds)]
    return [(sorted(i for j, fold in enumerate(members) if j != k for i in fold), members[k])
            for k in range(folds)]


def write_fold_lists(dataset_dir, split, folds, seed=0):
    """Writes ``fold<k>_train.txt`` and ``fold<k>_heldout.txt`` beside ``<split>.txt``; returns
    their paths."""
    folder = os.path.join(dataset_dir, 'ImageSets', 'Main')
    source = os.path.join(folder, split + '.txt')
    try:
        with open(source) as f:
            ids = [line.split()[0] for line in f if line.strip()]
    except OSError as e:
        raise KFoldError('%s: cannot read the split list (%s)' % (source, e.strerror or e))
    if len(ids) < folds:
        raise KFoldError('%s lists %d images, fewer than --folds=%d' % (source, len(ids), folds))
    paths = []
    for k, (train, held_out) in enumerate(fold_lists(ids, folds, seed)):
        for name, members in (('fold%d_train' % k, train), ('fold%d_heldout' % k, held_out)):
            path = os.path.join(folder, name + '.txt')
            files.write_text_atomically(path, ''.join(i + '\n' for i in members))
            paths.append(path)
    return paths


def merge_detections(paths, output):
    """One detections file of every image of ``paths`` (each image in one file only; the same
    class names)."""
    merged, names = {}, None
    for path in paths:
        images, class_names = voc_metric.read_detections_file(path)
        if names is not None and class_names is not None and list(class_names) != names:
            raise KFoldError('%s: class_names %s differ from %s' % (path, class_names, names))
        names = list(class_names) if class_names is not None else names
        for name, entry in images.items():
            if name in merged:
                raise KFoldError('%s: image %s is also in an earlier file: the held-out folds '
                                 'must not overlap' % (path, name))
            merged[name] = dict(entry, image=name)
    voc_metric.write_detections_file(output, [merged[name] for name in sorted(merged)], names)
    return len(merged)


def _run(options):
    if options.merge_detections:
        if not options.merged_file:
            raise cli.UsageError('--merged_file is required with --merge_detections')
        paths = [p for p in options.merge_detections.split(',') if p]
        count = merge_detections(paths, options.merged_file)
        print('merged %d images of %d files into %s' % (count, len(paths), options.merged_file))
        return 0
    if not options.dataset_dir:
        raise cli.UsageError('--dataset_dir is required (or --merge_detections)')
    if options.folds < 2:
        raise cli.UsageError('--folds must be >= 2, got %d' % options.folds)
    for path in write_fold_lists(options.dataset_dir, options.split, options.folds,
                                 options.seed):
        print('wrote %s' % path)
    return 0


def main(argv=None):
    return cli.run(argv, define_flags(), __doc__, _run)


if __name__ == '__main__':
    sys.exit(main())
