"""How much arithmetic a network does: multiply-accumulates (MACs) of its 3x3 convolutions.

Wall time depends on the machine and on who else is using it; MACs depend only on the
network's widths and the image size, so they say exactly how much less work a structurally
pruned network does. Fine-grained pruning zeroes weights but keeps every conv's shape, so
its MACs (with ordinary dense kernels) are those of the dense network.

Only the convolutions are counted: ReLU, pooling, Gram matrices and losses add a few
percent at most.

>>> conv_macs({"conv1_1": 64, "conv1_2": 64}, 224, 224)
{'conv1_1': 86704128, 'conv1_2': 1849688064}
"""

from __future__ import annotations

from .vgg import CONV_NAMES, conv_weight_counts, min_input_side


def conv_macs(widths: dict[str, int], height: int, width: int) -> dict[str, int]:
    """MACs of one forward pass through each conv, for an input of ``height`` x ``width`` px.

    ``widths`` are the output channels of the network's convs, ``conv1_1`` onwards without a
    gap (a ``VGGFeatures.widths``). A 3x3 conv with padding 1 keeps the resolution, so it does
    ``out_channels * in_channels * 9`` MACs at each of ``H * W`` output positions; each 2x2
    pool halves H and W (rounding down, as ``MaxPool2d`` does).

    >>> conv_macs({"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}, 7, 5)
    {'conv1_1': 3780, 'conv1_2': 2520, 'conv2_1': 324}
    """
    names = list(widths)
    if names != CONV_NAMES[: len(names)]:
        raise ValueError(f"widths must name the convs conv1_1 onwards in order, not {names}")
    weights = conv_weight_counts(widths)  # out * in * 9 per conv
    macs = {}
    for name in names:
        factor = min_input_side(name)  # 2 ** (pools before this conv)
        macs[name] = weights[name] * (height // factor) * (width // factor)
    return macs


def iteration_macs(widths: dict[str, int], height: int, width: int) -> int:
    """Conv MACs of one stylization step: a forward pass and the backward pass to the image.

    The weights are frozen, so backward computes only each conv's input gradient, which
    costs the same MACs as its forward (the same kernel, transposed). ``conv1_1`` needs its
    input gradient too: its input is the image being optimized. One Adam step is one such
    evaluation; an L-BFGS step may evaluate several times.

    >>> iteration_macs({"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}, 7, 5)
    13248
    """
    return 2 * sum(conv_macs(widths, height, width).values())
