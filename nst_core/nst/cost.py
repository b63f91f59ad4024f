"""How much arithmetic a network does: multiply-accumulates (MACs) of its 3x3 convolutions.

Wall time depends on the machine and on who else is using it; MACs depend only on the
network's widths and the image size, so they say exactly how much less work a structurally
pruned network does. Fine-grained pruning zeroes weights but keeps every conv's shape, so
its MACs (with ordinary dense kernels) are those of the dense network.

Only the convolutions are counted in MACs: ReLU, pooling, Gram matrices and losses add a few
percent of the arithmetic at most. On a CPU they (and the conv's own memory traffic) can cost
more time than that share, so :class:`CostModel` can add a term per activation element and a
fixed term, fitted to timings on one machine.

Every function reads the architecture (VGG-19 or VGG-16) from the widths' conv names, or from
``arch`` when given (``model.arch``): where pools sit decides each conv's resolution.

>>> conv_macs({"conv1_1": 64, "conv1_2": 64}, 224, 224)
{'conv1_1': 86704128, 'conv1_2': 1849688064}
"""

from __future__ import annotations

from dataclasses import dataclass

from nst_core.model.layers import ArchLike, widths_architecture


def conv_macs(widths: dict[str, int], height: int, width: int, arch: ArchLike | None = None) -> dict[str, int]:
    """MACs of one forward pass through each conv, for an input of ``height`` x ``width`` px.

    ``widths`` are the output channels of the network's convs, ``conv1_1`` onwards without a
    gap (a ``VGGFeatures.widths``). A 3x3 conv with padding 1 keeps the resolution, so it does
    ``out_channels * in_channels * 9`` MACs at each of ``H * W`` output positions; each 2x2
    pool halves H and W (rounding down, as ``MaxPool2d`` does).

    >>> conv_macs({"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}, 7, 5)
    {'conv1_1': 3780, 'conv1_2': 2520, 'conv2_1': 324}
    """
    architecture = widths_architecture(widths, arch)
    weights = architecture.conv_weight_counts(widths)  # out * in * 9 per conv
    macs = {}
    for name in widths:
        factor = architecture.min_input_side(name)  # 2 ** (pools before this conv)
        macs[name] = weights[name] * (height // factor) * (width // factor)
    return macs


def iteration_macs(widths: dict[str, int], height: int, width: int, arch: ArchLike | None = None) -> int:
    """Conv MACs of one stylization step: a forward pass and the backward pass to the image.

    The weights are frozen, so backward computes only each conv's input gradient, which
    costs the same MACs as its forward (the same kernel, transposed). ``conv1_1`` needs its
    input gradient too: its input is the image being optimized. One Adam step is one such
    evaluation; an L-BFGS step may evaluate several times.

    >>> iteration_macs({"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}, 7, 5)
    13248
    """
    return 2 * sum(conv_macs(widths, height, width, arch).values())


def layer_iteration_macs(
    widths: dict[str, int], height: int, width: int, arch: ArchLike | None = None
) -> dict[str, int]:
    """Per conv, the MACs of one stylization step (forward + backward to the image; see :func:`iteration_macs`).

    >>> layer_iteration_macs({"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}, 7, 5)
    {'conv1_1': 7560, 'conv1_2': 5040, 'conv2_1': 648}
    """
    return {name: 2 * macs for name, macs in conv_macs(widths, height, width, arch).items()}


def activation_elements(
    widths: dict[str, int], height: int, width: int, arch: ArchLike | None = None
) -> dict[str, int]:
    """Per conv, the elements of its output activation (``out_channels * H * W`` at its resolution).

    The memory traffic of everything around a conv (bias, ReLU, pooling, the Gram matrices'
    reads, the backward of each) grows with these, not with the MACs; early layers, with
    few channels at full resolution, are dominated by it on a CPU.

    >>> activation_elements({"conv1_1": 4, "conv1_2": 2, "conv2_1": 3}, 7, 5)
    {'conv1_1': 140, 'conv1_2': 70, 'conv2_1': 18}
    """
    architecture = widths_architecture(widths, arch)
    sides = {name: architecture.min_input_side(name) for name in widths}
    return {name: widths[name] * (height // sides[name]) * (width // sides[name]) for name in widths}


@dataclass(frozen=True)
class CostModel:
    """Predicted seconds of one stylization iteration: ``mac_s * MACs + element_s * elements + fixed_s``.

    ``MACs`` are the iteration's conv MACs (:func:`iteration_macs`), ``elements`` the conv
    output activations (:func:`activation_elements`, summed), ``fixed_s`` what does not depend
    on the widths at all (the optimiser step on the image, total variation, preprocessing).
    :meth:`macs_only` (the default everywhere) predicts by arithmetic alone, which is exact
    for the work and machine-independent; a model fitted to timings on one machine
    (:func:`nst_core.compress.budget.calibrate_cost_model`) also predicts the memory-bound parts,
    so its predicted speedups are the ones that machine measures.
    """

    mac_s: float = 1.0
    element_s: float = 0.0
    fixed_s: float = 0.0
    source: str = "MACs only"

    @classmethod
    def macs_only(cls) -> CostModel:
        """Cost = conv MACs: predicted speedup = dense MACs / pruned MACs."""
        return cls()

    def layer_costs(
        self, widths: dict[str, int], height: int, width: int, arch: ArchLike | None = None
    ) -> dict[str, float]:
        """Each conv's share of the predicted iteration cost (without ``fixed_s``)."""
        macs = layer_iteration_macs(widths, height, width, arch)
        elements = activation_elements(widths, height, width, arch)
        return {name: self.mac_s * macs[name] + self.element_s * elements[name] for name in macs}

    def iteration_cost(self, widths: dict[str, int], height: int, width: int, arch: ArchLike | None = None) -> float:
        """Predicted cost of one iteration (seconds for a fitted model, MACs for :meth:`macs_only`)."""
        return sum(self.layer_costs(widths, height, width, arch).values()) + self.fixed_s

    def speedup(
        self,
        widths: dict[str, int],
        height: int,
        width: int,
        dense_widths: dict[str, int] | None = None,
        arch: ArchLike | None = None,
    ) -> float:
        """Predicted per-iteration speedup of ``widths`` over ``dense_widths`` (default: the dense network, same depth).

        >>> round(CostModel.macs_only().speedup({"conv1_1": 32, "conv1_2": 32}, 64, 64), 3)
        3.829
        """
        architecture = widths_architecture(widths, arch)
        dense = dense_widths or {name: architecture.dense_widths[name] for name in widths}
        return self.iteration_cost(dense, height, width, architecture) / self.iteration_cost(
            widths, height, width, architecture
        )

    @classmethod
    def from_dict(cls, data: dict) -> CostModel:
        """The model :meth:`to_dict` wrote; ``ValueError`` names a missing or negative coefficient.

        >>> CostModel.from_dict(CostModel(2e-10, 1e-9, 0.05, "fit").to_dict()) == CostModel(2e-10, 1e-9, 0.05, "fit")
        True
        """
        values = []
        for key in ("mac_s", "element_s", "fixed_s"):
            value = data.get(key) if isinstance(data, dict) else None
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not value >= 0
                or value == float("inf")
            ):
                raise ValueError(f"cost model field {key!r} must be a finite number >= 0, not {value!r}")
            values.append(float(value))
        if values[0] <= 0:
            raise ValueError("cost model field 'mac_s' must be > 0: the MACs are what pruning removes")
        mac_s, element_s, fixed_s = values
        return cls(mac_s, element_s, fixed_s, str(data.get("source", "from a file")))

    def to_dict(self) -> dict:
        """JSON-ready fields (reports, cost model files; :meth:`from_dict` reads them back)."""
        return {"mac_s": self.mac_s, "element_s": self.element_s, "fixed_s": self.fixed_s, "source": self.source}
