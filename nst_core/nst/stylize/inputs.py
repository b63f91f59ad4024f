"""A run's inputs: the content, style, mask and init images, loaded once, resized and colour-converted.

:func:`load_run_inputs` validates the config and loads everything it names, before any network
is needed (a typo in a path costs seconds, not a network load); :func:`prepare_inputs` is its
image part, shared with the judge (``nst_core.nst.quality``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from nst_core.core.errors import UserError
from nst_core.image.color import blended_statistics, luminance_image, match_color, match_luminance, recolor
from nst_core.image.io import ImageSource, input_label, load_image, pil_to_tensor, resize_max_side
from nst_core.nst.losses import LossPreset, LossWeights, normalise_blend
from nst_core.nst.stylize.config import INITS, StylizeConfig

# The seed initialised with 0.001*randn in mean-subtracted space: the mean colour plus faint noise.
NOISE_MEAN_RGB = (123.68, 116.779, 103.939)
NOISE_STD = 0.001


@dataclass
class PreparedInputs:
    """Content and style images as the optimisation sees them (resized; luminance-only or colour-matched if asked)."""

    content: Image.Image  # the original content at output size (its colours are restored at the end)
    content_seen: Image.Image
    styles_seen: list[Image.Image]
    style_scale: float = 1.0  # style images' longer side relative to the output's
    style_size: int | None = None  # or their longer side at the full output size, px

    def style_side(self, longest: int) -> int | None:
        """Longer side of the style images for an output whose longer side is ``longest`` (None: as before,
        the output's, never enlarged)."""
        if self.style_size is not None:
            return max(1, round(self.style_size * longest / max(self.content.size)))
        if self.style_scale != 1.0:
            return max(1, round(longest * self.style_scale))
        return None


def style_load_side(size: int, style_scale: float = 1.0, style_size: int | None = None) -> int:
    """The longer side style images are loaded at: large enough for the style size asked, so a style
    target is a reduction of the original, never an enlargement of a reduction.

    >>> style_load_side(512, style_scale=1.5), style_load_side(512, style_size=300)
    (768, 512)
    """
    return max(size, style_size or 0, math.ceil(size * style_scale))


def prepare_inputs(
    content: ImageSource,
    styles: Sequence[ImageSource],
    size: int,
    preserve_color: bool,
    color: str = "none",
    style_scale: float = 1.0,
    style_size: int | None = None,
) -> PreparedInputs:
    """Load, resize and (for colour preservation or matching) convert inputs exactly as a run does."""
    content_img = load_image(content, max_side=size, name=input_label("content image", content))
    if not styles:
        raise UserError("at least one style image is needed")
    style_max = style_load_side(size, style_scale, style_size)
    style_imgs = [
        load_image(s, max_side=style_max, name=input_label(f"style image {i + 1}", s)) for i, s in enumerate(styles)
    ]
    if preserve_color or color == "luminance":
        content_seen = luminance_image(content_img)
        style_imgs = [match_luminance(s, content_img) for s in style_imgs]
        return PreparedInputs(content_img, content_seen, style_imgs, style_scale, style_size)
    if color == "histogram":
        style_imgs = [match_color(s, content_img) for s in style_imgs]
    return PreparedInputs(content_img, content_img, style_imgs, style_scale, style_size)


@dataclass(frozen=True)
class RunInputs:
    """A validated config and every image it names, loaded and converted: the part of a run that needs no network."""

    config: StylizeConfig  # a copy of the caller's, validated
    preset: LossPreset  # the config's preset with its layer and style-loss choices
    weights: LossWeights
    images: PreparedInputs
    mask: Image.Image | None = None  # the content mask, greyscale at its own size
    style_masks: list[Image.Image] | None = None  # one greyscale mask per style image
    init: Image.Image | None = None  # the starting image when ``config.init`` is a path (luminance if luminance-only)


def load_run_inputs(
    content: ImageSource, styles: Sequence[ImageSource], config: StylizeConfig | None = None
) -> RunInputs:
    """Validate ``config`` (once) and load every image a run with it needs; one-line UserErrors otherwise.

    >>> inputs = load_run_inputs("examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
    ...                          StylizeConfig(size=64))                # doctest: +SKIP
    >>> inputs.images.content.size                                       # doctest: +SKIP
    (64, 48)
    """
    # A copy: what runs is what was validated and planned, whatever the caller changes afterwards.
    config = copy.deepcopy(config or StylizeConfig())
    config.validate()
    preset = config.loss_preset()
    weights = LossWeights.from_preset(preset, config.content_weight, config.style_weight, config.tv_weight)
    images = prepare_inputs(
        content, styles, config.size, config.preserve_color, config.color, config.style_scale, config.style_size
    )
    if config.style_masks is not None and len(config.style_masks) != len(images.styles_seen):
        raise UserError(
            f"{len(config.style_masks)} style masks given for {len(images.styles_seen)} style images: "
            "give one per style"
        )
    normalise_blend(config.style_blend, len(images.styles_seen))  # a UserError now, not at the first scale
    mask = load_mask(config.mask, "mask") if config.mask is not None else None
    style_masks = None
    if config.style_masks is not None:
        style_masks = [load_mask(path, f"style mask {i + 1}") for i, path in enumerate(config.style_masks)]
    init = None
    if config.init not in INITS:
        init = load_image(config.init, name=f"init image {config.init}")
        init = luminance_image(init) if config.luminance_only else init
    return RunInputs(config, preset, weights, images, mask, style_masks, init)


def load_mask(source: ImageSource, option: str) -> Image.Image:
    """A mask image in greyscale (white: 1, black: 0; soft edges kept), at its own size."""
    return load_image(source, name=input_label(option, source)).convert("L")


def mask_at(mask: Image.Image, wh: tuple[int, int]) -> torch.Tensor:
    """A greyscale mask as a (1, 1, h, w) tensor in 0..1 at size ``wh``."""
    resized = mask.resize(wh, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).view(1, 1, wh[1], wh[0])


def initial_image(inputs: RunInputs, wh: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """The image the optimisation starts from at size ``wh`` (the coarsest scale), RGB 0..255."""
    w, h = wh
    init = inputs.config.init
    if init == "content":
        return pil_to_tensor(inputs.images.content_seen.resize((w, h), Image.Resampling.LANCZOS))
    if init == "palette":
        images = inputs.images
        weights = normalise_blend(inputs.config.style_blend, len(images.styles_seen))
        palette = recolor(images.content_seen, *blended_statistics(list(images.styles_seen), weights))
        return pil_to_tensor(palette.resize((w, h), Image.Resampling.LANCZOS))
    if init == "style":
        return pil_to_tensor(inputs.images.styles_seen[0].resize((w, h), Image.Resampling.LANCZOS))
    if init == "noise":
        mean = torch.tensor(NOISE_MEAN_RGB).view(1, 3, 1, 1)
        return mean + NOISE_STD * torch.randn((1, 3, h, w), generator=generator)
    assert inputs.init is not None  # load_run_inputs loads every init that is a path
    return pil_to_tensor(inputs.init.resize((w, h), Image.Resampling.LANCZOS))


def scale_images(
    prepared: PreparedInputs, wh: tuple[int, int], device: torch.device
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The content image at size ``wh`` and the style images at this scale's size, as tensors on ``device``."""
    w, h = wh
    content_t = pil_to_tensor(prepared.content_seen.resize((w, h), Image.Resampling.LANCZOS))
    # Style images keep their aspect; they shrink with the scale so brush strokes keep their size
    # relative to the output.
    side = prepared.style_side(max(w, h))
    if side is None:
        style_ts = [pil_to_tensor(resize_max_side(s, max(w, h))) for s in prepared.styles_seen]
    else:
        style_ts = [pil_to_tensor(_resize_longest(s, side)) for s in prepared.styles_seen]
    return content_t.to(device), [s.to(device) for s in style_ts]


def _resize_longest(image: Image.Image, side: int) -> Image.Image:
    w, h = image.size
    scale = side / max(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
