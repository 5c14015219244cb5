"""BTS in PaddlePaddle: official maths and decoder names, paddle.vision encoders, PaddleDepth file layout."""
from bts_core.cli import quiet_paddle_import
from bts_core.spec import ENCODERS

quiet_paddle_import()   # before the first `import paddle` (paddle_bts.bn)

from paddle_bts.bn import bn_statistics, use_torch_running_var
from paddle_bts.bts import BtsModel, build_model, freeze_encoder, weights_init_xavier
from paddle_bts.checkpoint import WeightsError, check_state_dict, load_weights, read_weight_files, save_weights
from paddle_bts.loss import silog_loss


def count_parameters(model):
    """Learnable parameters only; Paddle lists BN running statistics among parameters, torch does not."""
    stats = {id(t) for t in bn_statistics(model)}
    return sum(int(p.numel()) for p in model.parameters() if id(p) not in stats)


__all__ = ["ENCODERS", "BtsModel", "build_model", "freeze_encoder", "weights_init_xavier", "load_weights", "read_weight_files", "save_weights",
           "check_state_dict", "WeightsError", "silog_loss", "count_parameters", "use_torch_running_var",
           "bn_statistics"]
