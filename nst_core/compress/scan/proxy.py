"""A fast sensitivity proxy: how much pruning distorts the features the losses read.

No optimisation is run. For the content image, the pruned network's content-layer
activations are compared with the dense network's; for each style image, its style-layer
Gram matrices. Both are relative Frobenius errors, weighted like the preset's loss layers:

    feature_distortion = sum_l w_l ||F_pruned - F_dense|| / ||F_dense||   (content layers)
    gram_distortion    = sum_l w_l ||G_pruned - G_dense|| / ||G_dense||   (style layers, blended over styles)

Both are 0 for the dense network. A structured-pruned layer has fewer channels; removing a
filter and its bias is the same as that filter outputting 0 after the ReLU, so its
activations are compared zero-filled at the removed channels, which counts the energy the
removed channels carried.
"""

from __future__ import annotations

import torch

from nst_core.model.layers import conv_feeding
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import LossPreset, gram_matrix, normalise_blend


def _teacher_channels(model: VGGFeatures, layer: str, activation: torch.Tensor, dense_width: int) -> torch.Tensor:
    """Activation with removed channels put back as zeros, in the dense network's channel order."""
    if activation.shape[1] == dense_width:
        return activation
    kept = model.kept_channels[conv_feeding(layer, model.arch)].to(activation.device)
    full = activation.new_zeros((activation.shape[0], dense_width, *activation.shape[2:]))
    full[:, kept] = activation
    return full


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    reference = b.norm()
    return float((a - b).norm() / reference) if reference > 0 else float((a - b).norm() > 0)


class ProxyProbe:
    """Dense activations computed once; :meth:`measure` scores any pruned network against them.

    >>> probe = ProxyProbe(dense, preset, content_t, [style_t])     # doctest: +SKIP
    >>> probe.measure(prune(dense, Profile("fine", {"conv3_1": 0.8})))   # doctest: +SKIP
    {'feature_distortion': 0.12, 'gram_distortion': 0.08, 'proxy': 0.10}
    """

    def __init__(
        self,
        dense: VGGFeatures,
        preset: LossPreset,
        content: torch.Tensor,
        styles: list[torch.Tensor],
        blend: list[float] | None = None,
    ):
        self.preset = preset
        self.content = content
        self.styles = styles
        self.blend = normalise_blend(blend, len(styles))
        self.widths = {layer: dense.widths[conv_feeding(layer, dense.arch)] for layer in preset.layers}
        self.dense_content, self.dense_grams = self._features(dense)

    @torch.no_grad()
    def _features(self, model: VGGFeatures) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        content_layers = list(self.preset.content_layers)
        style_layers = list(self.preset.style_layers)
        feats = model(self.content, content_layers)
        content = {n: _teacher_channels(model, n, feats[n], self.widths[n]) for n in content_layers}
        grams = []
        for style in self.styles:
            feats = model(style, style_layers)
            grams.append({n: gram_matrix(_teacher_channels(model, n, feats[n], self.widths[n])) for n in style_layers})
        return content, grams

    def measure(self, pruned: VGGFeatures) -> dict[str, float]:
        """Feature and Gram distortion of ``pruned`` against the dense network, and their mean (``proxy``)."""
        content, grams = self._features(pruned)
        cw = self.preset.content_layers
        sw = self.preset.style_layers
        feature = sum(w * _relative(content[n], self.dense_content[n]) for n, w in cw.items()) / sum(cw.values())
        gram = 0.0
        for b, mine, dense in zip(self.blend, grams, self.dense_grams):
            gram += b * sum(w * _relative(mine[n], dense[n]) for n, w in sw.items()) / sum(sw.values())
        return {"feature_distortion": feature, "gram_distortion": gram, "proxy": (feature + gram) / 2}
