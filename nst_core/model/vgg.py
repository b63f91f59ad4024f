"""VGG-19 or VGG-16 as a feature extractor: the truncated network ``VGGFeatures``, and loading one from a checkpoint.

The network keeps torchvision's module indices (``features.N.weight``), so every weight
source in ``nst_core.model.weights`` loads into it without renaming, and a pruned network whose
channel counts shrank is still the same class with other ``widths``. Its layer table is its
architecture's (``arch``: ``vgg19`` or ``vgg16``, from ``nst_core.model.layers.ARCHITECTURES``).

Images enter as RGB in 0..255 (the optimization space of ``nst_core.nst.stylize``); the
network applies the preprocessing that belongs to its weights, so callers never care
whether the weights came from Caffe (BGR, mean only) or torchvision (RGB, mean and std).

huggingface_hub's ``ModelHubMixin`` gives it ``from_pretrained``, ``save_pretrained`` and
``push_to_hub`` in the nst checkpoint format; importing this module is all they need.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import torch
from huggingface_hub import ModelCard, ModelHubMixin
from torch import nn

from nst_core.core.devices import resolve_device
from nst_core.model.checkpoint import CheckpointContents, read_checkpoint
from nst_core.model.hub.pretrained import pretrained_card, pretrained_checkpoint, save_pretrained_files
from nst_core.model.layers import CAFFE, DEFAULT_ARCH, POOLINGS, Architecture, ArchLike, Preprocessing, get_architecture
from nst_core.model.weight_spec import is_random_source


class VGGFeatures(
    nn.Module,
    ModelHubMixin,
    library_name="pytorch",
    pipeline_tag="image-feature-extraction",
    tags=["neural-style-transfer", "vgg19"],
):
    """A VGG's convolutional trunk (``arch``: ``vgg19`` or ``vgg16``), truncated after ``last_layer``.

    ``last_layer`` defaults to the architecture's deepest ReLU (``relu5_4``, ``relu5_3``).
    ``widths`` gives each conv's output channels (defaults to the dense network); a
    structured-pruned network is the same class with smaller widths, and
    ``kept_channels`` records which teacher output channels each conv kept.
    Module indices match torchvision, so ``state_dict()`` keys are ``features.N.weight``.

    huggingface_hub's ``ModelHubMixin`` gives it ``from_pretrained``, ``save_pretrained`` and
    ``push_to_hub`` in the nst checkpoint format (packed masks, config.json, model card; the files
    are ``nst_core.model.hub.pretrained``'s):

    >>> VGGFeatures.from_pretrained("me/vgg19-seed").push_to_hub("me/copy")  # doctest: +SKIP
    """

    _mean: torch.Tensor  # buffers registered in __init__, typed for the checker
    _std: torch.Tensor

    def __init__(
        self,
        last_layer: str | None = None,
        widths: dict[str, int] | None = None,
        pooling: str = "max",
        preprocessing: Preprocessing = CAFFE,
        arch: ArchLike = DEFAULT_ARCH,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be 'max' or 'avg', not {pooling!r}")
        self.architecture: Architecture = get_architecture(arch)
        #: The architecture's name (``vgg19``, ``vgg16``): checkpoint headers and reports record it.
        self.arch: str = self.architecture.name
        last_layer = last_layer or self.architecture.last_layer
        self.architecture.layer_index(last_layer)  # "unknown VGG-16 layer ..." before anything is built
        unknown = sorted(set(widths or {}) - set(self.architecture.conv_names))
        if unknown:
            raise ValueError(f"widths name {unknown}, which {self.architecture.title} does not have")
        self.last_layer = last_layer
        self.pooling = pooling
        self.preprocessing = preprocessing
        self.widths = {**self.architecture.dense_widths, **(widths or {})}
        # Set by pruning: which teacher output channels each conv kept (structured), and
        # bool masks, True = weight kept (fine-grained). Empty for a dense network.
        self.kept_channels: dict[str, torch.Tensor] = {}
        self.masks: dict[str, torch.Tensor] = {}
        self.weight_source = "unset"
        # Where this network came from (pruning method, profile, scan, fine-tuning), for metadata.
        self.provenance: dict = {}

        layers: list[nn.Module] = []
        in_ch = 3
        for name, kind in self.architecture.layers_up_to(last_layer):
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
        return self.architecture.convs_up_to(self.last_layer)

    def layer_index(self, name: str) -> int:
        """The module index of a layer of this network's architecture (a ValueError naming it otherwise)."""
        return self.architecture.layer_index(name)

    def conv(self, name: str) -> nn.Conv2d:
        """The conv module for a layer name such as ``conv3_1``."""
        return cast(nn.Conv2d, self.features[self.layer_index(name)])

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

    # -- huggingface_hub's ModelHubMixin: the steps it leaves to the model, in the nst format --

    def _save_pretrained(self, save_directory: Path) -> None:
        save_pretrained_files(self, Path(save_directory))

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        config: dict | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> VGGFeatures:
        return load_checkpoint(pretrained_checkpoint(model_id, config, revision, **kwargs), device=device)

    def generate_model_card(
        self, *args: Any, save_directory: Path | None = None, repo_id: str | None = None, **kwargs: Any
    ) -> ModelCard:
        """The model card of the checkpoint ``save_pretrained`` just wrote into ``save_directory``."""
        return pretrained_card(save_directory, repo_id, **kwargs)

    def save_pretrained(
        self, save_directory: str | Path, *, model_card_kwargs: dict | None = None, **kwargs: Any
    ) -> str | None:
        """``ModelHubMixin.save_pretrained``; the card is rendered from the files it saved (and names ``repo_id``)."""
        card = {"repo_id": kwargs.get("repo_id"), **(model_card_kwargs or {}), "save_directory": Path(save_directory)}
        return super().save_pretrained(save_directory, model_card_kwargs=card, **kwargs)

    def push_to_hub(self, repo_id: str, *, model_card_kwargs: dict | None = None, **kwargs: Any) -> str:
        """``ModelHubMixin.push_to_hub``; the card names ``repo_id``.

        ``delete_patterns`` (say ``"*.safetensors"``) removes stale remote files in the same commit.
        """
        return super().push_to_hub(
            repo_id, model_card_kwargs={**(model_card_kwargs or {}), "repo_id": repo_id}, **kwargs
        )

    def forward(self, image: torch.Tensor, layers, first_padding: str = "zeros") -> dict[str, torch.Tensor]:
        """Activations of the named ``layers`` for an RGB 0..255 batch.

        ``first_padding="replicate"`` pads the input of the first conv with its edge pixels instead of
        zeros (which, after preprocessing, are a mid-grey frame the image's border is compared with).
        """
        wanted = {self.layer_index(name): name for name in layers}
        if max(wanted) >= len(self.features):
            raise ValueError(f"layer {wanted[max(wanted)]!r} is past this network's last layer {self.last_layer!r}")
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        for index, module in enumerate(self.features):
            if index == 0 and first_padding == "replicate":
                first = cast(nn.Conv2d, module)
                x = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), first.weight, first.bias)
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
            "arch": self.arch,
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


def random_state_dict(
    last_layer: str | None = None, seed: int = 0, widths: dict[str, int] | None = None, arch: ArchLike = DEFAULT_ARCH
) -> dict:
    """Seeded He-initialised weights in torchvision's key layout (for tests and offline use)."""
    model = VGGFeatures(last_layer, widths=widths, arch=arch)
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name in model.conv_names:
        conv = model.conv(name)
        index = model.layer_index(name)
        fan_in = conv.in_channels * 9
        state[f"features.{index}.weight"] = torch.randn(conv.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(conv.out_channels)
    return state


def network_from_checkpoint(
    contents: CheckpointContents,
    last_layer: str | None = None,
    pooling: str | None = None,
    preprocessing: Preprocessing | None = None,
) -> VGGFeatures:
    """The network a checkpoint holds (widths, weights, masks, kept channels, provenance), not frozen.

    ``last_layer`` (at or before the checkpoint's), ``pooling`` and ``preprocessing`` default to
    the checkpoint's own; a shorter network keeps the checkpoint's first convs.
    """
    model = VGGFeatures(
        last_layer or contents.last_layer,
        widths=contents.widths,
        pooling=pooling or contents.pooling,
        preprocessing=preprocessing or contents.preprocessing,
        arch=contents.arch,
    )
    wanted = model.state_dict()
    model.load_state_dict({key: value for key, value in contents.state_dict.items() if key in wanted})
    model.masks = {name: mask for name, mask in contents.masks.items() if name in model.widths}
    model.kept_channels = {name: kept for name, kept in contents.kept_channels.items() if name in model.widths}
    model.weight_source = contents.weight_source
    model.provenance = contents.provenance
    return model


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> VGGFeatures:
    """A frozen ``VGGFeatures`` rebuilt from a checkpoint: weights (as fp32), masks, kept channels, provenance.

    The whole header is checked (widths bounded by the dense network's, every tensor's dtype,
    shape and offsets) before any tensor is read (see ``nst_core.model.checkpoint.read_checkpoint``).

    >>> model = load_checkpoint("seed.safetensors")  # doctest: +SKIP
    >>> model.masks["conv1_2"].float().mean()  # doctest: +SKIP
    tensor(0.1000)
    """
    target = resolve_device(device)  # a missing GPU is reported before the file is read
    return freeze(network_from_checkpoint(read_checkpoint(path)).to(target))
