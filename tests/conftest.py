"""Fixtures shared by several test files."""
import contextlib

import pytest
import torch

from torch_ref.stand_in import train_stand_in

# 8 epochs of 8 steps (16 frames, batch 2): held-out abs_rel falls from 0.222 (untrained) to 0.082 (measured;
# tests/test_stand_in.py states the figures), a trained network in about 40 s of one CPU thread.
STAND_IN_EPOCHS = 8


@contextlib.contextmanager
def torch_threads(count):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Measured on the 2-core CI machine: while other processes share the cores, torch's two OpenMP
    threads made a densenet161 forward 10-20x slower (0.3 s -> 4-10 s); one thread stays ~0.5 s."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory):
    """The trained stand-in (torch_ref.stand_in), made once per session: an official best checkpoint."""
    # one thread, as one_torch_thread: its 64 steps took 687 s on two threads beside other processes, ~40 s on one
    with torch_threads(1):
        return train_stand_in(tmp_path_factory.mktemp("stand_in"), num_epochs=STAND_IN_EPOCHS)
