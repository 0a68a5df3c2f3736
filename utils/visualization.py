"""Pictures for people: detections drawn on an image, precision-recall curves per class, crops
of the objects of a class.

NumPy + matplotlib only. Figures are built with the object-oriented API on an Agg canvas, so
saving works without a display and without pyplot's global state; only ``show_image`` touches
pyplot, and only when a display exists (``has_display()``).

Boxes are ``[ymin, xmin, ymax, xmax]`` in pixels of the image they are drawn on.
"""
import functools
import io
import os
import sys

import matplotlib
import matplotlib.image
import matplotlib.patches

_NON_INTERACTIVE = ('agg', 'pdf', 'pgf', 'ps', 'svg', 'cairo', 'template')


def _display_available():
    if sys.platform in ('win32', 'darwin'):
        return True
    return bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


if not _display_available():
    # Headless: make sure pyplot, if anyone imports it later, cannot try a GUI backend.
    matplotlib.use('Agg')

import numpy as np  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib import ft2font  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_DPI = 100
_UNDRAWABLE_WARNED = set()


@functools.lru_cache(maxsize=None)
def _characters_of(font_path):
    try:
        return frozenset(ft2font.FT2Font(font_path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


@functools.lru_cache(maxsize=256)
def font_for(text):
    """``FontProperties`` of a font that draws every character of ``text``: matplotlib's own
    first, else any installed one (a CJK class name needs a CJK font); None when none does."""
    needed = {ord(c) for c in text if not c.isspace()}
    default = font_manager.findfont(font_manager.FontProperties())
    for path in [default] + sorted(f.fname for f in font_manager.fontManager.ttflist):
        # Last Resort maps every character to a placeholder box: that is not drawing it.
        if needed <= _characters_of(path) and 'LastResort' not in os.path.basename(path):
            return font_manager.FontProperties(fname=path)
    return None


def drawable(text, fallback):
    """``(text, font properties)`` to draw ``text``; ``(fallback, None)`` when no installed font
    has its characters (matplotlib would draw empty boxes), said once per text on stderr."""
    font = font_for(text)
    if font is not None:
        return text, font
    if text not in _UNDRAWABLE_WARNED:
        _UNDRAWABLE_WARNED.add(text)
        print('warning: no installed font draws %r (install one that does, e.g. Debian\'s '
              'fonts-noto-cjk): pictures show %r instead' % (text, fallback), file=sys.stderr)
    return fallback, None


def has_display():
    """True when figures can be shown on screen (a display and an interactive backend)."""
    backend = matplotlib.get_backend().lower()
    return _display_available() and not any(backend.endswith(name) for name in _NON_INTERACTIVE)


def class_color(label):
    """A stable RGB colour (floats in [0, 1]) for a class id: tab10, cycling."""
    return matplotlib.colormaps['tab10'](int(label) % 10)[:3]


def _new_figure(width_px, height_px):
    figure = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure


def detections_figure(image, boxes, classes, scores, class_names, title=None, max_side=None):
    """A figure of ``image`` (uint8 ``[H, W, 3]`` RGB or ``[H, W]``) with its detections.

    ``boxes [D, 4]`` pixels, ``classes [D]`` ids 1..N (names from ``class_names``, id i is
    ``class_names[i - 1]``; unknown ids print as the number), ``scores [D]`` (None: boxes
    labelled by their class only, e.g. ground truth). The figure has the image's own size (one
    image pixel = one figure pixel) so small images stay legible, or with ``max_side`` at most
    that many pixels on its longer side.
    """
    image = np.asarray(image)
    height, width = image.shape[:2]
    scale = min(1., float(max_side) / max(height, width)) if max_side else 1.
    figure = _new_figure(max(width * scale, 64), max(height * scale, 64))
    axes = figure.add_axes([0, 0, 1, 1])
    # Continuous pixel frame: the image spans [0, W] x [0, H], so box xmax = W is the right edge.
    axes.imshow(image, cmap='gray' if image.ndim == 2 else None, extent=(0, width, height, 0),
                interpolation='nearest')
    axes.set_axis_off()
    font_size = max(6, min(12, width * scale / 40.))
    label_height = font_size * 1.6 * _DPI / 72.   # pixels of a one-line label with its pad
    if scores is None:
        scores = [None] * len(classes)
    for box, label, score in zip(np.asarray(boxes).reshape(-1, 4), classes, scores):
        ymin, xmin, ymax, xmax = [float(v) for v in box]
        color = class_color(label)
        axes.add_patch(matplotlib.patches.Rectangle(
            (xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color, linewidth=2))
        label = int(label)
        name = class_names[label - 1] if 0 < label <= len(class_names) else str(label)
        name, font = drawable(name, 'class %d' % label)
        # Above the box, or inside it when the box touches the top edge (no room above).
        inside = ymin * scale < label_height
        text = name if score is None else '%s %.2f' % (name, score)
        axes.text(xmin, ymin, text, color='white', fontsize=font_size, fontproperties=font,
                  verticalalignment='top' if inside else 'bottom', clip_on=True,
                  bbox=dict(facecolor=color, edgecolor=color, pad=1, alpha=0.8))
    if title:
        title, font = drawable(title, title.encode('ascii', 'replace').decode())
        axes.text(2, 2, title, color='white', fontsize=font_size, verticalalignment='top',
                  fontproperties=font, bbox=dict(facecolor='black', alpha=0.5, pad=1))
    return figure


def figure_pixels(figure):
    """The rendered ``figure`` as uint8 ``[H, W, 3]`` RGB."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()


def encode_png(pixels):
    """uint8 ``[H, W, 3]`` RGB → PNG bytes."""
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, pixels, format='png')
    return buffer.getvalue()


def save_detections(path, image, boxes, classes, scores, class_names, title=None):
    """Draws the detections (see ``detections_figure``) and saves a PNG at ``path``; returns path."""
    figure = detections_figure(image, boxes, classes, scores, class_names, title)
    figure.savefig(path, dpi=_DPI, format='png')
    return path


def crop_box(image, box, margin=0):
    """The part of ``image`` (uint8 ``[H, W, 3]``) inside ``box`` (``[ymin, xmin, ymax, xmax]``
    pixels) widened by ``margin`` pixels each side, clipped to the image, at least 1 x 1."""
    height, width = image.shape[:2]
    ymin, xmin, ymax, xmax = np.round(np.asarray(box, np.float64) +
                                      [-margin, -margin, margin, margin]).astype(int)
    ymin, xmin = min(max(ymin, 0), height - 1), min(max(xmin, 0), width - 1)
    return image[ymin:max(min(ymax, height), ymin + 1), xmin:max(min(xmax, width), xmin + 1)]


def save_crop_sheet(path, crops, captions, title, columns=10, cell_px=96):
    """Saves the image ``crops`` (uint8 ``[h, w, 3]`` each, any size) side by side on a grid of
    ``columns``, each scaled into a ``cell_px`` square with its caption below; returns ``path``.
    A contact sheet: what the objects of one class look like."""
    rows = max(1, -(-len(crops) // columns))
    figure = _new_figure(columns * cell_px, rows * (cell_px + 14) + 24)
    figure.suptitle(title, fontsize=9)
    for index, (crop, caption) in enumerate(zip(crops, captions)):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(crop, interpolation='nearest')
        axes.set_axis_off()
        axes.annotate(caption, xy=(0.5, 0), xycoords='axes fraction', xytext=(0, -2),
                      textcoords='offset points', ha='center', va='top', fontsize=7)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=1 - 30. / figure.bbox.height,
                           wspace=0.08, hspace=0.35)
    figure.savefig(path, dpi=_DPI, format='png')
    return path


def show_image(path):
    """Shows a saved picture in a window (blocks until closed); no-op without a display."""
    if not has_display():
        return False
    import matplotlib.pyplot as plt
    plt.figure(os.path.basename(path))
    plt.imshow(plt.imread(path))
    plt.axis('off')
    plt.show()
    return True


def save_precision_recall(path, precision, recall, class_name, ap_voc07=None, ap_voc2010=None):
    """Saves one class's precision-recall curve (``precision [D]``, ``recall [D]``) as a PNG."""
    figure = _new_figure(480, 400)
    axes = figure.add_subplot(1, 1, 1)
    if len(recall):
        # Start the curve at recall 0 so the first detection's precision is visible as a step.
        axes.step(np.concatenate(([0.], recall)), np.concatenate(([precision[0]], precision)),
                  where='post', color=class_color(1))
    title = class_name
    if ap_voc07 is not None:
        title += '  AP07 %.3f' % ap_voc07
    if ap_voc2010 is not None:
        title += '  AP10+ %.3f' % ap_voc2010
    axes.set_title(title)
    axes.set_xlabel('recall')
    axes.set_ylabel('precision')
    axes.set_xlim(0., 1.)
    axes.set_ylim(0., 1.05)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI, format='png')
    return path


def save_learning_curve(path, series, title, ylabel='mAP'):
    """Saves the curves ``series`` (``{label: [(step, value)]}``, e.g. mAP against the global
    step of each evaluated checkpoint) in one PNG; labels without points are left out."""
    figure = _new_figure(760, 400)
    axes = figure.add_subplot(1, 1, 1)
    for index, (label, points) in enumerate(item for item in series.items() if item[1]):
        steps, values = zip(*points)
        axes.plot(steps, values, marker='o', markersize=3, color=class_color(index + 1),
                  label=label)
    axes.set_title(title)
    axes.set_xlabel('training step')
    axes.set_ylabel(ylabel)
    axes.set_ylim(0., 1.)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        # Beside the plot: the curves climb into every corner of it.
        axes.legend(loc='center left', bbox_to_anchor=(1.01, 0.5), fontsize='small')
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI, format='png')
    return path


def safe_filename(name):
    """A class or image name made safe as a file name component."""
    cleaned = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in str(name))
    return cleaned or '_'


def save_precision_recall_curves(output_dir, results):
    """One ``pr_<class>.png`` per class with ground truth from ``VOCMetric.evaluate()`` results.

    Returns the list of written paths.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for name, entry in results['classes'].items():
        if entry['ap_voc07'] is None:
            continue
        path = os.path.join(output_dir, 'pr_%s.png' % safe_filename(name))
        paths.append(save_precision_recall(path, entry['precision'], entry['recall'], name,
                                           entry['ap_voc07'], entry['ap_voc2010']))
    return paths
