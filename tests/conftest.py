"""Fixtures shared by several test files, and the suite's Paddle convolution kernel."""
import pytest

from bts_core.malloc import keep_freed_memory
from paddle_bts import onednn_conv
from torch_ref.stand_in import QUICK_EPOCHS, train_stand_in
from torch_ref.threads import torch_threads


def pytest_configure(config):
    # Paddle's eager convolutions as train / evaluate / predict run them, through oneDNN, unless
    # BTS_PADDLE_CONV=paddle (alignment/conftest.py does the same, so any selection runs alike)
    onednn_conv.enable_from_environment()
    # glibc malloc as the commands set it (bts_core.malloc): freed activations reused, not mapped afresh
    keep_freed_memory()


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
