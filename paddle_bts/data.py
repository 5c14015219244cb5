"""bts_data samples through Paddle's Dataset / DataLoader: the same batches as torch_ref.data.

An error while loading a sample reaches the caller as an exception, never as a hang: Paddle 3.3.1's
single-process DataLoader reads in a thread whose `fetch` call is outside the thread's error handling,
so an exception there ends the thread without closing its queue, and the main thread then waits
forever (reproduced: a missing image hung `for batch in loader`). The dataset therefore returns a
failure as data (its message as bytes), and `BtsLoader` raises it in the caller's thread.
"""
import numpy as np
import paddle
from paddle.io import DataLoader, Dataset

from bts_data import BtsSamples, DataError, batch_indices, collate

FAILURE_KEY = "failure"


class _Failure:
    def __init__(self, error):
        self.kind = "DataError" if isinstance(error, DataError) else type(error).__name__
        self.message = str(error)

    def as_batch(self):
        return {FAILURE_KEY: np.frombuffer(f"{self.kind}\n{self.message}".encode("utf-8"), np.uint8).copy()}


def _raise_failure(encoded):
    kind, _, message = bytes(encoded.numpy().astype(np.uint8)).decode("utf-8").partition("\n")
    if kind == "DataError":
        raise DataError(message)
    raise RuntimeError(f"{kind} while loading a sample: {message}")


class BtsDataset(Dataset):
    """Sample `index` of the current epoch; call `set_epoch` before iterating an epoch's loader."""

    def __init__(self, samples, seed=0, epoch=0):
        super().__init__()
        self.samples = samples if isinstance(samples, BtsSamples) else BtsSamples(samples)
        self.seed, self.epoch = int(seed), int(epoch)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        try:
            return self.samples.sample(int(index), self.epoch, self.seed)
        except Exception as error:   # carried to the caller's thread (see the module docstring)
            return _Failure(error)


def collate_or_failure(samples):
    """bts_data.collate, or the first failure as a one-entry batch Paddle can move as a tensor."""
    failure = next((s for s in samples if isinstance(s, _Failure)), None)
    if failure is None:
        try:
            return collate(samples)
        except Exception as error:
            failure = _Failure(error)
    return failure.as_batch()


def to_tensors(batch):
    return {k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in batch.items()}


class FixedBatches:
    """A batch sampler over precomputed index lists (Paddle asks only for iteration and length)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


class BtsLoader:
    """Iterates a paddle.io.DataLoader (`.loader`) and raises a sample's loading error here."""

    def __init__(self, loader, batches):
        self.loader, self.batches = loader, batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.loader:
            if FAILURE_KEY in batch:
                _raise_failure(batch[FAILURE_KEY])
            yield batch


def make_loader(samples, batch_size, seed=0, epoch=0, shuffle=True, num_workers=0, drop_last=True,
                skip_batches=0):
    """One epoch's loader: batches from `bts_data.batch_indices(len, batch_size, seed, epoch, ...)`.

    Yields dicts of tensors: image Bx3xHxW, focal B, has_valid_depth B (bool), depth Bx1xHxW when present.
    `samples`: a BtsSamples, a DataConfig, or a BtsDataset (its epoch and seed are set to these).
    `skip_batches`: the epoch's first batches to leave out (a run resumed within the epoch did them).
    Collation returns numpy arrays, which Paddle turns into tensors (in worker processes, through shared
    memory, when num_workers > 0).
    """
    dataset = samples if isinstance(samples, BtsDataset) else BtsDataset(samples)
    dataset.seed = int(seed)
    dataset.set_epoch(epoch)
    batches = batch_indices(len(dataset), batch_size, seed, epoch, shuffle=shuffle, drop_last=drop_last)[skip_batches:]
    loader = DataLoader(dataset, batch_sampler=FixedBatches(batches), num_workers=num_workers,
                        collate_fn=collate_or_failure)
    return BtsLoader(loader, batches)
