"""The objective of one scale as the optimisers see it: targets, the whole-image or tiled evaluator, the mask view.

An :data:`Evaluator` computes the loss terms of an image (a leaf tensor), leaves d(total)/d(image)
in ``image.grad`` and returns the terms as floats; the optimisers know nothing else of the loss.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from nst_core.image.io import pil_to_tensor
from nst_core.nst.losses import LossPreset, LossWeights, Targets, compute_targets, loss_terms
from nst_core.nst.network import FeatureNetwork, device_of
from nst_core.nst.stylize.inputs import PreparedInputs, RunInputs, mask_at, scale_images
from nst_core.nst.tiling import TiledEvaluator, TiledNetwork, tiled_targets

#: The objective as the optimisers see it: ``evaluate(image)`` computes the loss terms of ``image`` (a leaf
#: tensor), leaves d(total)/d(image) in ``image.grad`` (replacing what was there), and returns the terms as
#: floats. The untiled evaluator is one forward and one backward; a tiled one may accumulate tile by tile.
Evaluator = Callable[[torch.Tensor], dict[str, float]]


def targets_at(
    model: FeatureNetwork,
    preset: LossPreset,
    prepared: PreparedInputs,
    wh: tuple[int, int],
    blend: Sequence[float] | None = None,
    guides: list[torch.Tensor] | None = None,
) -> Targets:
    """Content and style targets for an output of size ``wh`` (what stylize and the judge both use)."""
    device = device_of(model)
    content_t, style_ts = scale_images(prepared, wh, device)
    guides = None if guides is None else [g.to(device) for g in guides]
    return compute_targets(model, preset, content_t, style_ts, blend, guides)


def dense_evaluator(
    model: FeatureNetwork,
    preset: LossPreset,
    targets: Targets,
    weights: LossWeights,
    precision: str = "fp32",
    layout: torch.memory_format = torch.channels_last,
) -> Evaluator:
    """The untiled :data:`Evaluator`: the whole image through the network at once."""
    device = device_of(model)

    def evaluate(image: torch.Tensor) -> dict[str, float]:
        image.grad = None
        with torch.enable_grad():
            # The optimised image stays contiguous (L-BFGS flattens it); only the network sees the layout.
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                terms = loss_terms(model, preset, image.contiguous(memory_format=layout), targets, weights)
            terms["total"].backward()
        return {k: float(v.detach()) for k, v in terms.items()}

    return evaluate


def tiled_evaluator(
    network: FeatureNetwork,
    inputs: RunInputs,
    wh: tuple[int, int],
    tile: int,
    guides: list[torch.Tensor] | None,
    generator: torch.Generator,
    cancel: threading.Event | None,
    on_tile: Callable[[int, int], None],
) -> TiledEvaluator:
    """A :class:`TiledEvaluator` for one scale of size ``wh``, its style targets computed tile by tile."""
    config = inputs.config
    net = TiledNetwork(network, inputs.preset, tile, config.precision, config.channels_last, cancel)
    content_t, style_ts = scale_images(inputs.images, wh, device_of(network))
    targets = tiled_targets(net, style_ts, config.style_blend, guides)
    return TiledEvaluator(net, targets, inputs.weights, content_t, generator, on_tile)


@dataclass
class View:
    """What the network sees of the optimised image at one scale: with ``--mask``, the composite
    content + mask * (image - content), so black areas stay the content; and the style region guides."""

    content: torch.Tensor | None = None  # (1, 3, h, w), only with a mask
    mask: torch.Tensor | None = None  # (1, 1, h, w) in 0..1
    guides: list[torch.Tensor] | None = None  # pixel guides of the style statistics (None: the whole image)

    @classmethod
    def at(cls, inputs: RunInputs, wh: tuple[int, int], device: torch.device) -> View:
        """The view at size ``wh``: the masks resized to it (an empty view without masks)."""
        if inputs.mask is None and inputs.style_masks is None:
            return cls()
        mask = mask_at(inputs.mask, wh).to(device) if inputs.mask is not None else None
        content = None
        if mask is not None:
            content = pil_to_tensor(inputs.images.content_seen.resize(wh, Image.Resampling.LANCZOS)).to(device)
        guides: list[torch.Tensor] | None
        if inputs.style_masks is not None:
            guides = [mask_at(m, wh).to(device) for m in inputs.style_masks]
            guides = [g * mask for g in guides] if mask is not None else guides  # no style where the content is kept
        else:
            guides = [mask] if mask is not None else None  # the style statistics of the stylized area only
        return cls(content, mask, guides)

    def seen(self, image: torch.Tensor) -> torch.Tensor:
        """The composite the network sees (and the output shows)."""
        if self.mask is None or self.content is None:
            return image
        return self.content + self.mask * (image - self.content)

    def masked(self, evaluate: Evaluator) -> Evaluator:
        """``evaluate`` applied to the composite; the gradient is chained back to the image by hand
        (d composite / d image = mask), so any evaluator, tiled or not, works unchanged."""
        mask = self.mask
        if mask is None:
            return evaluate

        def evaluate_composite(image: torch.Tensor) -> dict[str, float]:
            seen = self.seen(image.detach()).requires_grad_(True)
            terms = evaluate(seen)
            assert seen.grad is not None  # every evaluator leaves the gradient of its input
            image.grad = mask * seen.grad
            return terms

        return evaluate_composite
