"""What every command shows before it does anything, run as a user runs it (a fresh process, no terminal).

Importing paddle warns that ccache is missing (paddle/utils/cpp_extension); each way the project's
commands first import paddle hides exactly that warning (bts_core.cli.quiet_paddle_import) and nothing else.
"""
import shutil

import pytest

from as_user import run_cli

FIRST_IMPORTS_OF_PADDLE = {   # command -> the code that imports paddle first
    "paddle_bts.evaluate": ["-m", "paddle_bts.evaluate"],      # the paddle_bts package
    "paddle_bts/train.py": ["paddle_bts/train.py"],           # a file, as paddle.distributed.launch runs it
    "torch2paddle.py": ["conversion/torch2paddle.py"],        # the conversion package
    "bench_convert.py": ["conversion/bench_convert.py"],      # a file that imports paddle before conversion
}


@pytest.mark.parametrize("command", list(FIRST_IMPORTS_OF_PADDLE))
def test_no_ccache_warning(command):
    result = run_cli(*FIRST_IMPORTS_OF_PADDLE[command], "--help", timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout
    assert result.stderr == ""


def test_only_the_ccache_warning_is_hidden():
    code = "import warnings, bts_core.cli; {quiet}import paddle; warnings.warn('something else')"
    loud = run_cli("-c", code.format(quiet=""), timeout=120)
    quiet = run_cli("-c", code.format(quiet="bts_core.cli.quiet_paddle_import(); "), timeout=120)
    if shutil.which("ccache") is None:   # else paddle has nothing to warn about
        assert "UserWarning: No ccache found" in loud.stderr
    assert "ccache" not in quiet.stderr and "UserWarning: something else" in quiet.stderr
