"""Writing PaddleDepth's two weight files from converted arrays (paddle_bts.checkpoint reads them)."""
import paddle

from bts_core.cli import progress
from conversion.manifest import file_entry
from paddle_bts.checkpoint import PART_FILES


def write_parts(parts, folder, hasher):
    """Writes {encoder: {...}, decoder: {...}} of numpy arrays; returns {file name: future of size and sha256}.

    numpy rather than Paddle tensors: paddle.load returns Tensors either way (so PaddleDepth's
    set_state_dict and paddle_bts.load_weights see no difference), and this skips a copy of every
    tensor into Paddle plus Paddle's slower pickling of tensors (0.38 s vs 1.1 s for densenet161's encoder).
    Each file is hashed by `hasher` (an executor) while the next one is written: hashlib releases the GIL.
    """
    total = sum(a.nbytes for state in parts.values() for a in state.values())
    entries = {}
    with progress(total=total, unit="B", unit_scale=True, desc="write") as bar:
        for part, name in PART_FILES.items():
            paddle.save(parts[part], str(folder / name))
            entries[name] = hasher.submit(file_entry, folder / name)
            bar.update(sum(a.nbytes for a in parts[part].values()))
    return entries

