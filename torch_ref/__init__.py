"""PyTorch reference BTS, faithful to the official cleinc/bts code (names, maths, checkpoints)."""
from bts_core.spec import ENCODERS
from torch_ref.bts import BtsModel, build_model, freeze_encoder, weights_init_xavier
from torch_ref.checkpoint import (Checkpoint, CheckpointError, load_official_checkpoint, read_checkpoint,
                                 read_state_dict, save_official_checkpoint)
from torch_ref.loss import silog_loss
from torch_ref.reference import seeded_reference_model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


__all__ = ["ENCODERS", "BtsModel", "build_model", "freeze_encoder", "weights_init_xavier", "load_official_checkpoint",
           "read_state_dict", "read_checkpoint", "Checkpoint", "save_official_checkpoint", "CheckpointError", "silog_loss", "count_parameters", "seeded_reference_model"]
