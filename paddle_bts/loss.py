import paddle
import paddle.nn as nn


class silog_loss(nn.Layer):  # noqa: N801 - official name
    """Scale-invariant log loss, as torch_ref.silog_loss (an all-masked batch gives NaN in both)."""

    def __init__(self, variance_focus=0.85):
        super().__init__()
        self.variance_focus = variance_focus

    def forward(self, depth_est, depth_gt, mask):
        d = paddle.log(paddle.masked_select(depth_est, mask)) - paddle.log(paddle.masked_select(depth_gt, mask))
        return paddle.sqrt((d ** 2).mean() - self.variance_focus * (d.mean() ** 2)) * 10.0
