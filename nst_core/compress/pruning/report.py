"""What pruning did to a network: per-conv weights, nonzeros, filters and MACs against dense VGG-19.

>>> from nst_core.model.weights import load_vgg
>>> print(sparsity_report(load_vgg("random:0", last_layer="relu1_2"), 64).to_text())  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nst_core.model.layers import DENSE_WIDTHS
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.cost import conv_macs


@dataclass
class LayerSparsity:
    """Weight counts of one conv, a row of :class:`PruneReport`."""

    name: str
    weights: int  # weights this conv has now
    dense_weights: int  # weights the same conv has in the unpruned network (VGG-19 and VGG-16 agree on shared convs)
    nonzeros: int
    biases: int = 0  # never pruned, but stored: the seed's 20,024,384 "conv weights" include them
    filters: int = 0  # output channels now (fewer than dense when structured-pruned)
    macs: int = 0  # conv MACs of one stylization iteration (forward + backward to the image) at the report's size
    dense_macs: int = 0  # the same for the unpruned conv

    @property
    def dense_filters(self) -> int:
        """Output channels of this conv in the unpruned VGG-19."""
        return DENSE_WIDTHS[self.name]

    @property
    def sparsity(self) -> float:
        """Fraction of this conv's current weights that are zero (0 for a structured conv: smaller, not sparser)."""
        return 1.0 - self.nonzeros / self.weights if self.weights else 0.0

    @property
    def removed(self) -> float:
        """Fraction of the dense conv's weights that are gone: removed with their filter, or zero."""
        return 1.0 - self.nonzeros / self.dense_weights if self.dense_weights else 0.0


@dataclass
class PruneReport:
    """Per-conv weight counts of a network, and totals against dense VGG-19 (same depth)."""

    rows: list[LayerSparsity]
    size: tuple[int, int] = (512, 512)  # (height, width) the MACs are counted at

    @property
    def total_macs(self) -> int:
        """Conv MACs of one stylization iteration of this network at ``size``."""
        return sum(r.macs for r in self.rows)

    @property
    def total_dense_macs(self) -> int:
        """The same for dense VGG-19 up to the same layer."""
        return sum(r.dense_macs for r in self.rows)

    @property
    def predicted_speedup(self) -> float:
        """Dense MACs / these MACs: the per-iteration speedup that less arithmetic predicts."""
        return self.total_dense_macs / self.total_macs if self.total_macs else float("inf")

    @property
    def total_weights(self) -> int:
        """Conv weights this network has (fewer than dense when structured-pruned)."""
        return sum(r.weights for r in self.rows)

    @property
    def total_dense_weights(self) -> int:
        """Conv weights of dense VGG-19 up to the same layer."""
        return sum(r.dense_weights for r in self.rows)

    @property
    def total_nonzeros(self) -> int:
        """Conv weights that are not zero."""
        return sum(r.nonzeros for r in self.rows)

    @property
    def total_biases(self) -> int:
        """Conv biases this network has (never pruned)."""
        return sum(r.biases for r in self.rows)

    @property
    def total_dense_parameters(self) -> int:
        """Dense conv weights plus biases (20,024,384 for all 16 convs)."""
        return self.total_dense_weights + sum(DENSE_WIDTHS[r.name] for r in self.rows)

    @property
    def total_kept_parameters(self) -> int:
        """Nonzero conv weights plus all biases (~3.02M for the seed profile)."""
        return self.total_nonzeros + self.total_biases

    @property
    def sparsity(self) -> float:
        """Fraction of the dense network's conv weights that are gone or zero."""
        return 1.0 - self.total_nonzeros / self.total_dense_weights if self.total_dense_weights else 0.0

    @property
    def compression(self) -> float:
        """Dense conv weights / nonzero conv weights (6.64x for the seed profile)."""
        return self.total_dense_weights / self.total_nonzeros if self.total_nonzeros else float("inf")

    def to_dict(self) -> dict:
        """Rows and totals as JSON-ready values (what ``nst prune --json`` writes under "report")."""
        return {
            "layers": [
                {
                    "name": r.name,
                    "weights": r.weights,
                    "dense_weights": r.dense_weights,
                    "nonzeros": r.nonzeros,
                    "biases": r.biases,
                    "sparsity": r.sparsity,
                    "filters": r.filters,
                    "dense_filters": r.dense_filters,
                    "removed": r.removed,
                    "macs": r.macs,
                    "dense_macs": r.dense_macs,
                }
                for r in self.rows
            ],
            "total_weights": self.total_weights,
            "total_dense_weights": self.total_dense_weights,
            "total_nonzeros": self.total_nonzeros,
            "total_dense_parameters": self.total_dense_parameters,
            "total_kept_parameters": self.total_kept_parameters,
            "sparsity": self.sparsity,
            "compression": self.compression,
            "mac_size": list(self.size),
            "total_macs": self.total_macs,
            "total_dense_macs": self.total_dense_macs,
            "predicted_speedup": self.predicted_speedup,
        }

    def to_text(self) -> str:
        """A plain-text table, one row per conv, then totals and compression (what ``nst prune`` prints)."""
        h, w = self.size
        header = f"{'layer':<8} {'filters':>11} {'weights':>10} {'nonzeros':>10} {'removed':>8} {'GMAC/it':>8}"
        lines = [header, "-" * len(header)]
        for r in self.rows:
            filters = f"{r.filters}/{r.dense_filters}"
            lines.append(
                f"{r.name:<8} {filters:>11} {r.weights:>10,} {r.nonzeros:>10,} {r.removed:>8.1%} {r.macs / 1e9:>8.2f}"
            )
        lines.append("-" * len(header))
        kept_filters = f"{sum(r.filters for r in self.rows)}/{sum(r.dense_filters for r in self.rows)}"
        lines.append(
            f"{'total':<8} {kept_filters:>11} {self.total_weights:>10,} {self.total_nonzeros:>10,} "
            f"{self.sparsity:>8.1%} {self.total_macs / 1e9:>8.2f}"
        )
        # 'removed' is against dense VGG-19: a structured conv is smaller, not sparser.
        if self.total_weights != self.total_dense_weights:
            lines.append(f"dense VGG-19 convs to this depth: {self.total_dense_weights:,} weights")
        lines.append(
            f"compression vs dense: {self.compression:.2f}x "
            f"({self.total_dense_weights:,} -> {self.total_nonzeros:,} nonzero conv weights; "
            f"with biases {self.total_dense_parameters:,} -> {self.total_kept_parameters:,} parameters)"
        )
        lines.append(
            f"work per stylization iteration at {w}x{h} px: "
            f"{self.total_dense_macs / 1e9:.2f} -> {self.total_macs / 1e9:.2f} "
            f"GMAC (conv forward + backward to the image): predicted speedup {self.predicted_speedup:.2f}x"
            + (
                "; zeros inside a conv still cost MACs with dense kernels"
                if self.total_nonzeros < self.total_weights
                else ""
            )
        )
        return "\n".join(lines)


def sparsity_report(model: VGGFeatures, size: int | tuple[int, int] = 512) -> PruneReport:
    """Per conv: filters, weights, nonzeros (counted from the weights, not the masks), and the MACs of
    one stylization iteration at ``size`` (a side in px, or (height, width)) against the dense network
    (VGG-19 or VGG-16, the model's architecture).

    >>> from nst_core.compress.pruning import prune_structured
    >>> print(sparsity_report(prune_structured(model, 0.5)).to_text())  # doctest: +SKIP
    """
    height, width = (size, size) if isinstance(size, int) else size
    dense = model.architecture
    macs = conv_macs(model.widths, height, width, dense)
    dense_macs = conv_macs({name: dense.dense_widths[name] for name in model.widths}, height, width, dense)
    rows = []
    for name, conv in model.convs().items():
        weight = conv.weight.detach()
        biases = conv.bias.numel() if conv.bias is not None else 0
        rows.append(
            LayerSparsity(
                name,
                weight.numel(),
                dense.dense_conv_weights[name],
                int(torch.count_nonzero(weight)),
                biases,
                filters=conv.out_channels,
                macs=2 * macs[name],
                dense_macs=2 * dense_macs[name],
            )
        )
    return PruneReport(rows, (height, width))
