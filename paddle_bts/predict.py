"""`python -m paddle_bts.predict`: depth maps of an official test list or a folder of images
(bts_commands.predict) with paddle_bts."""
import sys
from functools import partial

from bts_commands import predict as loop
from paddle_bts.evaluate import PADDLE

main = partial(loop.main, PADDLE)

if __name__ == "__main__":
    sys.exit(main())
