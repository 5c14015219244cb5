"""The official BTS data pipeline without a deep-learning framework (numpy + PIL): filenames files,
train/test preprocessing with explicit random generators, reproducible samples, synthetic trees."""
from bts_data.dataset import DataConfig, BtsSamples, MODES, batch_indices, collate, with_ground_truth
from bts_data.filelist import DataError, FilelistError, Sample, read_filelist, write_filelist
from bts_data.synthetic import SyntheticTree, write_tree

__all__ = ["DataConfig", "DataError", "BtsSamples", "MODES", "batch_indices", "collate", "with_ground_truth", "FilelistError", "Sample",
           "read_filelist", "write_filelist", "SyntheticTree", "write_tree"]
