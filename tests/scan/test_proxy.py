"""nst_core.compress.scan.proxy: the optimisation-free sensitivity proxy."""

from __future__ import annotations

import pytest
import torch

from nst_core.compress.pruning import prune_fine, prune_structured
from nst_core.compress.scan import ProxyProbe
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import get_preset


def test_proxy_is_zero_for_dense_and_structured_equals_zeroed_filters():
    preset = get_preset("seed")
    dense = load_vgg("random:0", last_layer=preset.last_layer)
    generator = torch.Generator().manual_seed(0)
    content = torch.rand((1, 3, 32, 32), generator=generator) * 255
    style = torch.rand((1, 3, 32, 32), generator=generator) * 255
    probe = ProxyProbe(dense, preset, content, [style])
    assert probe.measure(dense) == {"feature_distortion": 0.0, "gram_distortion": 0.0, "proxy": 0.0}

    small = prune_structured(dense, {"conv4_2": 0.5})  # relu4_2 is both a content layer and upstream of style layers
    zeroed = prune_fine(dense, {})
    removed = sorted(set(range(512)) - set(small.kept_channels["conv4_2"].tolist()))
    with torch.no_grad():
        zeroed.conv("conv4_2").weight[removed] = 0
        zeroed.conv("conv4_2").bias[removed] = 0
    ours, reference = probe.measure(small), probe.measure(zeroed)
    assert ours["feature_distortion"] > 0.1
    for key in ours:
        assert ours[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6)
