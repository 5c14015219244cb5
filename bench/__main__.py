import sys
import warnings

# `import paddle` warns that ccache (for custom C++ ops) is missing: irrelevant here.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)

from bench.cli import main  # noqa: E402

sys.exit(main())
