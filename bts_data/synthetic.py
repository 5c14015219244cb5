"""Small KITTI- and NYU-format trees of real PNG files with filenames files, for demos and tests
(there is no real data here). Layouts follow the official lists:

kitti: raw/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png (RGB, 375x1242) and
       gt/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000000.png (uint16, metres x 256,
       sparse like projected LiDAR: zeros above the horizon and between scan points)
nyu:   sync/scene_0001/rgb_00000.png (RGB, 480x640) and sync/scene_0001/sync_depth_00000.png (uint16 mm,
       dense with holes and an unmeasured border), listed with a leading '/' as the official NYU lists
"""
from pathlib import Path

import numpy as np
from PIL import Image

from bts_data.dataset import DataConfig
from bts_data.filelist import Sample, write_filelist
from bts_core.spec import NYU_FOCAL

DEFAULT_SIZE = {"kitti": (375, 1242), "nyu": (480, 640)}   # KITTI raw frames are 370-376 x 1224-1242
# (date, focal) of the KITTI raw recordings, as in the official lists; mixed focals exercise focal scaling.
KITTI_DATES = (("2011_09_26", 721.5377), ("2011_09_30", 707.0493), ("2011_10_03", 718.856))
FRAMES_PER_DRIVE = 2


class SyntheticTree(tuple):
    """(train filenames file, test filenames file), with the folders a DataConfig needs as attributes."""

    def __new__(cls, train, test, root, dataset, data_path, gt_path):
        tree = super().__new__(cls, (train, test))
        tree.root, tree.dataset, tree.data_path, tree.gt_path = root, dataset, data_path, gt_path
        return tree

    @property
    def train(self):
        return self[0]

    @property
    def test(self):
        return self[1]

    def config(self, mode="train", **overrides):
        filenames = self.train if mode == "train" else self.test
        return DataConfig(dataset=self.dataset, data_path=str(self.data_path), gt_path=str(self.gt_path),
                          filenames_file=str(filenames), mode=mode, **overrides)


def _scene(rng, height, width, horizon):
    """An RGB picture with sky, road and a few boxes: structure for the crops and flips to move around."""
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    sky = np.array([0.55, 0.7, 0.9], np.float32) * (1.0 - 0.4 * rows)
    road = np.array([0.35, 0.33, 0.3], np.float32) * (0.6 + 0.6 * rows)
    image = np.where(rows * height < horizon, sky, road) * np.ones((1, width, 1), np.float32)
    boxes = []
    for _ in range(4):
        h, w = int(rng.integers(height // 8, height // 3)), int(rng.integers(width // 16, width // 5))
        top = int(rng.integers(int(horizon) - h // 2, max(int(horizon) - h // 2 + 1, height - h)))
        left = int(rng.integers(0, width - w))
        image[top:top + h, left:left + w] = rng.uniform(0.1, 0.9, 3)
        boxes.append((top, left, h, w))
    image += rng.normal(0.0, 0.02, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), boxes


def _road_depth(rows, horizon):
    return 1.65 * 720.0 / np.maximum(rows - horizon, 1.0)


def _kitti_depth(rng, height, width, boxes, horizon, boxes_on_ground=False):
    """Ground-plane depth below the horizon (camera 1.65 m high, focal ~720 px), boxes at their own depth
    (random, or with `boxes_on_ground` the road's depth at their bottom row), then ~25 % of pixels below the
    horizon kept, as a projected LiDAR scan leaves them."""
    rows = np.arange(height, dtype=np.float32)[:, None]
    depth = np.where(rows > horizon + 1, _road_depth(rows, horizon), 0.0) * np.ones((1, width))
    for top, left, h, w in boxes:
        drawn = rng.uniform(4.0, 60.0)   # drawn either way: the pictures stay those of the default tree
        depth[top:top + h, left:left + w] = _road_depth(top + h - 1, horizon) if boxes_on_ground else drawn
    depth = np.clip(depth, 0.0, 85.0)
    depth[rows.repeat(width, 1) < horizon] = 0.0
    depth[rng.random(depth.shape) > 0.25] = 0.0
    return np.round(depth * 256.0).astype(np.uint16)


def _floor_depth(rows, height):
    return 1.2 * 520.0 / np.maximum(rows - height / 2, 1.0)


def _nyu_depth(rng, height, width, boxes, boxes_on_ground=False):
    """A room: back wall at 3-6 m, floor approaching the camera, boxes nearer (random, or with
    `boxes_on_ground` the floor's depth at their bottom row, at most the wall's); 2 % holes, unmeasured border."""
    rows = np.arange(height, dtype=np.float32)[:, None]
    wall = rng.uniform(3.0, 6.0)
    depth = np.minimum(wall, _floor_depth(rows, height)) * np.ones((1, width))
    for top, left, h, w in boxes:
        drawn = rng.uniform(0.8, wall)
        depth[top:top + h, left:left + w] = min(wall, _floor_depth(top + h - 1, height)) if boxes_on_ground else drawn
    depth = np.clip(depth, 0.5, 9.5)
    depth[rng.random(depth.shape) < 0.02] = 0.0
    depth[:8], depth[-8:], depth[:, :8], depth[:, -8:] = 0.0, 0.0, 0.0, 0.0
    return np.round(depth * 1000.0).astype(np.uint16)


def _save(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)   # speed over size


def write_tree(root, dataset, n_images, seed=0, size=None, without_gt=0, boxes_on_ground=False):
    """Writes `n_images` image/depth pairs under `root` and `<dataset>_train.txt`, `<dataset>_test.txt`.

    size: (height, width), default 375x1242 (KITTI, enough for the 352x1216 KB crop) or 480x640 (NYU).
    without_gt: how many of the last images the test list gives `None` as depth (their depth files exist).
    boxes_on_ground: each box stands on the road (floor) and takes its depth at the box's bottom row, so
    the whole depth map follows from the picture (a network can learn it); by default a box's depth is
    drawn at random, unrelated to what the picture shows. The pictures are the same either way.
    Returns a SyntheticTree: `train, test = write_tree(...)`, plus `.data_path`, `.gt_path`, `.config(mode)`.
    """
    if dataset not in DEFAULT_SIZE:
        raise ValueError(f"unknown dataset {dataset!r}; choose kitti or nyu")
    if n_images < 1 or not 0 <= without_gt <= n_images:
        raise ValueError(f"need n_images >= 1 and 0 <= without_gt <= n_images, got {n_images}, {without_gt}")
    root = Path(root)
    height, width = size or DEFAULT_SIZE[dataset]
    rng = np.random.default_rng(seed)
    data_path, gt_path = (root / "raw", root / "gt") if dataset == "kitti" else (root / "sync", root / "sync")
    samples = []
    for i in range(n_images):
        horizon = height * (0.3 if dataset == "kitti" else 0.5)
        image, boxes = _scene(rng, height, width, horizon)
        if dataset == "kitti":
            (date, focal), drive = KITTI_DATES[(i // FRAMES_PER_DRIVE) % len(KITTI_DATES)], i // FRAMES_PER_DRIVE + 1
            sync, frame = f"{date}_drive_{drive:04d}_sync", f"{i % FRAMES_PER_DRIVE:010d}.png"
            image_rel = f"{date}/{sync}/image_02/data/{frame}"
            depth_rel = f"{sync}/proj_depth/groundtruth/image_02/{frame}"
            depth = _kitti_depth(rng, height, width, boxes, horizon, boxes_on_ground)
        else:
            focal, scene = NYU_FOCAL, f"scene_{i // FRAMES_PER_DRIVE + 1:04d}"
            image_rel, depth_rel = f"/{scene}/rgb_{i:05d}.png", f"/{scene}/sync_depth_{i:05d}.png"
            depth = _nyu_depth(rng, height, width, boxes, boxes_on_ground)
        _save(image, data_path / image_rel.lstrip("/"))
        _save(depth, gt_path / depth_rel.lstrip("/"))
        samples.append(Sample(image_rel, depth_rel, focal))
    train = write_filelist(root / f"{dataset}_train.txt", samples)
    test_samples = [s if i < n_images - without_gt else Sample(s.image, None, s.focal) for i, s in enumerate(samples)]
    test = write_filelist(root / f"{dataset}_test.txt", test_samples)
    return SyntheticTree(train, test, root, dataset, data_path, gt_path)
