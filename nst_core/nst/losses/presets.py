"""Loss presets (which layers feed which loss, with what weights and normalisations) and the loss weights."""

from __future__ import annotations

from dataclasses import dataclass

from nst_core.core.errors import UserError
from nst_core.model.layers import ArchLike, deepest_layer, get_architecture, layer_index


@dataclass(frozen=True)
class LossPreset:
    """Which layers feed which loss, with what weights and normalisations."""

    name: str
    content_layers: dict[str, float]
    style_layers: dict[str, float]
    content_weight: float
    style_weight: float
    tv_weight: float
    content_norm: str  # "mse": mean squared error | "half_sum": 0.5 * sum of squares (paper)
    style_norm: str  # "mse_c2": mse(G, A) / C^2 (seed) | "paper": sum((G - A)^2) / (4 C^2)
    tv_kind: str = "l1"  # "l1": mean |dx| + mean |dy| | "squared": mean dx^2 + mean dy^2
    description: str = ""
    style_loss: str = "gram"  # a name in losses.STYLE_LOSSES: "gram" (norm: style_norm) | "meancov"

    @property
    def layers(self) -> list[str]:
        """Every layer any loss reads, in network order, without duplicates.

        VGG-19's order, which is every architecture's: a VGG-16's layers are a subset of a VGG-19's, in
        the same order (:meth:`check_architecture` says whether a network has them all).
        """
        names = dict.fromkeys([*self.content_layers, *self.style_layers])
        return sorted(names, key=layer_index)

    def check_architecture(self, arch: ArchLike) -> None:
        """A one-line UserError when a layer the losses read is not in ``arch`` (a VGG-16 has no ``relu5_4``).

        >>> get_preset("seed").check_architecture("vgg16")  # relu1_2 .. relu5_3 and relu4_2: all in VGG-16
        """
        architecture = get_architecture(arch)
        missing = [name for name in self.layers if not architecture.has(name)]
        if missing:
            relus = ", ".join(name for name in architecture.layer_names if name.startswith("relu"))
            raise UserError(
                f"loss preset {self.name!r}: unknown {architecture.title} layer {missing[0]!r} "
                f"(the network's weights are {architecture.title}'s); use its layers: {relus}"
            )

    @property
    def last_layer(self) -> str:
        """The deepest layer used: the network can be truncated right after it."""
        return deepest_layer(self.layers)


PRESETS: dict[str, LossPreset] = {
    "seed": LossPreset(
        name="seed",
        content_layers={"relu4_2": 1.0},
        style_layers={name: 0.2 for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")},
        content_weight=5.0,
        style_weight=1e2,
        tv_weight=1e-3,
        content_norm="mse",
        style_norm="mse_c2",
        description="The seed notebook's settings: Gram / (h*w), style MSE / C^2.",
    ),
    "gatys2016": LossPreset(
        name="gatys2016",
        content_layers={"relu4_2": 1.0},
        style_layers={name: 0.2 for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")},
        content_weight=1.0,
        style_weight=1e3,  # alpha / beta = 1e-3, as in the paper's Fig. 2
        tv_weight=0.0,  # the paper has no TV term
        content_norm="half_sum",
        style_norm="paper",
        description="Gatys et al. CVPR 2016: content 0.5*sum of squares, style E_l = sum((G-A)^2)/(4 N^2 M^2).",
    ),
}


def get_preset(name: str) -> LossPreset:
    """The preset called ``name`` (a UserError listing the presets otherwise).

    >>> get_preset("seed").last_layer
    'relu5_3'
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown loss preset {name!r}; choose from {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class LossWeights:
    """Weights of the content, style and TV terms in the total loss."""

    content: float
    style: float
    tv: float

    @classmethod
    def from_preset(
        cls, preset: LossPreset, content: float | None = None, style: float | None = None, tv: float | None = None
    ) -> LossWeights:
        """The preset's weights, each replaced by the given value where one is given (not None)."""

        def pick(value: float | None, default: float) -> float:
            return default if value is None else float(value)

        return cls(pick(content, preset.content_weight), pick(style, preset.style_weight), pick(tv, preset.tv_weight))
