"""Weight conversion torch_ref <-> paddle_bts: rule table, strict converter, CLIs, verification, publishing."""
from bts_core.cli import quiet_paddle_import

quiet_paddle_import()
