"""Speed of BTS in torch and Paddle, side by side: `python -m bench` (see bench/cli.py)."""
from bts_core.cli import quiet_paddle_import

quiet_paddle_import()   # for `python -m bench` and its workers (`python -m bench.worker`)

TORCH_CPU = "torch eager cpu"   # the reference backend every ratio is taken against
