"""The VGG architectures as data: layer tables, module indices, conv widths and weight counts; the preprocessings.

Plain data about the architectures, no network: the cost and memory models, the checkpoint format
and the network (``nst_core.model.vgg``) all read it. An :class:`Architecture` (``ARCHITECTURES``:
``vgg16``, ``vgg19``) holds one table; positions are torchvision's module indices (``features.N``),
so ``VGG19.layer_index("conv3_1")`` is the N of ``features.N.weight`` in torchvision's ``vgg19``.

The module-level names (``LAYER_TABLE``, ``CONV_NAMES``, ``DENSE_WIDTHS``...) are VGG-19's, and the
functions take ``arch`` (a name or an :class:`Architecture`, VGG-19 by default).

>>> layer_index("relu3_1"), convs_up_to("relu2_1"), DENSE_WIDTHS["conv5_4"]
(11, ['conv1_1', 'conv1_2', 'conv2_1'], 512)
>>> layer_index("relu5_3", "vgg16"), len(VGG16.conv_names), VGG16.last_layer
(29, 13, 'relu5_3')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Architecture:
    """One VGG configuration: ``blocks`` of (block, number of convs, output channels), and its tables.

    Every other field is derived from ``blocks``. Layer names are ``conv{block}_{i}``, ``relu{block}_{i}``
    and ``pool{block}``; a VGG-16's names are a subset of a VGG-19's, in the same order.
    """

    name: str  # "vgg19": the key in ARCHITECTURES, checkpoint headers and weight-file metadata
    title: str  # "VGG-19": in messages
    blocks: tuple[tuple[int, int, int], ...]
    #: Every layer of ``features`` in order; position == torchvision module index.
    layer_table: list[tuple[str, str]] = field(init=False, repr=False, compare=False)
    layer_names: list[str] = field(init=False, repr=False, compare=False)
    positions: dict[str, int] = field(init=False, repr=False, compare=False)
    conv_names: list[str] = field(init=False, repr=False, compare=False)
    #: Output channels of each conv in the unpruned network.
    dense_widths: dict[str, int] = field(init=False, repr=False, compare=False)
    #: Weights per conv of the unpruned network.
    dense_conv_weights: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        table: list[tuple[str, str]] = []
        for block, convs, _ in self.blocks:
            for i in range(1, convs + 1):
                table += [(f"conv{block}_{i}", "conv"), (f"relu{block}_{i}", "relu")]
            table.append((f"pool{block}", "pool"))
        names = [name for name, _ in table]
        convs_ = [name for name, kind in table if kind == "conv"]
        widths = {f"conv{block}_{i}": width for block, convs, width in self.blocks for i in range(1, convs + 1)}
        derived = {
            "layer_table": table,
            "layer_names": names,
            "positions": {name: i for i, name in enumerate(names)},
            "conv_names": convs_,
            "dense_widths": widths,
        }
        for key, value in derived.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "dense_conv_weights", self.conv_weight_counts(widths))

    @property
    def conv_shapes(self) -> list[tuple[int, int, int, int]]:
        """Each dense conv's kernel shape ``(out, in, 3, 3)``, in order (what a weights file must hold)."""
        inputs = [3] + [self.dense_widths[name] for name in self.conv_names[:-1]]
        return [(self.dense_widths[name], n_in, 3, 3) for name, n_in in zip(self.conv_names, inputs)]

    @property
    def conv_positions(self) -> list[int]:
        """torchvision's module index ``N`` of each conv (``features.N.weight``), in order."""
        return [self.positions[name] for name in self.conv_names]

    @property
    def last_layer(self) -> str:
        """The deepest ReLU (``relu5_4`` for VGG-19, ``relu5_3`` for VGG-16): the default end of a trunk."""
        return [name for name, kind in self.layer_table if kind == "relu"][-1]

    def has(self, name: str) -> bool:
        """Whether ``name`` is a layer of this architecture."""
        return name in self.positions

    def layer_index(self, name: str) -> int:
        """Module index of a named layer; a ValueError naming the architecture and the valid names."""
        try:
            return self.positions[name]
        except KeyError:
            valid = ", ".join(self.layer_names)
            raise ValueError(f"unknown {self.title} layer {name!r}; valid names: {valid}") from None

    def deepest_layer(self, names: Iterable[str]) -> str:
        """The layer among ``names`` that comes last in the network."""
        names = list(names)
        if not names:
            raise ValueError("no layers given")
        return max(names, key=self.layer_index)

    def convs_up_to(self, last_layer: str) -> list[str]:
        """Conv layers needed to compute ``last_layer`` (everything after it can be dropped)."""
        last = self.layer_index(last_layer)
        return [name for name in self.conv_names if self.positions[name] <= last]

    def conv_feeding(self, layer: str) -> str:
        """The conv whose output channels ``layer`` carries (``relu3_3`` -> ``conv3_3``, ``pool2`` -> ``conv2_2``)."""
        convs = self.convs_up_to(layer)
        if not convs:  # unreachable for real layer names: the first layer is a conv
            raise ValueError(f"layer {layer!r} comes before any conv")
        return convs[-1]

    def layers_up_to(self, last_layer: str) -> list[tuple[str, str]]:
        """``(name, kind)`` of every layer from the first to ``last_layer``, in order."""
        return self.layer_table[: self.layer_index(last_layer) + 1]

    def conv_weight_counts(self, widths: dict[str, int]) -> dict[str, int]:
        """Weights per conv (3x3 kernels) of a trunk whose convs have these output ``widths``, in order."""
        counts, in_channels = {}, 3
        for name in sorted(widths, key=self.conv_names.index):
            counts[name] = in_channels * widths[name] * 9
            in_channels = widths[name]
        return counts

    def min_input_side(self, last_layer: str) -> int:
        """Smallest image side for which ``last_layer`` still has at least 1x1 spatial size."""
        return 2 ** sum(1 for _, kind in self.layers_up_to(last_layer) if kind == "pool")

    def check_convs(self, names: list[str], what: str = "widths") -> None:
        """A ValueError unless ``names`` are this architecture's convs from ``conv1_1`` on, in order, without a gap."""
        if names != self.conv_names[: len(names)]:
            raise ValueError(f"{what} must name {self.title}'s convs conv1_1 onwards in order, not {names}")


VGG16 = Architecture("vgg16", "VGG-16", ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)))
VGG19 = Architecture("vgg19", "VGG-19", ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)))
#: Every architecture by name; a network's ``arch`` and a checkpoint header's ``arch`` are keys of it.
ARCHITECTURES: dict[str, Architecture] = {arch.name: arch for arch in (VGG16, VGG19)}
DEFAULT_ARCH = "vgg19"
#: An architecture, or its name in ``ARCHITECTURES``.
ArchLike = str | Architecture


def get_architecture(arch: ArchLike = DEFAULT_ARCH) -> Architecture:
    """The :class:`Architecture` for a name (``"vgg16"``) or itself; a ValueError listing the names otherwise.

    >>> get_architecture("vgg16").title
    'VGG-16'
    """
    if isinstance(arch, Architecture):
        return arch
    try:
        return ARCHITECTURES[arch]
    except (KeyError, TypeError):
        raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}") from None


def architectures_with_convs(keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """The architectures whose convs are exactly the ``features.N.weight`` among ``keys``, and those that have them all.

    What a weights file's keys say of its architecture: a full VGG-16 or VGG-19 matches exactly one;
    the first few convs (module indices the two share) fit both.

    >>> architectures_with_convs(f"features.{n}.weight" for n in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))
    (['vgg16'], ['vgg16'])
    >>> architectures_with_convs(["features.0.weight", "features.0.bias", "features.2.weight"])
    ([], ['vgg16', 'vgg19'])
    """
    parts = [key.split(".") for key in keys]
    indices = {int(p[1]) for p in parts if len(p) == 3 and p[0] == "features" and p[1].isdigit() and p[2] == "weight"}
    exact, fitting = [], []
    for arch in ARCHITECTURES.values():
        at = {arch.positions[name] for name in arch.conv_names}
        if indices == at:
            exact.append(arch.name)
        if indices and indices <= at:
            fitting.append(arch.name)
    return exact, fitting


def widths_architecture(widths: Iterable[str], arch: ArchLike | None = None) -> Architecture:
    """The architecture whose convs a widths dict names (``conv1_1`` onwards, in order): ``arch``, checked, when given.

    Without ``arch`` the names decide: a trunk that stops before the first conv the two differ in
    (``conv3_3``) has the same layers and resolutions in both, and is taken as VGG-19's.

    >>> widths_architecture({"conv1_1": 64, "conv1_2": 64}).name, widths_architecture(VGG16.dense_widths).name
    ('vgg19', 'vgg16')
    """
    names = list(widths)
    if arch is not None:
        architecture = get_architecture(arch)
        architecture.check_convs(names)
        return architecture
    for architecture in (VGG19, VGG16):
        if names == architecture.conv_names[: len(names)]:
            return architecture
    raise ValueError(f"widths must name the convs conv1_1 onwards in order (of VGG-19 or VGG-16), not {names}")


# VGG-19's tables under their historical names (the default architecture everywhere).
LAYER_TABLE: list[tuple[str, str]] = VGG19.layer_table
LAYER_NAMES: list[str] = VGG19.layer_names
LAYER_INDEX: dict[str, int] = VGG19.positions
#: The 16 conv layers, conv1_1 .. conv5_4.
CONV_NAMES: list[str] = VGG19.conv_names
DENSE_WIDTHS: dict[str, int] = VGG19.dense_widths


def layer_index(name: str, arch: ArchLike = DEFAULT_ARCH) -> int:
    """Module index of a named layer; raises a ValueError listing valid names."""
    return get_architecture(arch).layer_index(name)


def deepest_layer(names: Iterable[str], arch: ArchLike = DEFAULT_ARCH) -> str:
    """The layer among ``names`` that comes last in the network."""
    return get_architecture(arch).deepest_layer(names)


def convs_up_to(last_layer: str, arch: ArchLike = DEFAULT_ARCH) -> list[str]:
    """Conv layers needed to compute ``last_layer`` (everything after it can be dropped)."""
    return get_architecture(arch).convs_up_to(last_layer)


def conv_feeding(layer: str, arch: ArchLike = DEFAULT_ARCH) -> str:
    """The conv whose output channels ``layer`` carries (``relu3_3`` -> ``conv3_3``, ``pool2`` -> ``conv2_2``)."""
    return get_architecture(arch).conv_feeding(layer)


def conv_weight_counts(widths: dict[str, int], arch: ArchLike = DEFAULT_ARCH) -> dict[str, int]:
    """Weights per conv (3x3 kernels) of a trunk whose convs have these output ``widths``, in order.

    >>> conv_weight_counts({"conv1_1": 64, "conv1_2": 32})
    {'conv1_1': 1728, 'conv1_2': 18432}
    """
    return get_architecture(arch).conv_weight_counts(widths)


#: Weights per conv of the unpruned VGG-19.
DENSE_CONV_WEIGHTS: dict[str, int] = VGG19.dense_conv_weights


def min_input_side(last_layer: str, arch: ArchLike = DEFAULT_ARCH) -> int:
    """Smallest image side for which ``last_layer`` still has at least 1x1 spatial size."""
    return get_architecture(arch).min_input_side(last_layer)


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
