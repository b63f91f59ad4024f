"""VGG-19's layer table: names, module indices, conv widths and weight counts, and the preprocessings.

Plain data about the architecture, no network: the cost and memory models, the checkpoint format
and the network (``nst_core.model.vgg``) all read it. Positions are torchvision's module indices
(``features.N``), so ``layer_index("conv3_1")`` is the N of ``features.N.weight``.

>>> layer_index("relu3_1"), convs_up_to("relu2_1"), DENSE_WIDTHS["conv5_4"]
(11, ['conv1_1', 'conv1_2', 'conv2_1'], 512)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# (block, number of convs, output channels) for VGG-19's "E" configuration.
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def _build_layer_table() -> list[tuple[str, str]]:
    table: list[tuple[str, str]] = []
    for block, convs, _ in _BLOCKS:
        for i in range(1, convs + 1):
            table.append((f"conv{block}_{i}", "conv"))
            table.append((f"relu{block}_{i}", "relu"))
        table.append((f"pool{block}", "pool"))
    return table


#: Every layer of VGG-19's ``features`` in order; position == torchvision module index.
LAYER_TABLE: list[tuple[str, str]] = _build_layer_table()
LAYER_NAMES: list[str] = [name for name, _ in LAYER_TABLE]
LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYER_NAMES)}
#: The 16 conv layers, conv1_1 .. conv5_4.
CONV_NAMES: list[str] = [name for name, kind in LAYER_TABLE if kind == "conv"]
#: Output channels of each conv layer in the unpruned network.
DENSE_WIDTHS: dict[str, int] = {
    f"conv{block}_{i}": width for block, convs, width in _BLOCKS for i in range(1, convs + 1)
}


def layer_index(name: str) -> int:
    """Module index of a named layer; raises a ValueError listing valid names."""
    try:
        return LAYER_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown VGG-19 layer {name!r}; valid names: {', '.join(LAYER_NAMES)}") from None


def deepest_layer(names: Iterable[str]) -> str:
    """The layer among ``names`` that comes last in the network."""
    names = list(names)
    if not names:
        raise ValueError("no layers given")
    return max(names, key=layer_index)


def convs_up_to(last_layer: str) -> list[str]:
    """Conv layers needed to compute ``last_layer`` (everything after it can be dropped)."""
    last = layer_index(last_layer)
    return [name for name in CONV_NAMES if LAYER_INDEX[name] <= last]


def conv_feeding(layer: str) -> str:
    """The conv whose output channels ``layer`` carries (``relu3_3`` -> ``conv3_3``, ``pool2`` -> ``conv2_2``)."""
    convs = convs_up_to(layer)
    if not convs:  # unreachable for real layer names: the first layer is a conv
        raise ValueError(f"layer {layer!r} comes before any conv")
    return convs[-1]


def conv_weight_counts(widths: dict[str, int]) -> dict[str, int]:
    """Weights per conv (3x3 kernels) of a trunk whose convs have these output ``widths``, in order.

    >>> conv_weight_counts({"conv1_1": 64, "conv1_2": 32})
    {'conv1_1': 1728, 'conv1_2': 18432}
    """
    counts, in_channels = {}, 3
    for name in sorted(widths, key=CONV_NAMES.index):
        counts[name] = in_channels * widths[name] * 9
        in_channels = widths[name]
    return counts


#: Weights per conv of the unpruned VGG-19.
DENSE_CONV_WEIGHTS: dict[str, int] = conv_weight_counts(DENSE_WIDTHS)


def min_input_side(last_layer: str) -> int:
    """Smallest image side for which ``last_layer`` still has at least 1x1 spatial size."""
    pools = sum(1 for name, kind in LAYER_TABLE[: layer_index(last_layer) + 1] if kind == "pool")
    return 2**pools


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB 0..255 image becomes network input for one family of weights.

    caffe:       RGB -> BGR, subtract the BGR mean, keep the 0..255 scale.
    torchvision: scale to 0..1, subtract the ImageNet mean, divide by its std (RGB).
    """

    name: str
    bgr: bool
    scale: float  # multiply 0..255 input by this before subtracting the mean
    mean: tuple[float, float, float]  # in the network's channel order and scale
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        """A JSON-ready dict (stored in checkpoint headers and weight-file metadata)."""
        return {"name": self.name, "bgr": self.bgr, "scale": self.scale, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        """The inverse of :meth:`to_dict`."""
        return cls(data["name"], bool(data["bgr"]), float(data["scale"]), tuple(data["mean"]), tuple(data["std"]))


CAFFE = Preprocessing("caffe", bgr=True, scale=1.0, mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0))
TORCHVISION = Preprocessing(
    "torchvision", bgr=False, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)
PREPROCESSINGS = {p.name: p for p in (CAFFE, TORCHVISION)}
POOLINGS = ("max", "avg")  # VGG's own max pooling, or Gatys et al.'s average pooling
