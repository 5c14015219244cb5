"""The figures the BTS authors publish for their downloadable PyTorch models (the bts_*_v2_pytorch_*.zip
files), by dataset and encoder; the reproduction recipe prints them beside ours.

Source: cleinc/bts README.md, "Model Zoo" (commit 5e3406b3; pytorch/README.md repeats them): KITTI Eigen
split, cap 0-80 m (KB crop, Garg crop, min 1e-3, max 80), and NYU Depth v2 (Eigen crop, max 10), as
printed there to three decimals (SILog two). mobilenetv2_bts has no published figures (NYU: "TBA").
"""
from bts_core.spec import METRIC_NAMES

# The README's column order: d1, d2, d3, AbsRel, SqRel, RMSE, RMSElog, SILog, log10.
README_COLUMNS = ("d1", "d2", "d3", "abs_rel", "sq_rel", "rms", "log_rms", "silog", "log10")
_README_ROWS = {
    ("kitti", "resnet50_bts"): (0.954, 0.992, 0.998, 0.061, 0.250, 2.803, 0.098, 9.030, 0.027),
    ("kitti", "resnet101_bts"): (0.954, 0.992, 0.998, 0.061, 0.261, 2.834, 0.099, 9.075, 0.027),
    ("kitti", "resnext50_bts"): (0.954, 0.993, 0.998, 0.061, 0.245, 2.774, 0.098, 9.014, 0.027),
    ("kitti", "resnext101_bts"): (0.956, 0.993, 0.998, 0.059, 0.241, 2.756, 0.096, 8.781, 0.026),
    ("kitti", "densenet121_bts"): (0.951, 0.993, 0.998, 0.063, 0.256, 2.850, 0.100, 9.221, 0.028),
    ("kitti", "densenet161_bts"): (0.955, 0.993, 0.998, 0.060, 0.249, 2.798, 0.096, 8.933, 0.027),
    ("nyu", "resnet50_bts"): (0.865, 0.975, 0.993, 0.119, 0.075, 0.419, 0.152, 12.368, 0.051),
    ("nyu", "resnet101_bts"): (0.871, 0.977, 0.995, 0.113, 0.068, 0.407, 0.148, 11.886, 0.049),
    ("nyu", "resnext50_bts"): (0.867, 0.977, 0.995, 0.116, 0.070, 0.414, 0.150, 12.186, 0.050),
    ("nyu", "resnext101_bts"): (0.880, 0.977, 0.994, 0.111, 0.069, 0.399, 0.145, 11.680, 0.048),
    ("nyu", "densenet121_bts"): (0.871, 0.977, 0.993, 0.118, 0.072, 0.410, 0.149, 12.028, 0.050),
    ("nyu", "densenet161_bts"): (0.885, 0.978, 0.994, 0.110, 0.066, 0.392, 0.142, 11.533, 0.047),
}
PUBLISHED_SOURCE = "official cleinc/bts README, Model Zoo (the downloadable PyTorch models)"


def published_metrics(dataset, encoder):
    """{metric: figure} in METRIC_NAMES order, or None where the authors publish none."""
    row = _README_ROWS.get((dataset, encoder))
    return None if row is None else {name: dict(zip(README_COLUMNS, row))[name] for name in METRIC_NAMES}
