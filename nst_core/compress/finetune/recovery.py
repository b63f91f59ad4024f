"""Measured recovery on held-out images: distortion against the teacher and the judge's verdict of a
short style transfer, before and after fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from nst_core.compress.calibration import CalibrationImage
from nst_core.compress.finetune.distill import relative_error, teacher_at_kept_channels
from nst_core.core.errors import UserError
from nst_core.image.io import tensor_to_pil
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import get_preset, gram_matrix
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import StylizeConfig, prepare, stylize


def _fit(pixels: torch.Tensor, max_side: int) -> torch.Tensor:
    """(3, H, W) -> (1, 3, h, w) with the longer side at most ``max_side``."""
    image = pixels.unsqueeze(0)
    h, w = image.shape[-2:]
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
    return image


@torch.no_grad()
def distortion(
    teacher: VGGFeatures, student: VGGFeatures, images: list[CalibrationImage], layers: list[str], max_side: int = 256
) -> dict:
    """Feature and Gram distortion of ``student`` against ``teacher`` on whole ``images``.

    Relative squared errors (see ``relative_error``) averaged over images and ``layers``;
    the result's ``layers`` holds the per-layer means. Lower is better; the teacher scores 0.
    """
    per_layer = {layer: {"feature": 0.0, "gram": 0.0} for layer in layers}
    for image in images:
        x = _fit(image.pixels, max_side).to(next(student.parameters()).device)
        targets = teacher_at_kept_channels(teacher(x, layers), student)
        acts = student(x, layers)
        for layer in layers:
            per_layer[layer]["feature"] += float(relative_error(acts[layer], targets[layer])) / len(images)
            per_layer[layer]["gram"] += float(
                relative_error(gram_matrix(acts[layer]), gram_matrix(targets[layer]))
            ) / len(images)
    return {
        "feature": sum(v["feature"] for v in per_layer.values()) / len(layers),
        "gram": sum(v["gram"] for v in per_layer.values()) / len(layers),
        "layers": per_layer,
    }


@dataclass
class RecoveryConfig:
    """How recovery is measured on held-out images."""

    preset: str = "seed"
    distortion_size: int = 256  # longer side of held-out images for the distortion measurement
    stylize_size: int = 128  # longer side of the short judged style transfer
    stylize_iterations: int = 50
    seed: int = 0


class RecoveryMeter:
    """Measures a student on held-out images: distortion vs the teacher and the judge's verdict.

    The judged style transfer uses the first held-out image as content and the second (or
    the first again, if only one) as style; the dense output is made once and reused.
    """

    def __init__(
        self,
        teacher: VGGFeatures,
        heldout: list[CalibrationImage],
        config: RecoveryConfig,
        layers: list[str] | None = None,
    ):
        if not heldout:
            raise UserError("recovery needs at least one held-out image")
        self.teacher = teacher
        self.heldout = heldout
        self.config = config
        self.layers = layers if layers is not None else get_preset(config.preset).layers
        self.content_name = heldout[0].name
        self.style_name = heldout[1 % len(heldout)].name
        self._judge: Judge | None = None
        self._dense_image: Image.Image | None = None

    def _stylize(self, model: VGGFeatures) -> tuple[Image.Image, Image.Image, Image.Image]:
        """(stylized image, content, style) of the short judged style transfer with ``model``."""
        content = tensor_to_pil(self.heldout[0].pixels.unsqueeze(0))
        style = tensor_to_pil(self.heldout[1 % len(self.heldout)].pixels.unsqueeze(0))
        cfg = StylizeConfig(
            preset=self.config.preset,
            size=self.config.stylize_size,
            iterations=self.config.stylize_iterations,
            seed=self.config.seed,
        )
        return stylize(prepare(model, content, [style], cfg)).image, content, style

    def _dense(self) -> tuple[Image.Image, Judge]:
        """The dense output and the judge of the short style transfer (made on first use, then reused)."""
        if self._dense_image is None or self._judge is None:
            self._dense_image, content, style = self._stylize(self.teacher)
            self._judge = Judge(
                self.teacher, get_preset(self.config.preset), content, [style], self.config.stylize_size
            )
        return self._dense_image, self._judge

    def measure(self, student: VGGFeatures) -> dict:
        """{"feature", "gram", "content_ratio", "style_ratio", "ssim", "layers"} for ``student``."""
        was_training = student.training
        grads = [p.requires_grad for p in student.parameters()]
        for p in student.parameters():
            p.requires_grad_(False)  # the style transfer optimises the image only
        student.eval()
        try:
            result = distortion(self.teacher, student, self.heldout, self.layers, self.config.distortion_size)
            dense_image, judge = self._dense()
            image, _, _ = self._stylize(student)
            result.update({k: float(v) for k, v in judge.compare(image, dense_image).items()})
        finally:
            for p, g in zip(student.parameters(), grads):
                p.requires_grad_(g)
            student.train(was_training)
        return result


TABLE_ROWS = (
    ("feature", "feature distortion vs dense (lower is better)"),
    ("gram", "Gram distortion vs dense (lower is better)"),
    ("content_ratio", "content loss ratio vs dense output"),
    ("style_ratio", "style loss ratio vs dense output"),
    ("ssim", "SSIM vs dense output (1 = identical)"),
)


def checkpoint_metrics(measured: dict) -> dict:
    """The judged numbers of a :meth:`RecoveryMeter.measure` result that a checkpoint header keeps."""
    return {
        "content_ratio": measured["content_ratio"],
        "style_ratio": measured["style_ratio"],
        "ssim": measured["ssim"],
        "feature_distortion": measured["feature"],
        "gram_distortion": measured["gram"],
    }


def recovery_table(before: dict, after: dict) -> str:
    """A small plain-text before/after table."""
    width = max(len(label) for _, label in TABLE_ROWS)
    lines = [f"{'held-out metric':<{width}}  {'before':>9}  {'after':>9}", f"{'-' * width}  {'-' * 9}  {'-' * 9}"]
    for key, label in TABLE_ROWS:
        lines.append(f"{label:<{width}}  {before[key]:>9.4f}  {after[key]:>9.4f}")
    return "\n".join(lines)
