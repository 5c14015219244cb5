"""PaddleDepth's two weight files, as the converters write and read them (paddle_bts.checkpoint names them)."""
import paddle

from conversion.cli import progress
from conversion.manifest import file_entry
from paddle_bts.checkpoint import DECODER_FILE, ENCODER_FILE, IGNORED_HEAD_PREFIX, WeightsError

PART_FILES = {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}


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


def read_parts(folder):
    """({encoder: {...}, decoder: {...}} of numpy arrays, {dropped key: why}) from a PaddleDepth folder.

    PaddleDepth's densenet encoders carry paddle.vision's unused ImageNet head (`base_model.out.*`);
    like paddle_bts.load_weights, it is left out, and said so.
    """
    parts, dropped = {}, {}
    for part, name in PART_FILES.items():
        path = folder / name
        if not path.is_file():
            raise WeightsError(f"{path}: no such file")
        try:
            state = paddle.load(str(path), return_numpy=True)
        except Exception as e:   # paddle raises pickle, zip, value and runtime errors alike
            raise WeightsError(f"{path}: not a readable Paddle file ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
            raise WeightsError(f"{path}: not a Paddle state dict")
        for key in [k for k in state if part == "encoder" and k.startswith(IGNORED_HEAD_PREFIX)]:
            del state[key]
            dropped[f"{part}:{key}"] = "paddle.vision's unused ImageNet head (official torch encoders have none)"
        parts[part] = state
    return parts, dropped
