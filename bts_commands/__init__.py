"""The evaluate and predict commands, once for both frameworks: arguments, loops, metric table, outputs.

Each framework supplies only a `Framework` adapter (build and load a model, forward, its metric
mirror); `python -m torch_ref.evaluate` and `python -m paddle_bts.evaluate` are thin entry points.
Imports no deep-learning framework (floor 2: above bts_core and bts_data, below the models).
"""
from bts_commands.framework import Framework

__all__ = ["Framework"]
