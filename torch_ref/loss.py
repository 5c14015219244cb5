import torch
import torch.nn as nn


class silog_loss(nn.Module):  # noqa: N801 - official name
    """Scale-invariant log loss of the official training: sqrt(mean(d^2) - focus * mean(d)^2) * 10.

    An all-masked batch has no defined value in the official code (mean of nothing gives NaN); here it
    is defined as NaN explicitly in both frameworks, so a caller can skip the step consistently.
    """

    def __init__(self, variance_focus=0.85):
        super().__init__()
        self.variance_focus = variance_focus

    def forward(self, depth_est, depth_gt, mask):
        d = torch.log(depth_est[mask]) - torch.log(depth_gt[mask])
        return torch.sqrt((d ** 2).mean() - self.variance_focus * (d.mean() ** 2)) * 10.0
