"""The network as the engine sees it: what the loop, the tiler and the losses need of a feature extractor.

:class:`FeatureNetwork` is that need as a Protocol. ``VGGFeatures`` satisfies it, and so do the
engine's own wrappers: :class:`PaddedNetwork` (the first conv's padding chosen) and
``tiling.TiledNetwork`` (the network in a run's precision and layout), so any of them can be
handed to the losses (``compute_targets``, ``loss_terms``) and to one another.

>>> from nst_core.model.weights import load_vgg
>>> model = load_vgg("random:0", last_layer="relu2_1")
>>> isinstance(model, FeatureNetwork), device_of(model).type
(True, 'cpu')
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch

from nst_core.model.vgg import VGGFeatures


@runtime_checkable
class FeatureNetwork(Protocol):
    """A network that maps an RGB 0..255 batch (N, 3, H, W) to the activations of named VGG layers."""

    def __call__(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{layer: activations}`` for each of ``layers`` (names such as ``relu4_2``)."""
        ...

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The weights (their device is where inputs must be)."""
        ...

    @property
    def last_layer(self) -> str:
        """The deepest layer the network computes."""
        ...

    @property
    def widths(self) -> dict[str, int]:
        """Each conv's output channels, ``conv1_1`` onwards (the memory and cost models read them)."""
        ...

    @property
    def arch(self) -> str:
        """The architecture's name, ``vgg19`` or ``vgg16`` (a key of ``nst_core.model.layers.ARCHITECTURES``)."""
        ...


def device_of(network: FeatureNetwork) -> torch.device:
    """The device a network's weights live on (where its inputs must be)."""
    return next(network.parameters()).device


class WrappedNetwork:
    """A wrapper that changes how a network is called and keeps its weights, architecture, depth and widths.

    Subclasses set ``self.model`` and define ``__call__``.
    """

    model: FeatureNetwork

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The wrapped network's weights."""
        return self.model.parameters()

    @property
    def last_layer(self) -> str:
        """The wrapped network's deepest layer."""
        return self.model.last_layer

    @property
    def widths(self) -> dict[str, int]:
        """The wrapped network's conv widths."""
        return self.model.widths

    @property
    def arch(self) -> str:
        """The wrapped network's architecture."""
        return self.model.arch


class PaddedNetwork(WrappedNetwork):
    """A VGG trunk whose first conv pads with ``padding`` ("replicate": edge pixels, no dark frame)."""

    model: VGGFeatures  # the padding is VGGFeatures' own keyword

    def __init__(self, model: VGGFeatures, padding: str):
        self.model, self.padding = model, padding

    def __call__(self, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.model(image, layers, first_padding=self.padding)
