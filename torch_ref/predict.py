"""`python -m torch_ref.predict`: depth maps of an official test list or a folder of images
(bts_commands.predict) with torch_ref."""
import sys
from functools import partial

from bts_commands import predict as loop
from torch_ref.evaluate import TORCH

main = partial(loop.main, TORCH)

if __name__ == "__main__":
    sys.exit(main())
