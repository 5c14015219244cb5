"""Weight conversion torch_ref <-> paddle_bts: rule table, strict converter, CLIs, verification, publishing."""
from bts_spec import quiet_paddle_import

quiet_paddle_import()
