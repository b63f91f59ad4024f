"""The judge: how good is an output image, measured by something that never changes.

A pruned network has other feature scales, so its own loss says nothing about quality (the
seed's mistake). Every output is instead scored by the *dense* network's content and style
losses under the same preset and inputs, and by SSIM against the dense output made from the
same seed and init. Ratios near 1 and SSIM near 1 mean "as good as dense".
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from nst_core.image.color import luminance_image
from nst_core.image.io import pil_to_tensor
from nst_core.nst.losses import LossPreset, LossWeights, get_preset, loss_terms
from nst_core.nst.network import FeatureNetwork, device_of
from nst_core.nst.stylize import prepare_inputs, targets_at


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of two RGB images (b is resized to a's size if they differ), 1.0 = identical."""
    if a.size != b.size:
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    x = np.asarray(a.convert("RGB"))
    y = np.asarray(b.convert("RGB"))
    win = min(7, *x.shape[:2])
    win -= 1 - win % 2  # odd window, no larger than the image
    return float(structural_similarity(x, y, channel_axis=2, data_range=255, win_size=win))


class Judge:
    """Dense-network content and style losses of any image, for fixed inputs and preset.

    >>> judge = Judge(dense, "seed", content, [style], size=256)     # doctest: +SKIP
    >>> judge.compare(pruned_result.image, dense_result.image)       # doctest: +SKIP
    {'content_ratio': 1.08, 'style_ratio': 1.21, 'ssim': 0.83}
    """

    def __init__(
        self,
        dense_model: FeatureNetwork,
        preset: str | LossPreset,
        content,
        styles: list,
        size: int,
        blend=None,
        preserve_color: bool = False,
    ):
        self.model = dense_model
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.preset.check_architecture(dense_model.arch)  # the judge's layers are in its network
        self.prepared = prepare_inputs(content, styles, size, preserve_color)
        self.preserve_color = preserve_color
        # The very targets stylize optimised against at full size, so judged losses match its own.
        self.targets = targets_at(dense_model, self.preset, self.prepared, self.prepared.content.size, blend)
        self._unit = LossWeights(1.0, 1.0, 0.0)

    @torch.no_grad()
    def losses(self, image: Image.Image) -> dict[str, float]:
        """Unweighted dense content and style loss of ``image`` (resized to the content's size)."""
        seen = image.convert("RGB").resize(self.prepared.content.size, Image.Resampling.LANCZOS)
        if self.preserve_color:
            seen = luminance_image(seen)
        device = device_of(self.model)
        terms = loss_terms(self.model, self.preset, pil_to_tensor(seen).to(device), self.targets, self._unit)
        return {"content": float(terms["content"]), "style": float(terms["style"])}

    def compare(self, image: Image.Image, dense_image: Image.Image) -> dict[str, float]:
        """Ratios of ``image``'s judged losses to the dense output's, and SSIM against it."""
        mine, dense = self.losses(image), self.losses(dense_image)
        return {
            "content_ratio": _ratio(mine["content"], dense["content"]),
            "style_ratio": _ratio(mine["style"], dense["style"]),
            "ssim": ssim(dense_image, image),
        }


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("inf") if value > 0 else 1.0
