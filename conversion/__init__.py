"""Weight conversion torch_ref <-> paddle_bts: rule table, strict converter, CLIs, verification, publishing."""
import warnings

# `import paddle` warns that ccache (a compiler cache for custom C++ ops) is missing: irrelevant here,
# and it would break the CLIs' promise of a single `error: ...` line on stderr.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
