"""A process-wide setting changed for one block of code and restored after it, even on error."""
import contextlib


@contextlib.contextmanager
def temporarily(get, set_to, value):
    """Sets a setting through `set_to(value)` for the block, then back to what `get()` read before."""
    before = get()
    set_to(value)
    try:
        yield
    finally:
        set_to(before)
