"""BTS in Paddle: the mirror of torch_ref/bts.py, layer for layer, with the official sub-layer names.

The decoder's state dict is PaddleDepth's `depth.pdparams` layout. Where PaddleDepth's port is wrong,
this one follows the official code: BN momentum 0.99 (= torch 0.01), per-layer eps, focal scaling for
KITTI, Xavier only on decoder convs (no global initializer), and BN running variance updated as torch.
"""
import math
from contextlib import contextmanager

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from bts_core.spec import (ACONV_BN_EPS, DATASETS, DECODER_BN_EPS, DECODER_BN_MOMENTUM, KITTI_FOCAL,
                      NORMALIZE_EPS, check_encoder, check_input_size, decoder_layout, reduction_stages)
from paddle_bts.bn import batch_norm as _batch_norm, use_torch_running_var
from paddle_bts.encoders import encoder


def batch_norm(channels, eps=DECODER_BN_EPS):
    return _batch_norm(channels, torch_momentum=DECODER_BN_MOMENTUM, eps=eps)


@paddle.jit.not_to_static   # plain Python while tracing: its branches depend on Python values only
def resize_nearest(x, ratio):
    """F.interpolate(x, scale_factor=ratio, mode="nearest") for ratio = r or 1 / r, r an integer.

    Eager runs exactly that. A static graph (paddle.jit export) gets the same copies without the
    `nearest_interp` op, which Paddle Inference 3.3.1 cannot run under oneDNN (its `scale` attribute is
    a double array the oneDNN executor does not convert; Paddle issue #79749). Nearest with r keeps every
    r-th row and column for 1 / r (source index floor(dst * r)); with r it repeats every pixel r x r times,
    here `repeat_pixels`. Both forms agree bit for bit (tests/test_export_bench.py, Paddle Inference with
    oneDNN included).
    """
    if paddle.in_dynamic_mode():
        return F.interpolate(x, scale_factor=ratio, mode="nearest")
    if ratio >= 1:
        r = int(ratio)
        assert r == ratio, f"integer upsampling only, got {ratio}"
        return repeat_pixels(x, r)
    r = int(round(1 / ratio))
    assert r * ratio == 1, f"downsampling by 1 / integer only, got {ratio}"
    return x[:, :, ::r, ::r]


def repeat_pixels(x, r):
    """Every pixel r x r times, for a static graph: a transposed convolution with a ones r x r kernel per
    channel (groups = channels) and stride r. The kernel tiles the output without overlap, so each output
    pixel is one product x * 1.0, the value itself. It runs as oneDNN's multithreaded deconvolution; the
    broadcast copy it replaces (unsqueeze + expand + reshape) is a single-threaded native kernel: 64 x 176 x
    352 upsampled in 44 ms against 110 ms, 2208 x 11 x 22 in 1.6 ms against 13.9 ms (AMD EPYC, 2 threads,
    the output copy included). _C_ops, not F.conv2d_transpose: for groups = channels that picks Paddle's
    native depthwise kernel, which oneDNN does not take (40.8 ms, 6.0 ms).
    """
    channels = x.shape[1]
    ones = paddle.ones([channels, 1, r, r], dtype=x.dtype)
    return paddle._C_ops.conv2d_transpose(x, ones, [r, r], [0, 0], [], [], "EXPLICIT", channels, [1, 1], "NCHW")


# UPSAMPLE_TAPS[k][r]: 1 where tap r of a 3 x 3 kernel's row (column) lands on tap k of the 4 x 4 transposed
# kernel below. An output row 2t reads source rows t - 1 (tap 0) and t (taps 1, 2); a row 2t + 1 reads
# t (taps 0, 1) and t + 1 (tap 2); with stride 2 and padding 1 those are transposed taps 3, 1, 2 and 0.
UPSAMPLE_TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))
UPSAMPLE_KERNEL = "upsample_kernel"     # an upconv's attribute while upconvs_transposed holds


def upsample_kernel(weight):
    """[cout, cin, 3, 3] -> [cin, cout, 4, 4], the transposed convolution (stride 2, padding 1) that equals
    nearest x2 upsampling followed by the 3 x 3 convolution with padding 1: each 3 x 3 row (column) tap
    folded onto the 4 x 4 tap that reads the same source pixel (UPSAMPLE_TAPS), summed."""
    fold = paddle.to_tensor(UPSAMPLE_TAPS, dtype=weight.dtype)                       # [k, r]
    return paddle.matmul(paddle.matmul(fold, weight), fold, transpose_y=True).transpose([1, 0, 2, 3])


def upsample2_conv3x3(x, kernel):
    """conv3x3(nearest x2 upsampling of x) with padding 1 and no bias, the official upconv, for a static graph;
    `kernel` is the 3 x 3 weight's `upsample_kernel`.

    One transposed convolution (stride 2, padding 1) at x's resolution: every output pixel reads a 2 x 2
    source window, so it does 4/9 of the direct form's multiply-adds and the upsampled input is never
    written. oneDNN runs it as its NHWC brgemm deconvolution, so the decoder stays in the layout of the
    convolutions around it. (The earlier form, one 2 x 2 convolution giving the four phases and a grouped 0/1
    transposed convolution interleaving them, did the same multiply-adds, but oneDNN ran the interleave as a
    GEMM in plain NCHW, with reorders and plain-layout batch norms after it.) Summing taps before multiplying
    rounds differently from the direct form, within fp32 noise (tests/test_export_bench.py; the `deploy`
    stage).
    """
    return F.conv2d_transpose(x, kernel, stride=2, padding=1)


def conv_elu(cin, cout):
    return nn.Sequential(nn.Conv2D(cin, cout, 3, 1, 1, bias_attr=False), nn.ELU())


class atrous_conv(nn.Layer):  # noqa: N801 - official names keep checkpoint keys
    def __init__(self, cin, cout, dilation, apply_bn_first=True):
        super().__init__()
        self.atrous_conv = nn.Sequential()
        if apply_bn_first:
            self.atrous_conv.add_sublayer("first_bn", batch_norm(cin))
        self.atrous_conv.add_sublayer("aconv_sequence", nn.Sequential(
            nn.ReLU(),
            nn.Conv2D(cin, cout * 2, kernel_size=1, bias_attr=False),
            batch_norm(cout * 2, eps=ACONV_BN_EPS),
            nn.ReLU(),
            nn.Conv2D(cout * 2, cout, kernel_size=3, padding=dilation, dilation=dilation, bias_attr=False)))

    def forward(self, x):
        return self.atrous_conv(x)


class upconv(nn.Layer):  # noqa: N801
    def __init__(self, cin, cout, ratio=2):
        super().__init__()
        self.elu = nn.ELU()
        self.conv = nn.Conv2D(cin, cout, kernel_size=3, padding=1, bias_attr=False)
        self.ratio = ratio

    def forward(self, x):
        kernel = getattr(self, UPSAMPLE_KERNEL, None)     # set only while an export traces (upconvs_transposed)
        if kernel is not None:        # the same function, 4/9 of the work
            return self.elu(upsample2_conv3x3(x, kernel))
        return self.elu(self.conv(resize_nearest(x, self.ratio)))


@contextmanager
def upconvs_transposed(model):
    """For an export (static graph): every ratio-2 upconv in `model` runs as one transposed convolution
    (upsample2_conv3x3), its kernel folded here, once, into a parameter of its own that the program saves.
    Folding kernels inside the graph instead broke Paddle Inference's bf16 passes (Intel AMX, Paddle 3.3.1:
    conv2d got the 6-D filter [512, 2, 2, 1280, 2, 2], the reshape before it lost). The model is as before
    afterwards."""
    layers = [layer for layer in model.sublayers(include_self=True) if isinstance(layer, upconv) and layer.ratio == 2]
    for layer in layers:
        with paddle.no_grad():
            kernel = upsample_kernel(layer.conv.weight)
        setattr(layer, UPSAMPLE_KERNEL, paddle.create_parameter(
            kernel.shape, kernel.dtype, default_initializer=nn.initializer.Assign(kernel)))
    try:
        yield
    finally:
        for layer in layers:
            delattr(layer, UPSAMPLE_KERNEL)


class reduction_1x1(nn.Layer):  # noqa: N801
    def __init__(self, cin, cout, max_depth, is_final=False):
        super().__init__()
        self.max_depth = max_depth
        self.is_final = is_final
        self.sigmoid = nn.Sigmoid()
        self.reduc = nn.Sequential()
        for name, i, o in reduction_stages(cin, cout, is_final):
            conv = nn.Conv2D(i, o, kernel_size=1, bias_attr=False)
            if name == "plane_params":
                self.reduc.add_sublayer(name, conv)
            else:
                self.reduc.add_sublayer(name, nn.Sequential(conv, nn.Sigmoid() if name == "final" else nn.ELU()))

    def forward(self, net):
        net = self.reduc(net)
        if self.is_final:
            return net
        theta = self.sigmoid(net[:, 0, :, :]) * math.pi / 3
        phi = self.sigmoid(net[:, 1, :, :]) * math.pi * 2
        dist = self.sigmoid(net[:, 2, :, :]) * self.max_depth
        n1 = paddle.multiply(paddle.sin(theta), paddle.cos(phi)).unsqueeze(1)
        n2 = paddle.multiply(paddle.sin(theta), paddle.sin(phi)).unsqueeze(1)
        n3 = paddle.cos(theta).unsqueeze(1)
        n4 = dist.unsqueeze(1)
        return paddle.concat([n1, n2, n3, n4], axis=1)


class local_planar_guidance(nn.Layer):  # noqa: N801
    def __init__(self, upratio):
        super().__init__()
        self.upratio = int(upratio)

    def offsets(self, n, like):
        """Within-block offsets (i - (r-1)/2) / r, tiled n times, in the input's dtype (and place)."""
        r = self.upratio
        base = (paddle.arange(r).astype(like.dtype) - (r - 1) * 0.5) / float(r)
        return paddle.tile(base, [n])

    def forward(self, plane_eq, focal):
        r = self.upratio
        if paddle.in_dynamic_mode():   # the official op, and its gradient, in training
            plane = paddle.repeat_interleave(paddle.repeat_interleave(plane_eq, r, 2), r, 3)
            n1, n2, n3, n4 = plane[:, 0], plane[:, 1], plane[:, 2], plane[:, 3]
        else:   # an export: the same copies, by channel (oneDNN cannot slice a channel of repeat_pixels' output)
            n1, n2, n3, n4 = (repeat_pixels(plane_eq[:, i:i + 1], r).squeeze(1) for i in range(4))
        u = self.offsets(plane_eq.shape[3], plane_eq).reshape([1, 1, -1])   # varies along W
        v = self.offsets(plane_eq.shape[2], plane_eq).reshape([1, -1, 1])   # varies along H
        return n4 / (n1 * u + n2 * v + n3)


def plane_equation(reduc):
    """L2-normalised normal (channels 0-2) with the plane distance (channel 3) appended."""
    normal = F.normalize(reduc[:, :3, :, :], p=2, axis=1, epsilon=NORMALIZE_EPS)
    return paddle.concat([normal, reduc[:, 3, :, :].unsqueeze(1)], 1)


class bts(nn.Layer):  # noqa: N801 - the official decoder class
    def __init__(self, feat_out_channels, max_depth=80.0, dataset="kitti", num_features=512):
        super().__init__()
        self.max_depth, self.dataset = max_depth, dataset
        L = decoder_layout(num_features, feat_out_channels)
        F4 = num_features // 4
        self.upconv5 = upconv(*L["upconv5"])
        self.bn5 = batch_norm(num_features)
        self.conv5 = conv_elu(*L["conv5"])
        self.upconv4 = upconv(*L["upconv4"])
        self.bn4 = batch_norm(num_features // 2)
        self.conv4 = conv_elu(*L["conv4"])
        self.bn4_2 = batch_norm(num_features // 2)
        self.daspp_3 = atrous_conv(*L["daspp_3"], 3, apply_bn_first=False)
        self.daspp_6 = atrous_conv(*L["daspp_6"], 6)
        self.daspp_12 = atrous_conv(*L["daspp_12"], 12)
        self.daspp_18 = atrous_conv(*L["daspp_18"], 18)
        self.daspp_24 = atrous_conv(*L["daspp_24"], 24)
        self.daspp_conv = conv_elu(*L["daspp_conv"])
        self.reduc8x8 = reduction_1x1(*L["reduc8x8"], max_depth)
        self.lpg8x8 = local_planar_guidance(8)
        self.upconv3 = upconv(*L["upconv3"])
        self.bn3 = batch_norm(F4)
        self.conv3 = conv_elu(*L["conv3"])
        self.reduc4x4 = reduction_1x1(*L["reduc4x4"], max_depth)
        self.lpg4x4 = local_planar_guidance(4)
        self.upconv2 = upconv(*L["upconv2"])
        self.bn2 = batch_norm(num_features // 8)
        self.conv2 = conv_elu(*L["conv2"])
        self.reduc2x2 = reduction_1x1(*L["reduc2x2"], max_depth)
        self.lpg2x2 = local_planar_guidance(2)
        self.upconv1 = upconv(*L["upconv1"])
        self.reduc1x1 = reduction_1x1(*L["reduc1x1"], max_depth, is_final=True)
        self.conv1 = conv_elu(*L["conv1"])
        self.get_depth = nn.Sequential(nn.Conv2D(*L["get_depth"], 3, 1, 1, bias_attr=False), nn.Sigmoid())

    def scaled_depth(self, reduc, lpg, focal):
        return lpg(plane_equation(reduc), focal).unsqueeze(1) / self.max_depth

    def forward(self, features, focal):
        skip0, skip1, skip2, skip3, dense = features
        dense = F.relu(dense)
        iconv5 = self.conv5(paddle.concat([self.bn5(self.upconv5(dense)), skip3], axis=1))
        concat4 = paddle.concat([self.bn4(self.upconv4(iconv5)), skip2], axis=1)
        iconv4 = self.bn4_2(self.conv4(concat4))

        daspp_3 = self.daspp_3(iconv4)
        concat4_2 = paddle.concat([concat4, daspp_3], axis=1)
        daspp_6 = self.daspp_6(concat4_2)
        concat4_3 = paddle.concat([concat4_2, daspp_6], axis=1)
        daspp_12 = self.daspp_12(concat4_3)
        concat4_4 = paddle.concat([concat4_3, daspp_12], axis=1)
        daspp_18 = self.daspp_18(concat4_4)
        concat4_5 = paddle.concat([concat4_4, daspp_18], axis=1)
        daspp_24 = self.daspp_24(concat4_5)
        daspp_feat = self.daspp_conv(paddle.concat([iconv4, daspp_3, daspp_6, daspp_12, daspp_18, daspp_24], axis=1))

        depth_8x8_scaled = self.scaled_depth(self.reduc8x8(daspp_feat), self.lpg8x8, focal)
        depth_8x8_scaled_ds = resize_nearest(depth_8x8_scaled, 0.25)
        iconv3 = self.conv3(paddle.concat([self.bn3(self.upconv3(daspp_feat)), skip1, depth_8x8_scaled_ds], axis=1))

        depth_4x4_scaled = self.scaled_depth(self.reduc4x4(iconv3), self.lpg4x4, focal)
        depth_4x4_scaled_ds = resize_nearest(depth_4x4_scaled, 0.5)
        iconv2 = self.conv2(paddle.concat([self.bn2(self.upconv2(iconv3)), skip0, depth_4x4_scaled_ds], axis=1))

        depth_2x2_scaled = self.scaled_depth(self.reduc2x2(iconv2), self.lpg2x2, focal)

        upconv1 = self.upconv1(iconv2)
        reduc1x1 = self.reduc1x1(upconv1)
        iconv1 = self.conv1(paddle.concat([upconv1, reduc1x1, depth_2x2_scaled, depth_4x4_scaled, depth_8x8_scaled], axis=1))
        final_depth = self.max_depth * self.get_depth(iconv1)
        if self.dataset == "kitti":
            final_depth = final_depth * focal.reshape([-1, 1, 1, 1]).astype("float32") / KITTI_FOCAL
        return depth_8x8_scaled, depth_4x4_scaled, depth_2x2_scaled, reduc1x1, final_depth


class BtsModel(nn.Layer):
    def __init__(self, encoder_name, max_depth=80.0, dataset="kitti", bts_size=512):
        super().__init__()
        check_encoder(encoder_name)
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
        self.encoder_name = encoder_name
        # Paddle keys optimizer state (.pdopt) by parameter name (conv2d_0.w_0, ...): a fresh name scope
        # gives every BtsModel of an encoder the same names, whatever the process built before.
        with paddle.utils.unique_name.guard():
            self.encoder = encoder(encoder_name)
            self.decoder = bts(self.encoder.feat_out_channels, max_depth, dataset, bts_size)

    def forward(self, x, focal):
        check_input_size(x.shape[-2], x.shape[-1])
        return self.decoder(self.encoder(x), focal)


def weights_init_xavier(layer):
    if isinstance(layer, nn.Conv2D):
        nn.initializer.XavierUniform()(layer.weight)
        if layer.bias is not None:
            nn.initializer.Constant(0.0)(layer.bias)


def build_model(encoder, max_depth=80.0, dataset="kitti", bts_size=512, torch_running_var=True):
    """A BtsModel initialised as official training starts it: Xavier on decoder convs, BN gamma 1, beta 0.

    `torch_running_var=False` keeps Paddle's own BN variance update (biased), e.g. to measure the gap.
    """
    model = BtsModel(encoder, max_depth, dataset, bts_size)
    model.decoder.apply(weights_init_xavier)
    if torch_running_var:
        use_torch_running_var(model)
    return model


def freeze_encoder(model):
    """Official default freezing (first conv and encoder BN parameters); returns the frozen names.

    BN running statistics are not learnable in either framework and are not listed."""
    from bts_core.spec import is_frozen
    from paddle_bts.bn import bn_statistics
    stats = {id(t) for t in bn_statistics(model)}
    frozen = []
    for name, param in model.encoder.named_parameters():
        if id(param) not in stats and is_frozen(model.encoder_name, "paddle", name):
            param.stop_gradient = True
            frozen.append(f"encoder.{name}")
    return frozen
