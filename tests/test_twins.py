"""alignment.twins builds both models with the dataset's official max_depth (80 m KITTI, 10 m NYU)."""
import pytest

from alignment import twins
from bts_core.spec import DEFAULT_MAX_DEPTH

REDUCTIONS = ("reduc8x8", "reduc4x4", "reduc2x2", "reduc1x1")


@pytest.mark.parametrize("encoder, dataset, max_depth", [("densenet121_bts", "nyu", 10.0),
                                                          ("mobilenetv2_bts", "kitti", 80.0)])
def test_twins_use_the_datasets_max_depth(encoder, dataset, max_depth):
    assert DEFAULT_MAX_DEPTH[dataset] == max_depth
    torch_model, paddle_model = twins.build_twins(encoder, dataset)
    for model in (torch_model, paddle_model):
        decoder = model.decoder
        assert (decoder.max_depth, decoder.dataset) == (max_depth, dataset)
        assert [getattr(decoder, name).max_depth for name in REDUCTIONS] == [max_depth] * 4
