"""bts_data samples through torch's Dataset / DataLoader: the same batches as paddle_bts.data."""
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bts_data import BtsSamples, batch_indices, collate


class BtsDataset(Dataset):
    """Sample `index` of the current epoch; call `set_epoch` before iterating an epoch's loader."""

    def __init__(self, samples, seed=0, epoch=0):
        self.samples = samples if isinstance(samples, BtsSamples) else BtsSamples(samples)
        self.seed, self.epoch = int(seed), int(epoch)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples.sample(int(index), self.epoch, self.seed)


def to_tensors(batch):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def collate_tensors(samples):
    return to_tensors(collate(samples))


def make_loader(samples, batch_size, seed=0, epoch=0, shuffle=True, num_workers=0, drop_last=True,
                skip_batches=0):
    """One epoch's DataLoader: batches from `bts_data.batch_indices(len, batch_size, seed, epoch, ...)`.

    Yields dicts of tensors: image Bx3xHxW, focal B, has_valid_depth B (bool), depth Bx1xHxW when present.
    `samples`: a BtsSamples, a DataConfig, or a BtsDataset (its epoch and seed are set to these).
    `skip_batches`: the epoch's first batches to leave out (a run resumed within the epoch did them).
    """
    dataset = samples if isinstance(samples, BtsDataset) else BtsDataset(samples)
    dataset.seed = int(seed)
    dataset.set_epoch(epoch)
    batches = batch_indices(len(dataset), batch_size, seed, epoch, shuffle=shuffle, drop_last=drop_last)[skip_batches:]
    return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate_tensors)
