"""The official BTS preprocessing (cleinc/bts `pytorch/bts_dataloader.py`), with explicit randomness.

Every random draw comes from the `np.random.Generator` passed in (the official code uses the `random`
and `np.random` globals, which makes a sample depend on worker seeding and order). The distributions,
the order of operations and the probabilities are the official ones:

train: KB crop (KITTI) | NYU border crop -> rotate ±degree (PIL: bilinear image, nearest depth)
       -> image / 255, depth / 256 (KITTI) or / 1000 (NYU) -> random crop -> flip (p 0.5)
       -> colour augmentation (p 0.5) -> ImageNet normalisation, HWC -> CHW float32
test:  image / 255 -> KB crop (KITTI) -> ImageNet normalisation
"""
import numpy as np
from PIL import Image

from bts_core.spec import DEPTH_SCALE, IMAGENET_MEAN, IMAGENET_STD, KB_CROP_HEIGHT, KB_CROP_WIDTH

BRIGHTNESS = {"kitti": (0.9, 1.1), "nyu": (0.75, 1.25)}
GAMMA = (0.9, 1.1)
COLOUR = (0.9, 1.1)
# Not in the spec; official bts_dataloader.py crops every NYU training image and depth map with this PIL
# box (left, top, right, bottom) "to avoid blank boundaries due to pixel registration": 565 x 427 left.
NYU_TRAIN_CROP = (43, 45, 608, 472)


def kb_crop_box(height, width):
    """PIL box (left, top, right, bottom) of the KITTI benchmark crop: bottom 352 rows, centred 1216 columns."""
    if height < KB_CROP_HEIGHT or width < KB_CROP_WIDTH:
        raise ValueError(f"KB crop needs an image of at least {KB_CROP_HEIGHT}x{KB_CROP_WIDTH}, got {height}x{width}")
    top = int(height - KB_CROP_HEIGHT)
    left = int((width - KB_CROP_WIDTH) / 2)
    return left, top, left + KB_CROP_WIDTH, top + KB_CROP_HEIGHT


def crop(array_or_image, box):
    """A PIL image's `.crop(box)`, or the same window of an H x W (x C) numpy array."""
    if isinstance(array_or_image, Image.Image):
        return array_or_image.crop(box)
    left, top, right, bottom = box
    return array_or_image[top:bottom, left:right]


def kb_crop(array_or_image):
    height, width = (array_or_image.height, array_or_image.width) if isinstance(array_or_image, Image.Image) \
        else array_or_image.shape[:2]
    return crop(array_or_image, kb_crop_box(height, width))


def random_angle(degree, rng):
    """Uniform in [-degree, degree), drawn as the official `(random() - 0.5) * 2 * degree`."""
    return (rng.random() - 0.5) * 2 * degree


def rotate(image, depth, angle):
    """PIL rotation about the centre, same size, zero fill: bilinear image, nearest depth (depth keeps its values)."""
    return image.rotate(angle, resample=Image.BILINEAR), depth.rotate(angle, resample=Image.NEAREST)


def image_to_float(image):
    """H x W x 3 float32 in [0, 1]."""
    return np.asarray(image, dtype=np.float32) / 255.0


def depth_to_metres(depth, dataset):
    """H x W x 1 float32 metres from a uint16 depth PNG (0 = no measurement)."""
    return np.asarray(depth, dtype=np.float32)[..., None] / DEPTH_SCALE[dataset]


def random_crop(image, depth, height, width, rng):
    """The same random height x width window of an H x W x C image and its depth map."""
    if image.shape[:2] != depth.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and depth {depth.shape[:2]} differ in size")
    if image.shape[0] < height or image.shape[1] < width:
        raise ValueError(f"random crop {height}x{width} is larger than the image {image.shape[0]}x{image.shape[1]}")
    x = int(rng.integers(0, image.shape[1] - width + 1))   # official random.randint: both ends included
    y = int(rng.integers(0, image.shape[0] - height + 1))
    return image[y:y + height, x:x + width], depth[y:y + height, x:x + width]


def random_flip(image, depth, rng):
    if rng.random() > 0.5:
        return image[:, ::-1].copy(), depth[:, ::-1].copy()
    return image, depth


def augment_colour(image, dataset, rng):
    """Gamma, brightness (wider for NYU), a factor per colour channel, clipped to [0, 1]."""
    gamma = rng.uniform(*GAMMA)
    brightness = rng.uniform(*BRIGHTNESS[dataset])
    colours = rng.uniform(*COLOUR, size=3)
    out = image ** np.float32(gamma) * np.float32(brightness)
    out = out * colours.astype(np.float32)[None, None, :]
    return np.clip(out, 0, 1).astype(np.float32)


def train_preprocess(image, depth, dataset, rng):
    """Flip with p 0.5, then colour augmentation with p 0.5 (the official `train_preprocess`)."""
    image, depth = random_flip(image, depth, rng)
    if rng.random() > 0.5:
        image = augment_colour(image, dataset, rng)
    return image, depth


def normalize(image):
    """H x W x 3 in [0, 1] -> 3 x H x W float32, ImageNet mean and std (torchvision's Normalize after ToTensor)."""
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(((image - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def depth_to_chw(depth):
    """H x W x 1 -> 1 x H x W float32 (ToTensor's layout)."""
    return np.ascontiguousarray(depth.transpose(2, 0, 1), dtype=np.float32)
