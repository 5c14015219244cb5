"""torch's intra-op thread count for a block of code."""
import torch

from bts_core.scoped import temporarily


def torch_threads(count):
    return temporarily(torch.get_num_threads, torch.set_num_threads, count)
