"""nst_core.nst.cost: conv MACs, checked against numbers worked out by hand."""

from __future__ import annotations

import doctest

import pytest

from nst_core.model.layers import DENSE_WIDTHS
from nst_core.model.vgg import VGGFeatures
from nst_core.nst import cost


def test_tiny_network_by_hand():
    # 7x5 input; conv1_1 3->4 and conv1_2 4->2 at 7x5, pool1 -> 3x2 (rounded down), conv2_1 2->3.
    widths = {"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}
    assert cost.conv_macs(widths, 7, 5) == {
        "conv1_1": 4 * 3 * 9 * 7 * 5,
        "conv1_2": 2 * 4 * 9 * 7 * 5,
        "conv2_1": 3 * 2 * 9 * 3 * 2,
    }
    # Forward plus the input gradient of every conv, conv1_1's included (its input is the image).
    assert cost.iteration_macs(widths, 7, 5) == 2 * (3780 + 2520 + 324)


def test_dense_vgg19_at_224_is_the_textbook_figure():
    """The 16 convs of VGG-19 at 224x224: 19.51 GMACs; with the classifier's three fully
    connected layers (0.12 GMACs) this is the well-known 19.6 G of the VGG paper's network."""
    convs = (
        (3 * 64 + 64 * 64) * 9 * 224 * 224  # block 1: conv1_1, conv1_2
        + (64 * 128 + 128 * 128) * 9 * 112 * 112  # block 2
        + (128 * 256 + 3 * 256 * 256) * 9 * 56 * 56  # block 3: conv3_1 .. conv3_4
        + (256 * 512 + 3 * 512 * 512) * 9 * 28 * 28  # block 4
        + 4 * 512 * 512 * 9 * 14 * 14  # block 5
    )
    assert convs == 19_508_428_800
    assert sum(cost.conv_macs(DENSE_WIDTHS, 224, 224).values()) == convs
    classifier = 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000
    assert round((convs + classifier) / 1e9, 1) == 19.6
    assert cost.iteration_macs(DENSE_WIDTHS, 224, 224) == 2 * convs


def test_halving_every_conv_quarters_the_work():
    """Structured pruning at 0.5 halves both channel counts of every conv but conv1_1 (whose
    input is the 3-channel image), so those convs do a quarter of the MACs."""
    dense = VGGFeatures("relu5_3").widths
    half = {name: w // 2 for name, w in dense.items()}
    d, h = cost.conv_macs(dense, 48, 64), cost.conv_macs(half, 48, 64)
    assert h["conv1_1"] * 2 == d["conv1_1"]
    assert all(h[name] * 4 == d[name] for name in dense if name != "conv1_1")


def test_widths_must_start_at_conv1_1_without_gaps():
    with pytest.raises(ValueError, match="conv1_1 onwards"):
        cost.conv_macs({"conv1_1": 64, "conv2_1": 128}, 32, 32)


def test_docstring_examples_hold():
    result = doctest.testmod(cost)
    assert result.attempted == 7 and result.failed == 0


def test_cost_model_terms_and_round_trip():
    widths = {"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}
    model = cost.CostModel(2.0, 5.0, 7.0, "hand")
    # 2 * MACs + 5 * output elements per conv, plus the fixed 7 once.
    assert model.layer_costs(widths, 7, 5) == {
        "conv1_1": 2 * 7560 + 5 * 140,
        "conv1_2": 2 * 5040 + 5 * 70,
        "conv2_1": 2 * 648 + 5 * 18,
    }
    assert model.iteration_cost(widths, 7, 5) == sum(model.layer_costs(widths, 7, 5).values()) + 7
    # Fixed time no pruning removes lowers the speedup below the MAC ratio.
    half = {name: max(1, w // 2) for name, w in widths.items()}
    dense = cost.CostModel.macs_only()
    assert (
        model.speedup(half, 7, 5, widths)
        < dense.speedup(half, 7, 5, widths)
        == cost.iteration_macs(widths, 7, 5) / cost.iteration_macs(half, 7, 5)
    )
    assert cost.CostModel.from_dict(model.to_dict()) == model
    for bad in (
        {"mac_s": 0.0, "element_s": 0, "fixed_s": 0},
        {"mac_s": 1, "element_s": -1, "fixed_s": 0},
        {"mac_s": True, "element_s": 0, "fixed_s": 0},
        [],
    ):
        with pytest.raises(ValueError, match="cost model field"):
            cost.CostModel.from_dict(bad)
