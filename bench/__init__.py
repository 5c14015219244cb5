"""Speed of BTS in torch and Paddle, side by side: `python -m bench` (see bench/cli.py)."""
