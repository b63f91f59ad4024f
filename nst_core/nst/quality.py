"""The judge: how good is an output image, measured by something that never changes.

A pruned network has other feature scales, so its own loss says nothing about quality (the
seed's mistake). Every output is instead scored by the *dense* network's content and style
losses under the same preset and inputs, and by SSIM against the dense output made from the
same seed and init, and by a perceptual distance to it that needs nothing but the VGG (LPIPS
without its learned layer weights). Ratios near 1, SSIM near 1 and a distance near 0 mean
"as good as dense".
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from nst_core.image.color import luminance_image
from nst_core.image.io import pil_to_tensor
from nst_core.model.layers import get_architecture
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


#: LPIPS's VGG layers (Zhang et al., 2018); VGG-16 and VGG-19 both have them.
PERCEPTUAL_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


@torch.no_grad()
def perceptual_distance(model: FeatureNetwork, a: Image.Image, b: Image.Image) -> float:
    """LPIPS's unlearned variant: 0 for identical images, larger the more they differ to the network.

    At each of :data:`PERCEPTUAL_LAYERS`, every pixel's feature vector is scaled to unit length, the
    squared difference is summed over channels and averaged over pixels; the five layers count
    equally (LPIPS proper weights channels with learned "lin" layers, which need a download).
    ``b`` is resized to ``a``'s size. A ValueError when the network stops before ``relu5_3``.
    """
    if b.size != a.size:
        b = b.resize(a.size, Image.Resampling.LANCZOS)
    device = device_of(model)
    batch = torch.cat([pil_to_tensor(a.convert("RGB")), pil_to_tensor(b.convert("RGB"))]).to(device)
    features = model(batch, PERCEPTUAL_LAYERS)
    total = 0.0
    for layer in PERCEPTUAL_LAYERS:
        unit = features[layer] / (features[layer].norm(dim=1, keepdim=True) + 1e-10)
        total += float((unit[0] - unit[1]).pow(2).sum(dim=0).mean())
    return total / len(PERCEPTUAL_LAYERS)


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
        """Ratios of ``image``'s judged losses to the dense output's, SSIM against it and, when the judge's
        network reaches ``relu5_3``, the perceptual distance to it."""
        mine, dense = self.losses(image), self.losses(dense_image)
        verdict = {
            "content_ratio": _ratio(mine["content"], dense["content"]),
            "style_ratio": _ratio(mine["style"], dense["style"]),
            "ssim": ssim(dense_image, image),
        }
        if self.reaches_perceptual_layers:
            verdict["perceptual"] = perceptual_distance(self.model, dense_image, image)
        return verdict

    @property
    def reaches_perceptual_layers(self) -> bool:
        """Whether the judge's network computes every layer :func:`perceptual_distance` reads."""
        architecture = get_architecture(self.model.arch)
        return architecture.layer_index(self.model.last_layer) >= architecture.layer_index(PERCEPTUAL_LAYERS[-1])


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else float("inf") if value > 0 else 1.0
