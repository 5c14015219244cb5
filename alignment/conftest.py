"""Device and precision control for the alignment stages, the free disk said first, and the index written after
every run."""
import os
import tempfile

import pytest
import torch

from alignment.harness import REPORTS, clean_reports, disk_header, write_index, write_run_header
from bts_core.malloc import keep_freed_memory
from paddle_bts import onednn_conv


def pytest_addoption(parser):
    group = parser.getgroup("alignment")
    group.addoption("--torch-device", default=os.environ.get("BTS_TORCH_DEVICE", "cpu"),
                    help="device for torch_ref (cpu, cuda, cuda:1); env BTS_TORCH_DEVICE")
    group.addoption("--paddle-device", default=os.environ.get("BTS_PADDLE_DEVICE", "cpu"),
                    help="device for paddle_bts (cpu, gpu, gpu:1); env BTS_PADDLE_DEVICE")
    group.addoption("--tf32", action="store_true", default=os.environ.get("BTS_TF32") == "1",
                    help="allow TF32 in torch's CUDA convolutions and matmuls (off by default for parity)")


def pytest_configure(config):
    # Paddle's eager convolutions as train / evaluate / predict run them (tests/conftest.py does the same)
    onednn_conv.enable_from_environment()
    keep_freed_memory()   # as the commands run (tests/conftest.py does the same)
    os.environ["BTS_TORCH_DEVICE"] = config.getoption("--torch-device")
    os.environ["BTS_PADDLE_DEVICE"] = config.getoption("--paddle-device")
    tf32 = config.getoption("--tf32")
    # cudnn's TF32 is on by default in torch: parity needs it off unless asked for.
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("FLAGS_cudnn_deterministic", "1")
    if config.getoption("--torch-device").startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError("--torch-device cuda asked for, but torch sees no CUDA device")
    import paddle
    paddle.set_device(config.getoption("--paddle-device"))


def pytest_report_header(config):
    return disk_header({"reports": REPORTS, "tmp": tempfile.gettempdir()})   # a full disk, said first


def pytest_sessionstart(session):
    # The index shows this run only: case folders an earlier run left would contradict it.
    clean_reports()
    write_run_header(" ".join(session.config.invocation_params.args))


def pytest_sessionfinish(session, exitstatus):
    index = write_index()
    if index is not None:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(f"alignment index: {index}")
