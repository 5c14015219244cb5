"""The ground floor: framework-free facts and plumbing every other package builds on.

- `spec`: the official BTS network's numbers (encoders, decoder layout, BN constants, evaluation protocol).
- `config`: the training configuration schema (YAML, PaddleDepth-style -o overrides).
- `cli`: one-line errors (every user error derives from `InputError`) and exit codes, outputs staged
  under temporary names, progress bars, argument types, the filter for Paddle's ccache warning.
- `depth_files`: depth maps as official uint16 PNGs and colour views.
Imports numpy, PIL, PyYAML, tqdm (matplotlib for colour maps); never torch or paddle, nothing above it.
"""
