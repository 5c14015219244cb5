"""BTS samples as numpy arrays, reproducible per (seed, epoch, index), for either framework's loader.

The random draws of one sample come from `np.random.default_rng((seed, epoch, index))`, so a batch is
the same whatever the number of workers, their order, or the framework that loads it.
"""
import os
from dataclasses import dataclass, fields, replace
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from bts_data import transforms as T
from bts_data.filelist import DataError, read_filelist, resolve
from bts_core.spec import DATASETS, DEFAULT_DEGREE, DEFAULT_INPUT_SIZE

MODES = ("train", "test", "online_eval")
# Official training arguments (arguments_train_eigen.txt / arguments_train_nyu.txt); the spec states KITTI's.


@dataclass(frozen=True)
class DataConfig:
    """The official loader's arguments. None picks the official value for the dataset
    (input size 352x704 KITTI / 416x544 NYU, KB crop for KITTI only, rotation ±1° KITTI / ±2.5° NYU)."""
    dataset: str
    data_path: str
    filenames_file: str
    gt_path: Optional[str] = None
    mode: str = "train"
    input_height: Optional[int] = None
    input_width: Optional[int] = None
    do_kb_crop: Optional[bool] = None
    do_random_rotate: bool = True
    degree: Optional[float] = None

    def resolved(self):
        """A copy with every None default replaced by the dataset's official value; checks the choices."""
        if self.dataset not in DATASETS:
            raise DataError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        if self.mode not in MODES:
            raise DataError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        height, width = DEFAULT_INPUT_SIZE[self.dataset]
        return replace(self,
                       input_height=height if self.input_height is None else int(self.input_height),
                       input_width=width if self.input_width is None else int(self.input_width),
                       do_kb_crop=self.dataset == "kitti" if self.do_kb_crop is None else bool(self.do_kb_crop),
                       degree=DEFAULT_DEGREE[self.dataset] if self.degree is None else float(self.degree))


def open_image(path, what="image"):
    """A PIL image, loaded now (so a broken file fails here, naming itself)."""
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what} file") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DataError(f"{path}: unreadable {what} ({type(e).__name__}: {e})") from None
    return image


def open_rgb(path):
    image = open_image(path)
    return image if image.mode == "RGB" else image.convert("RGB")


class BtsSamples:
    """The official DataLoadPreprocess as a framework-free sample source.

    `sample(index, epoch, seed)` -> dict(image 3xHxW float32, depth 1xHxW float32 or None, focal float32,
    has_valid_depth bool). `ground_truth(index)` gives the full-size depth map for evaluation.
    """

    def __init__(self, config):
        if not isinstance(config, DataConfig):
            config = DataConfig(**{f.name: config[f.name] for f in fields(DataConfig) if f.name in config})
        self.config = config.resolved()
        self.items = read_filelist(self.config.filenames_file)
        if self.config.mode in ("train", "online_eval") and self.config.gt_path is None:
            raise DataError(f"mode {self.config.mode!r} needs gt_path (the depth maps' root folder)")
        if self.config.mode == "train":
            missing = [n for n, s in enumerate(self.items, 1) if s.depth is None]
            if missing:
                raise DataError(f"{self.config.filenames_file}: {len(missing)} sample(s) without depth (first: "
                                f"sample {missing[0]}); a training list needs ground truth on every line")

    def __len__(self):
        return len(self.items)

    def image_path(self, index):
        return resolve(self.config.data_path, self.items[index].image)

    def depth_path(self, index):
        depth = self.items[index].depth
        return None if depth is None or self.config.gt_path is None else resolve(self.config.gt_path, depth)

    def _depth_image(self, index):
        path = self.depth_path(index)
        if path is None or not os.path.isfile(path):
            return None   # the official online evaluation treats an unopenable depth file as "no ground truth"
        depth = open_image(path, "depth")
        if depth.mode not in ("I;16", "I;16B", "I"):
            raise DataError(f"{path}: depth must be a 16-bit single-channel PNG, got PIL mode {depth.mode}")
        return depth

    def ground_truth(self, index):
        """Full-size H x W float32 metres (0 where unmeasured), or None without ground truth: for evaluation."""
        depth = self._depth_image(index)
        return None if depth is None else T.depth_to_metres(depth, self.config.dataset)[..., 0]

    def sample(self, index, epoch=0, seed=0):
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range (0..{len(self) - 1})")
        focal = np.float32(self.items[index].focal)
        if self.config.mode == "train":
            rng = np.random.default_rng((int(seed), int(epoch), int(index)))
            image, depth = self._train_arrays(index, rng)
            return {"image": T.normalize(image), "depth": T.depth_to_chw(depth), "focal": focal,
                    "has_valid_depth": True}
        image = T.image_to_float(open_rgb(self.image_path(index)))
        if self.config.do_kb_crop:
            image = self._kb_crop(image, self.image_path(index))
        depth = None
        if self.config.mode == "online_eval":
            gt = self._depth_image(index)
            if gt is not None:
                depth = T.depth_to_metres(gt, self.config.dataset)
                if self.config.do_kb_crop:   # official online evaluation crops the ground truth with the image
                    depth = self._kb_crop(depth, self.depth_path(index))
                depth = T.depth_to_chw(depth)
        return {"image": T.normalize(image), "depth": depth, "focal": focal, "has_valid_depth": depth is not None}

    @staticmethod
    def _kb_crop(array_or_image, path):
        try:
            return T.kb_crop(array_or_image)
        except ValueError as e:
            raise DataError(f"{path}: {e} (the KB crop is for KITTI frames: do_kb_crop=False, or --no-kb-crop "
                            f"in the commands)") from None

    def _train_arrays(self, index, rng):
        config = self.config
        image = open_rgb(self.image_path(index))
        depth = self._depth_image(index)
        if depth is None:
            raise DataError(f"{self.depth_path(index)}: no such depth file (training needs ground truth)")
        if image.size != depth.size:
            raise DataError(f"{self.image_path(index)}: image {image.size[1]}x{image.size[0]} and depth "
                            f"{depth.size[1]}x{depth.size[0]} differ in size")
        if config.do_kb_crop:
            image, depth = self._kb_crop(image, self.image_path(index)), T.kb_crop(depth)
        if config.dataset == "nyu":   # official: NYU only, after the (KITTI) KB crop
            image, depth = T.crop(image, T.NYU_TRAIN_CROP), T.crop(depth, T.NYU_TRAIN_CROP)
        if config.do_random_rotate:
            image, depth = T.rotate(image, depth, T.random_angle(config.degree, rng))
        image, depth = T.image_to_float(image), T.depth_to_metres(depth, config.dataset)
        if image.shape[0] < config.input_height or image.shape[1] < config.input_width:
            raise DataError(f"{self.image_path(index)}: {image.shape[0]}x{image.shape[1]} after cropping is smaller "
                            f"than the input size {config.input_height}x{config.input_width}")
        image, depth = T.random_crop(image, depth, config.input_height, config.input_width, rng)
        return T.train_preprocess(image, depth, config.dataset, rng)


def batch_indices(n, batch_size, seed, epoch, shuffle=True, drop_last=True):
    """Index lists of one epoch, from one permutation seeded by (seed, epoch): the same for every framework."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = np.random.default_rng((int(seed), int(epoch))).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [[int(i) for i in order[start:start + batch_size]] for start in range(0, stop, batch_size)]


def collate(samples):
    """Numpy batch of sample dicts: image Bx3xHxW, focal B, has_valid_depth B, and depth Bx1xHxW when any
    sample has one (zeros stand in for a missing one: no evaluation or loss mask accepts depth 0)."""
    shapes = {s["image"].shape for s in samples}
    if len(shapes) > 1:
        raise DataError(f"images of one batch differ in size ({', '.join(map(str, sorted(shapes)))}); "
                        f"use batch size 1 or crop them to one size (KB crop for KITTI)")
    batch = {"image": np.stack([s["image"] for s in samples]),
             "focal": np.asarray([s["focal"] for s in samples], np.float32),
             "has_valid_depth": np.asarray([bool(s["has_valid_depth"]) for s in samples])}
    depths = [s.get("depth") for s in samples]
    present = [d for d in depths if d is not None]
    if present:
        batch["depth"] = np.stack([d if d is not None else np.zeros_like(present[0]) for d in depths])
    return batch


def with_ground_truth(indexed_predictions, samples):
    """(prediction, full-size ground truth) pairs, leaving out images without ground truth (as official)."""
    for index, pred in indexed_predictions:
        gt = samples.ground_truth(index)
        if gt is not None:
            yield pred, gt
