"""bts_data: filenames files, the official transforms with explicit generators, reproducible samples.

Reference: cleinc/bts `pytorch/bts_dataloader.py` as stated in shared/reference/official_bts_spec.md
("Training", Data) — KB crop, rotation (bilinear image, nearest depth), random crop, flip, colour
augmentation, ImageNet normalisation; depth PNG / 256 (KITTI), / 1000 (NYU).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bts_data import (BtsSamples, DataConfig, DataError, FilelistError, batch_indices, collate, read_filelist,
                      write_tree)
from bts_data import transforms as T
from bts_data.filelist import resolve

REPO = Path(__file__).resolve().parents[1]
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("kitti"), "kitti", 3, seed=0, without_gt=1)


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    return write_tree(tmp_path_factory.mktemp("nyu"), "nyu", 3, seed=1, without_gt=1)


def raw_depth(tree, index):
    """The uint16 values of the listed depth PNG (the train list names every depth file)."""
    sample = read_filelist(tree.train)[index]
    return np.asarray(Image.open(resolve(tree.gt_path, sample.depth)))


# ------------------------------------------------------------------------------------------ filelist
def test_filelist_reads_official_lines(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("2011_09_26/a/image_02/data/0.png a/proj_depth/groundtruth/image_02/0.png 721.5377\n"
                    "\n"
                    "/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579\n"
                    "b/rgb.png None 518.8579\n")
    samples = read_filelist(path)
    assert [s.depth for s in samples] == ["a/proj_depth/groundtruth/image_02/0.png",
                                          "/kitchen_0028b/sync_depth_00045.png", None]
    assert samples[0].focal == pytest.approx(721.5377)
    # official "./" + path: NYU's leading '/' stays inside the root
    assert resolve("/data/nyu", samples[1].image) == "/data/nyu/kitchen_0028b/rgb_00045.jpg"


@pytest.mark.parametrize("text,fragment", [
    ("a.png b.png\n", ":1: expected 'image_path depth_path focal', got 2 field(s)"),
    ("a.png b.png 7 extra\n", ":1: expected"),
    ("a.png b.png 7\na.png b.png focal\n", ":2: focal 'focal' is not a number"),
    ("a.png b.png -5\n", ":1: focal must be a positive number"),
    ("a.png b.png nan\n", ":1: focal must be a positive number"),
    ("\n\n", "no samples"),
], ids=["two-fields", "four-fields", "bad-focal", "negative-focal", "nan-focal", "empty"])
def test_filelist_errors_name_file_and_line(tmp_path, text, fragment):
    path = tmp_path / "list.txt"
    path.write_text(text)
    with pytest.raises(FilelistError) as info:
        read_filelist(path)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert message.startswith(str(path)) and fragment in message


def test_filelist_missing_and_binary_files(tmp_path):
    with pytest.raises(FilelistError, match="No such file"):
        read_filelist(tmp_path / "absent.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(FilelistError, match="not a text file"):
        read_filelist(tmp_path / "bin.txt")


# -------------------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("height,width,box", [
    (375, 1242, (13, 23, 1229, 375)), (370, 1224, (4, 18, 1220, 370)), (376, 1241, (12, 24, 1228, 376)),
    (352, 1216, (0, 0, 1216, 352))])
def test_kb_crop_window(height, width, box):
    assert T.kb_crop_box(height, width) == box   # bottom 352 rows, int((W - 1216) / 2) from the left
    array = np.arange(height * width).reshape(height, width)
    cropped = T.kb_crop(array)
    assert cropped.shape == (352, 1216)
    assert cropped[0, 0] == array[box[1], box[0]] and cropped[-1, -1] == array[-1, box[2] - 1]
    image = Image.fromarray(array.astype(np.int32))
    np.testing.assert_array_equal(np.asarray(T.kb_crop(image)), cropped)   # PIL and numpy windows agree


def test_kb_crop_refuses_small_images():
    with pytest.raises(ValueError, match="at least 352x1216"):
        T.kb_crop_box(351, 1242)


def test_rotation_bilinear_image_nearest_depth():
    rng = np.random.default_rng(0)
    depth_values = np.array([0, 256, 1000, 5000, 20000], np.uint16)
    depth = Image.fromarray(depth_values[rng.integers(0, 5, (40, 60))])
    image = Image.fromarray(np.where(rng.random((40, 60, 3)) < 0.5, 0, 200).astype(np.uint8))   # two values
    rotated_image, rotated_depth = T.rotate(image, depth, 5.0)   # < 1 degree barely moves a 40x60 map
    assert rotated_depth.mode == depth.mode and rotated_depth.size == depth.size
    assert set(np.unique(np.asarray(rotated_depth))) <= set(depth_values.tolist())   # nearest: no new values
    assert not np.array_equal(np.asarray(rotated_depth), np.asarray(depth))          # it did rotate
    # bilinear: values between the two appear in the image (nearest would only copy pixels)
    assert len(set(np.unique(np.asarray(rotated_image)).tolist()) - {0, 200}) > 50
    same_image, same_depth = T.rotate(image, depth, 0.0)
    np.testing.assert_array_equal(np.asarray(same_depth), np.asarray(depth))


def test_random_angle_range():
    rng = np.random.default_rng(0)
    angles = np.array([T.random_angle(2.5, rng) for _ in range(2000)])
    assert angles.min() >= -2.5 and angles.max() < 2.5 and angles.min() < -2.4 and angles.max() > 2.4


def test_flip_flips_image_and_depth_together():
    image = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    depth = np.arange(2 * 5, dtype=np.float32).reshape(2, 5, 1)
    outcomes = set()
    for seed in range(20):
        flipped_image, flipped_depth = T.random_flip(image, depth, np.random.default_rng(seed))
        flipped = not np.array_equal(flipped_image, image)
        outcomes.add(flipped)
        expected = (image[:, ::-1], depth[:, ::-1]) if flipped else (image, depth)
        np.testing.assert_array_equal(flipped_image, expected[0])
        np.testing.assert_array_equal(flipped_depth, expected[1])
    assert outcomes == {True, False}


@pytest.mark.parametrize("dataset,brightness", [("kitti", (0.9, 1.1)), ("nyu", (0.75, 1.25))])
def test_colour_augmentation_bounds(dataset, brightness):
    for seed in range(20):
        grey = np.full((4, 4, 3), 0.5, np.float32)
        out = T.augment_colour(grey, dataset, np.random.default_rng(seed))
        assert out.dtype == np.float32
        low = 0.5 ** 1.1 * brightness[0] * 0.9
        high = 0.5 ** 0.9 * brightness[1] * 1.1
        assert low - 1e-6 <= out.min() and out.max() <= high + 1e-6
        assert np.ptp(out[0, 0]) > 0                       # one factor per colour channel
        extreme = T.augment_colour(np.ones((4, 4, 3), np.float32), dataset, np.random.default_rng(seed))
        assert 0.0 <= extreme.min() and extreme.max() <= 1.0  # clipped


def test_normalisation_and_layout():
    image = np.broadcast_to(MEAN, (4, 6, 3)).copy()
    image[0, 0] = 1.0
    out = T.normalize(image)
    assert out.shape == (3, 4, 6) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out[:, 1:, :], 0.0, atol=1e-7)
    np.testing.assert_allclose(out[:, 0, 0], (1.0 - MEAN) / STD, rtol=1e-6)


# ------------------------------------------------------------------------------------------ samples
def test_train_samples_shapes_and_depth_values(kitti, nyu):
    for tree, size, scale in ((kitti, (352, 704), 256.0), (nyu, (416, 544), 1000.0)):
        samples = BtsSamples(tree.config("train"))
        sample = samples.sample(0, epoch=0, seed=0)
        assert sample["image"].shape == (3, *size) and sample["image"].dtype == np.float32
        assert sample["depth"].shape == (1, *size) and sample["depth"].dtype == np.float32
        assert sample["focal"].dtype == np.float32 and sample["has_valid_depth"] is True
        # crops, nearest rotation and flips only move measured values: each is a PNG value / scale
        values = set(np.unique(np.round(sample["depth"] * scale).astype(np.int64)).tolist())
        assert values <= set(np.unique(raw_depth(tree, 0)).tolist()) | {0}
        assert len(values) > 10


def test_nyu_train_uses_official_border_crop(nyu):
    config = nyu.config("train", do_random_rotate=False, input_height=427, input_width=565)
    sample = BtsSamples(config).sample(1)
    window = raw_depth(nyu, 1)[45:472, 43:608].astype(np.float32) / 1000.0   # box (43, 45, 608, 472)
    depth = sample["depth"][0]
    assert np.array_equal(depth, window) or np.array_equal(depth, window[:, ::-1])


def test_same_seed_same_sample_and_new_draws_per_epoch(kitti):
    samples = BtsSamples(kitti.config("train"))
    first = samples.sample(1, epoch=2, seed=5)
    samples.sample(0, epoch=2, seed=5)                       # order of calls does not matter
    again = BtsSamples(kitti.config("train")).sample(1, epoch=2, seed=5)
    for key in ("image", "depth"):
        np.testing.assert_array_equal(first[key], again[key])
    for other in (samples.sample(1, epoch=3, seed=5), samples.sample(1, epoch=2, seed=6)):
        assert not np.array_equal(first["image"], other["image"])


def test_test_and_online_eval_modes(kitti):
    test = BtsSamples(kitti.config("test"))
    sample = test.sample(0)
    full = np.asarray(Image.open(test.image_path(0)), np.float32) / 255.0
    np.testing.assert_array_equal(sample["image"], T.normalize(T.kb_crop(full)))
    assert sample["depth"] is None and sample["has_valid_depth"] is False
    online = BtsSamples(kitti.config("online_eval"))
    with_gt, without_gt = online.sample(0), online.sample(2)          # the test list's last line is None
    np.testing.assert_array_equal(with_gt["depth"][0], T.kb_crop(raw_depth(kitti, 0) / np.float32(256.0)))
    assert with_gt["has_valid_depth"] and without_gt["depth"] is None and not without_gt["has_valid_depth"]
    gt = online.ground_truth(0)
    assert gt.shape == (375, 1242) and online.ground_truth(2) is None
    np.testing.assert_array_equal(gt, raw_depth(kitti, 0).astype(np.float32) / 256.0)
    batch = collate([online.sample(i) for i in range(3)])
    assert batch["depth"].shape == (3, 1, 352, 1216) and batch["has_valid_depth"].tolist() == [True, True, False]
    assert not batch["depth"][2].any()                        # stand-in zeros for the image without depth


def test_config_defaults_and_mapping(kitti, nyu):
    k = DataConfig("kitti", "d", "f").resolved()
    n = DataConfig("nyu", "d", "f").resolved()
    assert (k.input_height, k.input_width, k.do_kb_crop, k.degree) == (352, 704, True, 1.0)
    assert (n.input_height, n.input_width, n.do_kb_crop, n.degree) == (416, 544, False, 2.5)
    as_dict = {"dataset": "kitti", "data_path": str(kitti.data_path), "gt_path": str(kitti.gt_path),
               "filenames_file": str(kitti.train), "mode": "train", "unrelated": 1}
    assert len(BtsSamples(as_dict)) == 3


def test_data_errors(kitti, tmp_path):
    with pytest.raises(DataError, match="without depth"):
        BtsSamples(DataConfig("kitti", str(kitti.data_path), str(kitti.test), str(kitti.gt_path), mode="train"))
    with pytest.raises(DataError, match="unknown mode"):
        BtsSamples(kitti.config("validate"))
    with pytest.raises(DataError, match="needs gt_path"):
        BtsSamples(DataConfig("kitti", str(kitti.data_path), str(kitti.train), None, mode="train"))
    missing = BtsSamples(DataConfig("kitti", str(tmp_path), str(kitti.train), str(kitti.gt_path), mode="test"))
    with pytest.raises(DataError, match="no such image file"):
        missing.sample(0)
    small = write_tree(tmp_path / "small", "kitti", 1, size=(64, 96))
    with pytest.raises(DataError, match="KB crop needs an image of at least 352x1216"):
        BtsSamples(small.config("test")).sample(0)
    with pytest.raises(DataError, match="smaller than the input size"):
        BtsSamples(small.config("train", do_kb_crop=False)).sample(0)


def test_batch_indices():
    batches = batch_indices(10, 3, seed=1, epoch=0)
    assert [len(b) for b in batches] == [3, 3, 3] and len(set(sum(batches, []))) == 9
    assert batches == batch_indices(10, 3, seed=1, epoch=0)
    assert batches != batch_indices(10, 3, seed=1, epoch=1)
    assert batch_indices(5, 2, 0, 0, shuffle=False, drop_last=False) == [[0, 1], [2, 3], [4]]
    assert sorted(sum(batch_indices(7, 2, 3, 4, drop_last=False), [])) == list(range(7))


def test_synthetic_kitti_tree_is_kitti_like(kitti):
    train, test = kitti
    lines = Path(train).read_text().splitlines()
    assert lines[0].split()[0] == "2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000000.png"
    assert lines[2].split()[2] == "707.0493"                     # another recording date, another focal
    depth = raw_depth(kitti, 0)
    image = Image.open(resolve(kitti.data_path, lines[0].split()[0]))
    assert image.mode == "RGB" and image.size == (1242, 375) and depth.dtype == np.uint16
    valid = depth > 0
    assert 0.05 < valid.mean() < 0.5 and not valid[:100].any()    # sparse, nothing above the horizon
    assert Path(test).read_text().splitlines()[-1].split()[1] == "None"


def test_lower_floors_import_no_framework():
    """bts_core, bts_data and bts_commands (floors 0-2) run without torch or paddle."""
    modules = ("bts_core.cli, bts_core.config, bts_core.depth_files, bts_core.spec, bts_data, bts_data.synthetic, "
               "bts_commands.evaluate, bts_commands.predict, bts_commands.training")
    code = (f"import sys, {modules}; "
            "assert not {'torch', 'paddle'} & set(sys.modules), sorted({'torch', 'paddle'} & set(sys.modules))")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_torch_loader_independent_of_workers(kitti):
    from torch_ref.data import make_loader
    samples = BtsSamples(kitti.config("train", input_height=64, input_width=128))
    serial = list(make_loader(samples, 2, seed=3, epoch=1, shuffle=True, num_workers=0, drop_last=False))
    parallel = list(make_loader(samples, 2, seed=3, epoch=1, shuffle=True, num_workers=2, drop_last=False))
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].equal(b[key]), key


def test_paddle_loader_raises_sample_errors(kitti, tmp_path):
    """A broken sample must raise in the caller: Paddle's own single-process loader thread would hang."""
    import threading
    from paddle_bts.data import make_loader
    config = kitti.config("test")
    broken = BtsSamples(DataConfig(config.dataset, str(tmp_path), config.filenames_file, config.gt_path, mode="test"))
    outcome = {}

    def iterate():
        try:
            list(make_loader(broken, 1, shuffle=False, drop_last=False))
        except DataError as error:
            outcome["error"] = str(error)

    reader = threading.Thread(target=iterate, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "paddle_bts.data.make_loader hung on a missing image"
    assert "no such image file" in outcome.get("error", "")
