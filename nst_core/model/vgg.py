"""VGG-19 as a feature extractor: the layer table, preprocessing, and a truncated network.

The network keeps torchvision's module indices (``features.N.weight``), so every weight
source in ``nst_core.model.weights`` loads into it without renaming, and a pruned network whose
channel counts shrank is still the same class with other ``widths``.

Images enter as RGB in 0..255 (the optimization space of ``nst_core.nst.stylize``); the
network applies the preprocessing that belongs to its weights, so callers never care
whether the weights came from Caffe (BGR, mean only) or torchvision (RGB, mean and std).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from huggingface_hub import ModelCard, ModelHubMixin
from torch import nn

from nst_core.model.weight_spec import is_random_source

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


def deepest_layer(names) -> str:
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


class HubFormat(Protocol):
    """How a ``VGGFeatures`` is written to and read from a Hub repo folder.

    The format (the nst checkpoint, config.json and the model card) lives in higher layers
    (``nst_core.model.checkpoint``, ``nst_core.hub.publish``); ``nst_core.hub.publish`` registers its implementation
    with :func:`register_hub_format` when it is imported, so this module imports none of them.
    """

    def save(self, model: VGGFeatures, save_directory: Path) -> None: ...

    def card(self, model: VGGFeatures, save_directory: Path, repo_id: str | None, **kwargs: Any) -> ModelCard: ...

    def load(self, model_id: str, config: dict | None, revision: str | None, **kwargs: Any) -> VGGFeatures: ...


_hub_format: HubFormat | None = None


def register_hub_format(hub_format: HubFormat) -> None:
    """Give ``VGGFeatures.from_pretrained`` / ``save_pretrained`` / ``push_to_hub`` their format (see :class:`HubFormat`)."""
    global _hub_format
    _hub_format = hub_format


def _registered_hub_format() -> HubFormat:
    if _hub_format is None:
        raise RuntimeError(
            "VGGFeatures' Hub methods need nst_core.hub.publish: `from nst_core.hub.publish import VGGFeatures` (or `import nst_core.hub.publish`) first"
        )
    return _hub_format


class VGGFeatures(
    nn.Module,
    ModelHubMixin,
    library_name="pytorch",
    pipeline_tag="image-feature-extraction",
    tags=["neural-style-transfer", "vgg19"],
):
    """VGG-19's convolutional trunk, truncated after ``last_layer``.

    ``widths`` gives each conv's output channels (defaults to the dense network); a
    structured-pruned network is the same class with smaller widths, and
    ``kept_channels`` records which teacher output channels each conv kept.
    Module indices match torchvision, so ``state_dict()`` keys are ``features.N.weight``.

    huggingface_hub's ``ModelHubMixin`` gives it ``from_pretrained``, ``save_pretrained`` and
    ``push_to_hub`` in the nst checkpoint format (packed masks, config.json, model card), once
    ``nst_core.hub.publish`` is imported (it provides the format; see :class:`HubFormat`):

    >>> from nst_core.hub.publish import VGGFeatures                            # doctest: +SKIP
    >>> VGGFeatures.from_pretrained("me/vgg19-seed").push_to_hub("me/copy")  # doctest: +SKIP
    """

    def __init__(
        self,
        last_layer: str = "relu5_4",
        widths: dict[str, int] | None = None,
        pooling: str = "max",
        preprocessing: Preprocessing = CAFFE,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        self.last_layer = last_layer
        self.pooling = pooling
        self.preprocessing = preprocessing
        self.widths = {**DENSE_WIDTHS, **(widths or {})}
        # Set by pruning: which teacher output channels each conv kept (structured), and
        # bool masks, True = weight kept (fine-grained). Empty for a dense network.
        self.kept_channels: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.weight_source = "unset"
        # Where this network came from (pruning method, profile, scan, fine-tuning), for metadata.
        self.provenance: dict = {}

        layers: list[nn.Module] = []
        in_ch = 3
        for name, kind in LAYER_TABLE[: layer_index(last_layer) + 1]:
            if kind == "conv":
                out_ch = self.widths[name]
                layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
                in_ch = out_ch
            elif kind == "relu":
                # Registered not in-place; forward() applies it in place wherever no caller reads the conv output.
                layers.append(nn.ReLU(inplace=False))
            else:
                pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
                layers.append(pool(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.widths = {name: self.widths[name] for name in self.conv_names}

        p = preprocessing
        self.register_buffer("_mean", torch.tensor(p.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(p.std).view(1, 3, 1, 1), persistent=False)

    @property
    def conv_names(self) -> list[str]:
        """The convs this trunk has, in order."""
        return convs_up_to(self.last_layer)

    def conv(self, name: str) -> nn.Conv2d:
        """The conv module for a layer name such as ``conv3_1``."""
        return self.features[layer_index(name)]

    def convs(self) -> dict[str, nn.Conv2d]:
        """Every conv module by layer name, in order."""
        return {name: self.conv(name) for name in self.conv_names}

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 (N,3,H,W) -> the input these weights were trained on."""
        x = image
        if self.preprocessing.bgr:
            x = x.flip(1)
        x = x * self.preprocessing.scale
        return (x - self._mean) / self._std

    # -- huggingface_hub's ModelHubMixin: the steps it leaves to the model, all in the registered format --

    def _save_pretrained(self, save_directory: Path) -> None:
        _registered_hub_format().save(self, Path(save_directory))

    @classmethod
    def _from_pretrained(
        cls, *, model_id: str, revision: str | None, config: dict | None = None, **kwargs: Any
    ) -> VGGFeatures:
        return _registered_hub_format().load(model_id, config, revision, **kwargs)

    def generate_model_card(
        self, *args: Any, save_directory: Path | None = None, repo_id: str | None = None, **kwargs: Any
    ) -> ModelCard:
        """The model card of the checkpoint ``save_pretrained`` just wrote into ``save_directory``."""
        return _registered_hub_format().card(self, save_directory, repo_id, **kwargs)

    def save_pretrained(
        self, save_directory: str | Path, *, model_card_kwargs: dict | None = None, **kwargs: Any
    ) -> str | None:
        """``ModelHubMixin.save_pretrained``; the card is rendered from the files it saved (and names ``repo_id``)."""
        card = {"repo_id": kwargs.get("repo_id"), **(model_card_kwargs or {}), "save_directory": Path(save_directory)}
        return super().save_pretrained(save_directory, model_card_kwargs=card, **kwargs)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs: Any) -> str:
        """``ModelHubMixin.push_to_hub`` (``delete_patterns`` removes stale files in the same commit); the card names ``repo_id``."""
        return super().push_to_hub(
            repo_id, model_card_kwargs={**(model_card_kwargs or {}), "repo_id": repo_id}, **kwargs
        )

    def forward(self, image: torch.Tensor, layers, first_padding: str = "zeros") -> dict[str, torch.Tensor]:
        """Activations of the named ``layers`` for an RGB 0..255 batch.

        ``first_padding="replicate"`` pads the input of the first conv with its edge pixels instead of
        zeros (which, after preprocessing, are a mid-grey frame the image's border is compared with).
        """
        wanted = {layer_index(name): name for name in layers}
        if max(wanted) >= len(self.features):
            raise ValueError(f"layer {wanted[max(wanted)]!r} is past this network's last layer {self.last_layer!r}")
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        for index, module in enumerate(self.features):
            if index == 0 and first_padding == "replicate":
                x = nn.functional.conv2d(
                    nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), module.weight, module.bias
                )
            elif isinstance(module, nn.ReLU) and index - 1 not in wanted:
                # In place saves a full-size activation per ReLU. Safe for autograd: a conv saves its input
                # and weight for backward, never its output, and the ReLU's own backward reads its result.
                x = torch.relu_(x)
            else:
                x = module(x)
            if index in wanted:
                out[wanted[index]] = x
                if len(out) == len(wanted):
                    break  # nothing past the deepest requested layer is computed
        return out

    @property
    def has_random_weights(self) -> bool:
        """True when the weights are seeded random ones: results are then mechanically right, visually meaningless."""
        return is_random_source(self.weight_source)

    def describe(self) -> dict:
        """Architecture facts for metadata and reports."""
        return {
            "arch": "vgg19",
            "last_layer": self.last_layer,
            "pooling": self.pooling,
            "widths": dict(self.widths),
            "preprocessing": self.preprocessing.to_dict(),
            "weight_source": self.weight_source,
        }


def freeze(model: VGGFeatures) -> VGGFeatures:
    """Eval mode, no parameter gradients: the trunk is a fixed feature extractor."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def random_state_dict(last_layer: str = "relu5_4", seed: int = 0, widths: dict[str, int] | None = None) -> dict:
    """Seeded He-initialised weights in torchvision's key layout (for tests and offline use)."""
    model = VGGFeatures(last_layer, widths=widths)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name in model.conv_names:
        conv = model.conv(name)
        index = layer_index(name)
        fan_in = conv.in_channels * 9
        state[f"features.{index}.weight"] = torch.randn(conv.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(conv.out_channels)
    return state
