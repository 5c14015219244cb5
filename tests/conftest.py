"""Fixtures shared by several test files."""
import pytest

from torch_ref.stand_in import QUICK_EPOCHS, train_stand_in
from torch_ref.threads import torch_threads


@pytest.fixture(scope="module")
def one_torch_thread():
    """Measured on the 2-core CI machine: while other processes share the cores, torch's two OpenMP
    threads made a densenet161 forward 10-20x slower (0.3 s -> 4-10 s); one thread stays ~0.5 s."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory):
    """The trained stand-in (torch_ref.stand_in), made once per session: an official best checkpoint."""
    return train_stand_in(tmp_path_factory.mktemp("stand_in"), num_epochs=QUICK_EPOCHS)   # on one thread
