"""Framework-neutral facts of the official BTS network, shared by `torch_ref` and `paddle_bts`.

Numbers come from the official cleinc/bts PyTorch code (see README, 'Models').
Nothing here imports a deep-learning framework, so both mirrors and the converter can use it.
"""
from dataclasses import dataclass

KITTI_FOCAL = 715.0873          # final_depth *= focal / KITTI_FOCAL when dataset == "kitti"
NYU_FOCAL = 518.8579            # NYU Depth v2 focal length (official NYU argument files)
MODEL_PARTS = ("encoder", "decoder")   # BtsModel's two children, in the official optimizer's group order
OUTPUT_NAMES = ("depth_8x8_scaled", "depth_4x4_scaled", "depth_2x2_scaled", "reduc1x1", "final_depth")
DECODER_BN_MOMENTUM = 0.01      # torch convention: running = (1 - m) * running + m * batch
DECODER_BN_EPS = 1.1e-5         # named decoder BNs and atrous `first_bn`
ACONV_BN_EPS = 1e-5             # the BN inside `aconv_sequence` uses torch's default eps
NORMALIZE_EPS = 1e-12           # F.normalize default in the plane-normal L2 normalisation
INPUT_MULTIPLE = 32             # encoders downsample by 32; H and W must be multiples of it
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODER_FILE, DECODER_FILE = "encoder.pdparams", "depth.pdparams"   # PaddleDepth's weight folder
DEPTH_SCALE = {"kitti": 256.0, "nyu": 1000.0}     # official uint16 depth PNG: value per metre


@dataclass(frozen=True)
class EncoderFacts:
    family: str                 # "densenet" | "resnet" | "mobilenetv2"
    channels: tuple             # channels of the five skip features, shallow to deep
    official_params: int        # whole BtsModel parameter count (official README)


ENCODER_FACTS = {
    "densenet121_bts": EncoderFacts("densenet", (64, 64, 128, 256, 1024), 21_168_048),
    "densenet161_bts": EncoderFacts("densenet", (96, 96, 192, 384, 2208), 47_000_688),
    "resnet50_bts": EncoderFacts("resnet", (64, 256, 512, 1024, 2048), 49_530_968),
    "resnet101_bts": EncoderFacts("resnet", (64, 256, 512, 1024, 2048), 68_523_096),
    "resnext50_bts": EncoderFacts("resnet", (64, 256, 512, 1024, 2048), 49_002_840),
    "resnext101_bts": EncoderFacts("resnet", (64, 256, 512, 1024, 2048), 112_765_272),
    "mobilenetv2_bts": EncoderFacts("mobilenetv2", (16, 24, 32, 64, 1280), 16_338_992),
}
ENCODERS = list(ENCODER_FACTS)
DATASETS = ("kitti", "nyu")


def check_encoder(name):
    if name not in ENCODER_FACTS:
        raise ValueError(f"unknown encoder {name!r}; choose one of: {', '.join(ENCODERS)}")
    return ENCODER_FACTS[name]


def check_input_size(height, width):
    if not all(isinstance(d, int) and d >= 0 for d in (height, width)):
        return  # a symbolic size while tracing for export; checked again on real input
    if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE or height <= 0 or width <= 0:
        raise ValueError(f"input size {height}x{width} is not a multiple of {INPUT_MULTIPLE} "
                         f"(BTS downsamples by {INPUT_MULTIPLE}); crop or pad it, e.g. to "
                         f"{height // INPUT_MULTIPLE * INPUT_MULTIPLE}x{width // INPUT_MULTIPLE * INPUT_MULTIPLE}")


def decoder_layout(num_features, skip_channels):
    """(in, out) channel pairs of the decoder layers, by official name; both mirrors build from it."""
    F, (c0, c1, c2, c3, c4) = num_features, skip_channels
    return {
        "upconv5": (c4, F), "conv5": (F + c3, F),
        "upconv4": (F, F // 2), "conv4": (F // 2 + c2, F // 2),
        "daspp_3": (F // 2, F // 4), "daspp_6": (F // 2 + F // 4 + c2, F // 4),
        "daspp_12": (F + c2, F // 4), "daspp_18": (F + F // 4 + c2, F // 4),
        "daspp_24": (F + F // 2 + c2, F // 4), "daspp_conv": (F + F // 2 + F // 4, F // 4),
        "reduc8x8": (F // 4, F // 4),
        "upconv3": (F // 4, F // 4), "conv3": (F // 4 + c1 + 1, F // 4),
        "reduc4x4": (F // 4, F // 8),
        "upconv2": (F // 4, F // 8), "conv2": (F // 8 + c0 + 1, F // 8),
        "reduc2x2": (F // 8, F // 16),
        "upconv1": (F // 8, F // 16), "reduc1x1": (F // 16, F // 32),
        "conv1": (F // 16 + 4, F // 16), "get_depth": (F // 16, 1),
    }


def reduction_stages(num_in, num_out, is_final):
    """Sub-layer names and (in, out) channels of `reduction_1x1.reduc`, exactly as the official loop builds them."""
    stages = []
    while num_out >= 4:
        if num_out < 8:
            stages.append(("final", num_in, 1) if is_final else ("plane_params", num_in, 3))
            break
        stages.append((f"inter_{num_in}_{num_out}", num_in, num_out))
        num_in, num_out = num_out, num_out // 2
    return stages


# Official training freezes encoder parameters whose name contains one of these (bts_main.py,
# default: neither --fix_first_conv_block nor --fix_first_conv_blocks). MobileNetV2 matches nothing.
# Torch names are torchvision's; Paddle's differ only for DenseNet (conv0 -> conv1_func._conv, every
# norm -> a `_batch_norm`, norm5 -> `batch_norm`).
FROZEN_NAME_PARTS = {
    "torch": {"resnet": ("base_model.conv1", ".bn"), "densenet": ("conv0", "norm"), "mobilenetv2": ("conv0", "norm")},
    "paddle": {"resnet": ("base_model.conv1", ".bn"), "densenet": ("conv1_func._conv", "batch_norm"),
               "mobilenetv2": ("conv0", "norm")},
}


def is_frozen(encoder, framework, encoder_param_name):
    """True where official training sets requires_grad=False on this encoder parameter."""
    return any(part in encoder_param_name for part in FROZEN_NAME_PARTS[framework][check_encoder(encoder).family])


# ---- Evaluation protocol (official bts_eval.py) -------------------------------------------------
# Metric names in the order the official script prints them (compute_errors *returns* them in another
# order: silog, log10, abs_rel, sq_rel, rms, log_rms, d1, d2, d3). Shared by both mirrors.
METRIC_NAMES = ("silog", "abs_rel", "log10", "rms", "sq_rel", "log_rms", "d1", "d2", "d3")
KB_CROP_HEIGHT, KB_CROP_WIDTH = 352, 1216          # KITTI benchmark crop of the network input
DEFAULT_INPUT_SIZE = {"kitti": (352, 704), "nyu": (416, 544)}   # training crop (official argument files)
DEFAULT_DEGREE = {"kitti": 1.0, "nyu": 2.5}                        # random rotation range, degrees
DEFAULT_MAX_DEPTH = {"kitti": 80.0, "nyu": 10.0}    # max_depth_eval of the official argument files
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)   # rows, cols as fractions of H, W
EIGEN_CROP_KITTI = (0.3324324, 0.91351351, 0.0359477, 0.96405229)  # official: 0.0359477 (one digit less)
EIGEN_CROP_NYU = (45, 471, 41, 601)                 # absolute rows, cols (480x640 ground truth)
CROPS = ("garg", "eigen", None)


def check_dataset_crop(dataset, crop):
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; choose 'garg', 'eigen' or None")


def crop_window(dataset, crop, height, width):
    """(row0, row1, col0, col1) of the official evaluation crop, or None; pure Python, like the official ints."""
    check_dataset_crop(dataset, crop)
    if crop is None:
        return None
    if crop == "garg":  # the official script applies Garg for any dataset when --garg_crop is set
        r0, r1, c0, c1 = GARG_CROP
    elif dataset == "kitti":
        r0, r1, c0, c1 = EIGEN_CROP_KITTI
    else:
        return EIGEN_CROP_NYU
    return int(r0 * height), int(r1 * height), int(c0 * width), int(c1 * width)
