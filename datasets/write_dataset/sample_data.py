"""Generates a small VOC-layout dataset of drawn vehicles (no third-party images), from a seed.

    python datasets/write_dataset/sample_data.py --output_dir=Images/sample_vehicles \\
        --num_images=300 --seed=0

Writes ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and ``ImageSets/Main/{train,test,
trainval}.txt`` (about 80/20 train/test). Images are 300-500 px a side with 1-4 vehicles of the
``vehicle`` classes (Ambulance, Bus, Car, Motorcycle, Truck), each drawn with its own shape AND
colour so that a small SSD learns them in minutes: yellow bus with a row of windows, blue car
with a cabin, green truck with a cargo box, white ambulance with red cross and roof light,
purple motorcycle on two big wheels. Objects span 20-70 % of the image side and barely overlap;
the background is a grey-ish gradient with mild noise.

Boxes are exact: every vehicle is drawn on its own patch, the patch is cropped to the drawn
pixels, and the XML box is that crop in VOC's 1-based inclusive pixels (``xmin = col0 + 1``,
``xmax = col0 + width``). The same seed gives byte-identical files (NumPy's RandomState stream
is frozen; every image has its own generator seeded by (seed, index)).
"""
import os
import sys

if __name__ == '__main__':  # run as a script: make the repository root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import cv2
import numpy as np

from datasets import dataset_config
from datasets.write_dataset import voc_writer
from utils import cli
from utils.errors import ToolkitError

SIZE_RANGE = (300, 500)           # image height and width, pixels (inclusive)
MAX_SIDE_FRACTION = (0.7, 0.55, 0.45, 0.4)  # largest object side for 1, 2, 3, 4 objects
MIN_SIDE_FRACTION = 0.2
MAX_OVERLAP = 0.1                 # intersection / smaller box area, between any two objects
JPEG_QUALITY = 92
_EMPTY = np.array([1, 0, 1], np.uint8)  # patch fill no drawing colour uses (colours are >= 8)
_OUTLINE = (25, 25, 25)
_WHEEL = (30, 30, 30)
_HUB = (170, 170, 170)
_GLASS = (120, 80, 50)           # BGR: dark blue-grey windows


class SampleDataError(ToolkitError):
    """Bad generator arguments; the message names the flag."""


def _wheel(patch, cx, cy, radius):
    cv2.circle(patch, (cx, cy), radius, _WHEEL, -1)
    cv2.circle(patch, (cx, cy), max(1, radius // 2), _HUB, -1)


def _box(patch, x0, y0, x1, y1, colour, line):
    cv2.rectangle(patch, (x0, y0), (x1, y1), colour, -1)
    cv2.rectangle(patch, (x0, y0), (x1, y1), _OUTLINE, line)


def _draw_bus(patch, w, h, colour, line):
    r = max(2, int(0.15 * h))
    _box(patch, 0, 0, w - 1, h - 1 - r, colour, line)
    top, bottom = int(0.15 * h), int(0.45 * h)
    count = 5
    step = (w - 1) / (count + 0.5)
    for i in range(count):  # the long row of windows
        x0 = int(0.35 * step + i * step)
        cv2.rectangle(patch, (x0, top), (x0 + int(0.75 * step), bottom), _GLASS, -1)
    for cx in (int(0.18 * w), int(0.82 * w)):
        _wheel(patch, cx, h - 1 - r, r)


def _draw_car(patch, w, h, colour, line):
    r = max(2, int(0.2 * h))
    waist = int(0.45 * h)
    cabin = np.array([[int(0.18 * w), waist], [int(0.32 * w), 0], [int(0.68 * w), 0],
                      [int(0.85 * w), waist]], np.int32)
    cv2.fillPoly(patch, [cabin], colour)
    cv2.polylines(patch, [cabin], True, _OUTLINE, line)
    glass = np.array([[int(0.27 * w), waist - 2], [int(0.36 * w), int(0.12 * h)],
                      [int(0.64 * w), int(0.12 * h)], [int(0.76 * w), waist - 2]], np.int32)
    cv2.fillPoly(patch, [glass], _GLASS)
    _box(patch, 0, waist, w - 1, h - 1 - r // 2, colour, line)
    for cx in (int(0.22 * w), int(0.78 * w)):
        _wheel(patch, cx, h - 1 - r, r)


def _draw_truck(patch, w, h, colour, line):
    r = max(2, int(0.15 * h))
    cargo = tuple(int(0.6 * c) for c in colour)  # darker green cargo box, lighter cab
    _box(patch, 0, 0, int(0.68 * w), h - 1 - r, cargo, line)
    _box(patch, int(0.71 * w), int(0.3 * h), w - 1, h - 1 - r, colour, line)
    cv2.rectangle(patch, (int(0.78 * w), int(0.38 * h)), (int(0.94 * w), int(0.58 * h)), _GLASS, -1)
    for cx in (int(0.14 * w), int(0.5 * w), int(0.86 * w)):
        _wheel(patch, cx, h - 1 - r, r)


def _draw_ambulance(patch, w, h, colour, line):
    r = max(2, int(0.16 * h))
    roof = int(0.1 * h)
    cv2.rectangle(patch, (int(0.3 * w), 0), (int(0.4 * w), roof), (40, 40, 230), -1)  # red light
    body = np.array([[0, roof], [int(0.78 * w), roof], [w - 1, int(0.45 * h)],
                     [w - 1, h - 1 - r], [0, h - 1 - r]], np.int32)
    cv2.fillPoly(patch, [body], colour)
    cv2.polylines(patch, [body], True, _OUTLINE, line)
    cv2.rectangle(patch, (0, int(0.62 * h)), (w - 1, int(0.7 * h)), (40, 40, 220), -1)
    cx, cy, arm = int(0.38 * w), int(0.42 * h), max(2, int(0.13 * h))
    thick = max(1, arm // 3)
    cv2.rectangle(patch, (cx - arm, cy - thick), (cx + arm, cy + thick), (40, 40, 220), -1)
    cv2.rectangle(patch, (cx - thick, cy - arm), (cx + thick, cy + arm), (40, 40, 220), -1)
    glass = np.array([[int(0.8 * w), int(0.2 * h)], [int(0.95 * w), int(0.45 * h)],
                      [int(0.8 * w), int(0.45 * h)]], np.int32)
    cv2.fillPoly(patch, [glass], _GLASS)
    for cx in (int(0.2 * w), int(0.8 * w)):
        _wheel(patch, cx, h - 1 - r, r)


def _draw_motorcycle(patch, w, h, colour, line):
    r = max(3, min(int(0.3 * h), int(0.22 * w)))
    thick = max(2, h // 14)
    back, front, ground = (r, h - 1 - r), (w - 1 - r, h - 1 - r), h - 1 - r
    seat, bars = (int(0.42 * w), int(0.42 * h)), (int(0.78 * w), 0)
    for a, b in ((back, seat), (seat, (int(0.55 * w), ground)), ((int(0.55 * w), ground), back),
                 (front, bars), (seat, (int(0.7 * w), int(0.35 * h)))):
        cv2.line(patch, a, b, colour, thick)
    cv2.ellipse(patch, (int(0.55 * w), int(0.4 * h)), (max(2, int(0.14 * w)), max(2, int(0.1 * h))),
                0, 0, 360, colour, -1)
    cv2.line(patch, bars, (int(0.7 * w), 0), _OUTLINE, thick)
    for centre in (back, front):
        cv2.circle(patch, centre, r, _WHEEL, max(2, r // 3))
        cv2.circle(patch, centre, max(1, r // 4), _HUB, -1)


# class name -> (drawing function, width/height aspect, body colour BGR)
VEHICLES = {
    'Ambulance': (_draw_ambulance, 1.5, (240, 240, 240)),
    'Bus': (_draw_bus, 2.6, (20, 200, 245)),
    'Car': (_draw_car, 2.0, (200, 90, 30)),
    'Motorcycle': (_draw_motorcycle, 1.5, (170, 40, 160)),
    'Truck': (_draw_truck, 2.2, (50, 175, 50)),
}


def draw_vehicle(class_name, width, height, rng, flip=False):
    """Draws one vehicle in a ``height x width`` patch -> (patch uint8 BGR, mask bool), both
    cropped to the drawn pixels, so the mask touches all four borders of the patch."""
    draw, _, colour = VEHICLES[class_name]
    jitter = rng.randint(-12, 13, size=3)
    colour = tuple(int(c) for c in np.clip(np.array(colour) + jitter, 8, 250))
    patch = np.empty((height, width, 3), np.uint8)
    patch[:] = _EMPTY
    draw(patch, width, height, colour, max(1, min(width, height) // 40))
    if flip:
        patch = patch[:, ::-1].copy()
    mask = np.any(patch != _EMPTY, axis=2)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return patch[crop], mask[crop]


def _background(height, width, rng):
    """A grey-ish tinted vertical gradient with mild noise, uint8 BGR."""
    base = rng.uniform(70, 200) + rng.uniform(-15, 15, size=3)
    ramp = np.linspace(-1.0, 1.0, height)[:, None, None] * rng.uniform(-25, 25)
    noise = rng.normal(0.0, 6.0, size=(height, width, 3))
    return np.clip(base + ramp + noise, 0, 255).astype(np.uint8)


def _overlap(a, b):
    """Intersection over the smaller area of two (x0, y0, x1, y1) exclusive-end boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / float(smaller)


def _place(class_name, image_h, image_w, max_fraction, placed, rng, tries=60):
    """A free (x0, y0, w, h) for a vehicle of ``class_name``, or None when none was found."""
    aspect = VEHICLES[class_name][1]
    for _ in range(tries):
        fraction = rng.uniform(MIN_SIDE_FRACTION, max_fraction)
        if aspect >= image_w / float(image_h):  # longer relative side: the width
            w = int(fraction * image_w)
            h = int(round(w / aspect))
        else:
            h = int(fraction * image_h)
            w = int(round(h * aspect))
        if w >= image_w or h >= image_h:
            continue
        x0, y0 = rng.randint(0, image_w - w + 1), rng.randint(0, image_h - h + 1)
        box = (x0, y0, x0 + w, y0 + h)
        if all(_overlap(box, other) <= MAX_OVERLAP for other in placed):
            return x0, y0, w, h
    return None


def generate_image(rng):
    """-> (image uint8 BGR [H, W, 3], objects [(class_name, (xmin, ymin, xmax, ymax))]) with
    boxes in VOC 1-based inclusive pixels."""
    height, width = rng.randint(SIZE_RANGE[0], SIZE_RANGE[1] + 1, size=2)
    image = _background(height, width, rng)
    count = rng.randint(1, len(MAX_SIDE_FRACTION) + 1)
    placed, objects = [], []
    for _ in range(count):
        name = dataset_config.VEHICLE_CLASSES[rng.randint(len(dataset_config.VEHICLE_CLASSES))]
        spot = _place(name, height, width, MAX_SIDE_FRACTION[count - 1], placed, rng)
        if spot is None:
            continue
        x0, y0, w, h = spot
        patch, mask = draw_vehicle(name, w, h, rng, flip=bool(rng.randint(2)))
        ph, pw = mask.shape
        image[y0:y0 + ph, x0:x0 + pw][mask] = patch[mask]
        placed.append((x0, y0, x0 + pw, y0 + ph))
        objects.append((name, (x0 + 1, y0 + 1, x0 + pw, y0 + ph)))
    return image, objects


def annotation_xml(image_id, height, width, objects):
    """VOC annotation text for one generated image (boxes as in ``generate_image``)."""
    return voc_writer.annotation_xml(image_id + '.jpg', height, width, objects,
                                     folder='sample_vehicles',
                                     database='generated by sample_data.py')


def generate_voc_dataset(output_dir, num_images=300, seed=0, test_fraction=0.2):
    """Writes the generated VOC folder into ``output_dir`` (created; must hold no VOC folders
    yet) and returns ``output_dir``. Image ids are ``000000`` ... in generation order."""
    if num_images < 1:
        raise SampleDataError('--num_images=%d: must be at least 1' % num_images)
    if seed < 0:
        raise SampleDataError('--seed=%d: must be >= 0' % seed)
    if not 0.0 <= test_fraction < 1.0:
        raise SampleDataError('--test_fraction=%g: must be in [0, 1)' % test_fraction)
    folders = [os.path.join(output_dir, *parts) for parts in
               (('Annotations',), ('JPEGImages',), ('ImageSets', 'Main'))]
    existing = [folder for folder in folders if os.path.isdir(folder) and os.listdir(folder)]
    if existing:
        raise SampleDataError('--output_dir=%s already holds %s: choose an empty folder'
                              % (output_dir, existing[0]))
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    ids = ['%06d' % index for index in range(num_images)]
    for index, image_id in enumerate(ids):
        rng = np.random.RandomState([seed, index])
        image, objects = generate_image(rng)
        ok, encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise SampleDataError('could not encode image %s' % image_id)
        with open(os.path.join(folders[1], image_id + '.jpg'), 'wb') as handle:
            handle.write(encoded.tobytes())
        with open(os.path.join(folders[0], image_id + '.xml'), 'w', encoding='utf-8') as handle:
            handle.write(annotation_xml(image_id, image.shape[0], image.shape[1], objects))
    order = np.random.RandomState(seed).permutation(num_images)
    test = set(order[:int(round(test_fraction * num_images))].tolist())
    splits = {'train': [i for i in ids if int(i) not in test],
              'test': [i for i in ids if int(i) in test], 'trainval': ids}
    for split, members in splits.items():
        with open(os.path.join(folders[2], split + '.txt'), 'w', encoding='utf-8') as handle:
            handle.write(''.join(member + '\n' for member in members))
    return output_dir


def define_flags():
    """The generator's own flags (a ``utils.cli.FlagSet``)."""
    flag_set = cli.FlagSet()
    flag_set.group('Output')
    flag_set.string('output_dir', 'Images/sample_vehicles', 'Folder to create (VOC layout).')
    flag_set.group('Content')
    flag_set.integer('num_images', 300, 'Number of images to generate.')
    flag_set.integer('seed', 0, 'Random seed: the same seed gives identical files.')
    flag_set.float('test_fraction', 0.2, 'Share of images listed in test.txt (rest: train).')
    return flag_set


def _generate(options):
    try:
        generate_voc_dataset(options.output_dir, options.num_images, options.seed,
                             options.test_fraction)
    except OSError as error:
        raise SampleDataError(str(error))
    print('wrote %d images to %s' % (options.num_images, options.output_dir))
    return 0


main = cli.make_main(__doc__, define_flags, _generate)


if __name__ == '__main__':
    sys.exit(main())
