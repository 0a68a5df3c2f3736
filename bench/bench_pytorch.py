"""The same SSD-VGG300 in PyTorch, as the yardstick for our TensorFlow figures.

    python bench/bench_pytorch.py [--repeats=5] [--train_repeats=3] [--precision=both]

Builds SSD300 layer for layer as nets/nets_model/ssd_vgg_300.py does (VGG-16 conv1-conv5 with
pool5 3x3/1, dilated conv6, conv7, extra blocks 8-11, L2-normalised conv4_3 with a learnable
scale, 3x3 class and box heads with 4/6/6/6/4/4 anchors: 8732 anchors, 21 classes), and times:
- the forward pass at batch 1 and 8 (float32, and bfloat16 under ``torch.autocast``);
- a batch-8 training step: forward, softmax cross-entropy with 3:1 hard-negative mining plus
  smooth-L1 on the matched anchors, backward and the trainer's RMSProp update (momentum, weight
  decay on the convolution weights), on random targets with the positive share of real SSD
  training (~1 %). Our trainer's step also reads its input pipeline,
  which runs ahead in parallel (``bench_training.py``: > 100x faster than the step).
Tensors are channels-last (oneDNN's preferred layout for convolutions on the CPU). PyTorch is
not a dependency of the toolkit: install the CPU wheel into the venv to run this (``pip install
torch==2.13.0``, which takes the machine's local CPU wheel); without it the script says so and
exits 0 with no figures. ``bench/run_all.py`` runs it after our own benchmarks and writes the
TensorFlow / PyTorch ratios into the report.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from utils import cli  # noqa: E402
from utils import cpu_features  # noqa: E402

NUM_CLASSES = 21
ANCHORS_PER_CELL = (4, 6, 6, 6, 4, 4)
POSITIVE_FRACTION = 0.01
NEGATIVE_RATIO = 3
# The trainer's defaults (train_ssd_network.py; a test keeps them equal): RMSProp with decay 0.9,
# momentum 0.9 and epsilon 1.0, and an L2 weight decay of 0.0005 on the convolution weights.
RMSPROP_DECAY, RMSPROP_MOMENTUM, RMSPROP_EPSILON, WEIGHT_DECAY = 0.9, 0.9, 1.0, 0.0005


def build_ssd300(torch, num_classes=NUM_CLASSES):
    """SSD300-VGG16 as a ``torch.nn.Module`` returning (class logits, box offsets), each
    concatenated over the six feature layers: ``[B, 8732, num_classes]`` and ``[B, 8732, 4]``."""
    nn = torch.nn

    def conv(cin, cout, k=3, **kwargs):
        return [nn.Conv2d(cin, cout, k, padding=kwargs.pop('padding', k // 2), **kwargs),
                nn.ReLU(inplace=True)]

    def vgg_block(cin, cout, repeats):
        layers = conv(cin, cout)
        for _ in range(repeats - 1):
            layers += conv(cout, cout)
        return layers

    class SSD300(nn.Module):
        def __init__(self):
            super().__init__()
            # 300 -> 150 -> 75 -> 38 (ceil, as TF's SAME pooling) -> 19.
            self.to_conv4 = nn.Sequential(
                *vgg_block(3, 64, 2), nn.MaxPool2d(2, 2),
                *vgg_block(64, 128, 2), nn.MaxPool2d(2, 2),
                *vgg_block(128, 256, 3), nn.MaxPool2d(2, 2, ceil_mode=True),
                *vgg_block(256, 512, 3))
            self.l2_scale = nn.Parameter(torch.full((1, 512, 1, 1), 20.0))
            self.to_conv7 = nn.Sequential(
                nn.MaxPool2d(2, 2), *vgg_block(512, 512, 3), nn.MaxPool2d(3, 1, padding=1),
                *conv(512, 1024, padding=6, dilation=6), *conv(1024, 1024, k=1))
            self.extras = nn.ModuleList([
                nn.Sequential(*conv(1024, 256, k=1), *conv(256, 512, stride=2)),   # 10x10
                nn.Sequential(*conv(512, 128, k=1), *conv(128, 256, stride=2)),    # 5x5
                nn.Sequential(*conv(256, 128, k=1), *conv(128, 256, padding=0)),   # 3x3
                nn.Sequential(*conv(256, 128, k=1), *conv(128, 256, padding=0))])  # 1x1
            channels = (512, 1024, 512, 256, 256, 256)
            self.cls_heads = nn.ModuleList(nn.Conv2d(c, a * num_classes, 3, padding=1)
                                           for c, a in zip(channels, ANCHORS_PER_CELL))
            self.box_heads = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1)
                                           for c, a in zip(channels, ANCHORS_PER_CELL))

        def forward(self, x):
            conv4 = self.to_conv4(x)
            norm = conv4 * torch.rsqrt((conv4 * conv4).sum(1, keepdim=True).clamp_min(1e-12))
            features = [norm * self.l2_scale, self.to_conv7(conv4)]
            for block in self.extras:
                features.append(block(features[-1]))
            batch = x.shape[0]
            logits = [h(f).permute(0, 2, 3, 1).reshape(batch, -1, num_classes)
                      for h, f in zip(self.cls_heads, features)]
            boxes = [h(f).permute(0, 2, 3, 1).reshape(batch, -1, 4)
                     for h, f in zip(self.box_heads, features)]
            return torch.cat(logits, 1), torch.cat(boxes, 1)

    return SSD300()


def ssd_loss(torch, logits, boxes, gclasses, gboxes):
    """Softmax cross-entropy on positives and the 3x hardest negatives, plus smooth L1 on the
    positives' offsets, divided by the batch size (as nets/ssd_losses.py)."""
    functional = torch.nn.functional
    logits, boxes = logits.float(), boxes.float()
    cross_entropy = functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             gclasses.reshape(-1), reduction='none')
    positive = gclasses.reshape(-1) > 0
    num_negatives = int(positive.sum()) * NEGATIVE_RATIO
    hardest = torch.topk(cross_entropy.masked_fill(positive, float('-inf')), num_negatives).values
    localisation = functional.smooth_l1_loss(boxes.reshape(-1, 4)[positive],
                                             gboxes.reshape(-1, 4)[positive], reduction='sum')
    batch = logits.shape[0]
    return (cross_entropy[positive].sum() + hardest.sum() + localisation) / batch


def bench_forward(torch, model, precision, repeats, batch_sizes=(1, 8)):
    model.eval()
    for batch in batch_sizes:
        images = torch.randn(batch, 3, 300, 300).contiguous(memory_format=torch.channels_last)

        def run():
            with torch.no_grad(), torch.autocast('cpu', torch.bfloat16,
                                                 enabled=precision == 'bfloat16'):
                model(images)
        seconds = common.median_seconds(run, repeats=repeats)
        note = 'PyTorch %s, SSD-VGG300, width 1.0, %d classes, %s, channels-last' % (
            torch.__version__, NUM_CLASSES, precision if precision == 'float32' else 'bf16 autocast')
        common.report('torch_forward_%s_batch%d' % (precision, batch), seconds, 's/batch', note)


def trainer_like_optimizer(torch, model, learning_rate=1e-4):
    """RMSProp as the trainer configures it by default, with its weight decay on the convolution
    weights only (slim regularises neither biases nor conv4_3's normalisation scale): the same
    update work per step as our training step's."""
    weights = [module.weight for module in model.modules()
               if isinstance(module, torch.nn.Conv2d)]
    others = [p for p in model.parameters() if all(p is not w for w in weights)]
    return torch.optim.RMSprop([{'params': weights, 'weight_decay': WEIGHT_DECAY},
                                {'params': others}], lr=learning_rate, alpha=RMSPROP_DECAY,
                               eps=RMSPROP_EPSILON, momentum=RMSPROP_MOMENTUM)


def bench_training(torch, model, precision, repeats, batch=8):
    model.train()
    optimizer = trainer_like_optimizer(torch, model)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 300, 300, generator=generator).contiguous(
        memory_format=torch.channels_last)
    num_anchors = 8732
    gclasses = torch.where(torch.rand(batch, num_anchors, generator=generator) < POSITIVE_FRACTION,
                           torch.randint(1, NUM_CLASSES, (batch, num_anchors), generator=generator),
                           torch.zeros(batch, num_anchors, dtype=torch.long))
    gboxes = torch.randn(batch, num_anchors, 4, generator=generator)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast('cpu', torch.bfloat16, enabled=precision == 'bfloat16'):
            logits, boxes = model(images)
        ssd_loss(torch, logits, boxes, gclasses, gboxes).backward()
        optimizer.step()
    seconds = common.median_seconds(step, repeats=repeats)
    note = 'PyTorch %s, width 1, batch %d, every layer, rmsprop (momentum, weight decay), %s' % (
        torch.__version__, batch, precision if precision == 'float32' else 'bf16 autocast')
    common.report('torch_training_%s_seconds_per_step' % precision, seconds, 's/step', note)


def define_flags():
    """The benchmark's flags (a ``cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Measurement')
    flag_set.integer('repeats', 5, 'Timed forward passes (the median is reported).')
    flag_set.integer('train_repeats', 3, 'Timed training steps (the median is reported).')
    flag_set.enum('precision', 'both', cpu_features.PRECISIONS + ('both',),
                  'Precision timed: float32, bfloat16 (torch.autocast) or both.')
    return flag_set


def _benchmark(options):
    if options.repeats < 1 or options.train_repeats < 1:
        raise cli.UsageError('--repeats and --train_repeats must be >= 1')
    try:
        import torch
    except ImportError:
        print('PyTorch is not installed: nothing to compare against (pip install torch==2.13.0 '
              'takes the CPU wheel on this machine).')
        return 0
    torch.manual_seed(0)
    model = build_ssd300(torch).to(memory_format=torch.channels_last)
    precisions = cpu_features.PRECISIONS if options.precision == 'both' else [options.precision]
    for precision in precisions:
        bench_forward(torch, model, precision, options.repeats)
    for precision in precisions:
        bench_training(torch, model, precision, options.train_repeats)
    common.report('torch_peak_memory', common.peak_memory_mb(), 'MiB', 'all of the above')
    return 0


main = cli.make_main(__doc__, define_flags, _benchmark)


if __name__ == '__main__':
    sys.exit(main())
