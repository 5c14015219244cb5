"""The ground floor: framework-free facts and plumbing every other package builds on.

- `spec`: the official BTS network's numbers (encoders, decoder layout, BN constants, evaluation protocol).
- `config`: the training configuration schema (YAML, PaddleDepth-style -o overrides).
- `cli`: one-line errors and exit codes, outputs staged under temporary names, progress bars.
- `run`: a training run's bookkeeping (loss log, checkpoint cadence, summary line).
- `depth_files`: depth maps as official uint16 PNGs and colour views.
Imports numpy, pandas, PIL, PyYAML and tqdm; never torch or paddle, and nothing of this project above it.
"""
