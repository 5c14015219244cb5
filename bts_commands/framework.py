"""What a framework supplies to the shared commands; everything else is written once."""
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Framework:
    name: str                   # "torch_ref" / "paddle_bts": the model package, shown in outputs
    weights_flag: str           # the option naming the weights: "--checkpoint" / "--weights"
    weights_metavar: str
    weights_help: str
    load_model: Callable        # (args) -> model of args.encoder with the weights loaded, eval mode, on args.device
    make_loader: Callable       # (samples, batch_size, shuffle=False, drop_last=False) -> batches of tensors
    predict_depth: Callable     # (model, image, focal, flip_average) -> B x H x W depth tensor (no gradients)
    predict_image: Callable     # (model, 1 x 3 x H x W float32 numpy, focal) -> H x W numpy depth
    evaluate_image: Callable    # (prediction, gt, dataset, crop, kb_crop, min, max) -> metrics of one image
    average: Callable           # (list of per-image metrics) -> mean metrics

    @property
    def weights_dest(self):
        return self.weights_flag.lstrip("-").replace("-", "_")
