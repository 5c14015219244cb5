"""The training configuration both frameworks read (the run's plumbing: bts_commands/training.py).

A config is a flat YAML file (PaddleDepth's style: `--config configs/bts_kitti.yaml`, then `-o key=value`
overrides); the keys and defaults are those of the official `bts_main.py` with the KITTI Eigen
arguments. An unknown key, a value of the wrong type or a value out of range is a `ConfigError`, which
the training commands print as one line and exit with 2. Nothing here imports a deep-learning framework.
"""
import argparse
import math
from pathlib import Path

import yaml

from bts_core.cli import InputError
from bts_core.spec import DATASETS, DEFAULT_DEGREE, DEFAULT_INPUT_SIZE, DEFAULT_MAX_DEPTH, ENCODERS

# Official defaults (bts_main.py + arguments_train_eigen.txt; eps 1e-3 as in the reference spec).
# None: not set, or (marked *) the official value for the dataset, filled in by `validate`.
# The type of every key is that of its default, or given in TYPES.
DEFAULTS = {
    # model
    "encoder": "densenet161_bts",
    "dataset": "kitti",
    "max_depth": None,             # * 80 KITTI, 10 NYU
    "bts_size": 512,
    # data (bts_data.DataConfig's fields)
    "data_path": None,
    "gt_path": None,
    "filenames_file": None,
    "input_height": None,          # * 352 KITTI, 416 NYU
    "input_width": None,           # * 704 KITTI, 544 NYU
    "do_kb_crop": None,            # * KITTI only
    "do_random_rotate": True,
    "degree": None,                # * 1.0 KITTI, 2.5 NYU
    "synthetic": False,            # train on a small synthetic tree rooted at data_path, written if missing
    "synthetic_images": 8,
    "num_threads": 1,              # data-loading worker processes (the official name); 0: in the main process
    # optimisation
    "batch_size": 4,
    "num_epochs": 50,
    "learning_rate": 1e-4,
    "end_learning_rate": -1.0,     # -1: 0.1 x learning_rate, as official
    "adam_eps": 1e-3,
    "weight_decay": 1e-2,          # encoder group only; the decoder group has 0
    # resume from an official torch checkpoint (torch) or a PaddleDepth folder (Paddle): weights, optimizer
    # state when the file has it, global step and LR position
    "checkpoint_path": None,
    "load_weights_folder": None,
    "retrain": False,              # with either: restart at step 0 (official --retrain); else resume at its step
    # start the encoder from ImageNet weights, as official training does (the decoder keeps its Xavier start):
    # torch a torchvision checkpoint file, Paddle its conversion by conversion/backbone.py --to-paddle
    "encoder_weights": None,
    # run
    "seed": 0,
    "device": "auto",              # auto | cpu | cuda / gpu (each framework's own word)
    "log_directory": "out/train",
    "model_name": "bts_eigen_v2",
    "save_freq": 500,              # steps between checkpoints (0: only after each epoch and at the end)
}
TYPES = {"data_path": str, "gt_path": str, "filenames_file": str, "checkpoint_path": str,
         "load_weights_folder": str, "encoder_weights": str, "max_depth": float, "degree": float, "learning_rate": float,
         "end_learning_rate": float, "adam_eps": float, "weight_decay": float, "input_height": int,
         "input_width": int, "do_kb_crop": bool}
POSITIVE = ("max_depth", "bts_size", "input_height", "input_width", "batch_size", "num_epochs",
            "learning_rate", "adam_eps", "synthetic_images")
NON_NEGATIVE = ("degree", "weight_decay", "num_threads", "save_freq", "seed")
CHOICES = {"encoder": ENCODERS, "dataset": DATASETS}

# Ground-truth pixels the loss uses (official bts_main.py): depth_gt > 1.0 (KITTI) or > 0.1 (NYU).
MIN_GT_DEPTH = {"kitti": 1.0, "nyu": 0.1}


class ConfigError(InputError):
    """A config a user can fix; the message is one line."""


def _typed(key, value):
    kind = TYPES.get(key, type(DEFAULTS[key]))
    if value is None:
        if DEFAULTS[key] is not None:
            raise ConfigError(f"{key}: must not be empty (default {DEFAULTS[key]!r})")
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)   # YAML reads 80 as an int
    if kind is float and isinstance(value, str):
        try:   # PyYAML (YAML 1.1) reads 1e-4, the official spelling, as a string: it needs 1.0e-4
            value = float(value)
        except ValueError:
            pass
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value!r}")
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {kind.__name__}, got {value!r}")
    return value


def validate(config):
    """A complete, checked copy of `config` (a dict): defaults filled in, every value checked."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        close = [k for k in DEFAULTS if k.replace("_", "") == unknown[0].replace("_", "").lower()]
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown config key {unknown[0]!r}{hint}; known keys: {', '.join(DEFAULTS)}")
    checked = dict(DEFAULTS)
    for key, value in config.items():
        checked[key] = _typed(key, value)
    for key, choices in CHOICES.items():
        if checked[key] not in choices:
            raise ConfigError(f"{key}: {checked[key]!r} is not one of {', '.join(choices)}")
    checked.update(_dataset_defaults(checked))
    for key in POSITIVE:
        if not checked[key] > 0:
            raise ConfigError(f"{key}: must be > 0, got {checked[key]}")
    for key in NON_NEGATIVE:
        if checked[key] < 0:
            raise ConfigError(f"{key}: must be >= 0, got {checked[key]}")
    for key in ("input_height", "input_width"):
        if checked[key] % 32:
            raise ConfigError(f"{key}: {checked[key]} is not a multiple of 32 (BTS downsamples by 32)")
    if checked["end_learning_rate"] != -1 and not 0 <= checked["end_learning_rate"] <= checked["learning_rate"]:
        raise ConfigError(f"end_learning_rate: must be -1 or in [0, learning_rate], got {checked['end_learning_rate']}")
    if checked["checkpoint_path"] and checked["load_weights_folder"]:
        raise ConfigError("checkpoint_path (torch) and load_weights_folder (Paddle): set at most one")
    resumed = next((key for key in ("checkpoint_path", "load_weights_folder") if checked[key]), None)
    if checked["encoder_weights"] and resumed:
        raise ConfigError(f"encoder_weights (a fresh run's ImageNet encoder) and {resumed} (a saved run's weights): "
                          f"set one of them")
    if not checked["synthetic"]:
        for key in ("data_path", "gt_path", "filenames_file"):
            if not checked[key]:
                raise ConfigError(f"{key}: not set (or set synthetic: true to train on a synthetic tree)")
    return checked


def _dataset_defaults(config):
    """The dataset's official values for the keys left at None (as bts_data.DataConfig.resolved fills them)."""
    dataset = config["dataset"]
    height, width = DEFAULT_INPUT_SIZE[dataset]
    pick = lambda key, default: default if config[key] is None else config[key]   # noqa: E731
    return {"max_depth": pick("max_depth", DEFAULT_MAX_DEPTH[dataset]), "input_height": int(pick("input_height", height)),
            "input_width": int(pick("input_width", width)), "do_kb_crop": bool(pick("do_kb_crop", dataset == "kitti")),
            "degree": float(pick("degree", DEFAULT_DEGREE[dataset]))}


def end_learning_rate(config):
    return config["end_learning_rate"] if config["end_learning_rate"] != -1 else 0.1 * config["learning_rate"]


def load_config(path, overrides=()):
    """Reads a YAML config and applies `key=value` overrides (values parsed as YAML); returns it validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        try:
            config[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: value is not valid YAML") from None
    return validate(config)


def parse_args(argv, description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, metavar="YAML", help="e.g. configs/bts_kitti.yaml")
    # extend: `-o a=1 -o b=2` and `-o a=1 b=2` both keep every override (a later -o adds, never replaces)
    parser.add_argument("-o", "--opt", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override config values, e.g. -o batch_size=2 -o num_epochs=1 (or -o batch_size=2 "
                             "num_epochs=1)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the checkpoints an earlier run left in <log_directory>/<model_name>")
    return parser.parse_args(argv)
