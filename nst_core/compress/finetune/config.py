"""What decides the fine-tuned weights (:class:`FinetuneConfig`), and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nst_core.compress.finetune.distill import DistillWeights
from nst_core.core.errors import UserError
from nst_core.model.layers import layer_index
from nst_core.nst.losses import get_preset

SCHEDULES = ("cosine", "constant")
#: The fine-tuning objectives, as a checkpoint's provenance and a release's report describe them. distill:
#: match activations and Gram matrices at the loss layers; gradient: match the image gradient of the
#: style-transfer loss (what a loss network is used for) on content/style mixes of the training crops.
METHODS = {
    "distill": "distillation from the dense network (feature MSE + Gram, normalised per layer)",
    "gradient": "image-gradient matching: the style-transfer loss's gradient w.r.t. the image against the dense "
    "network's",
}
OBJECTIVES = tuple(METHODS)


@dataclass
class FinetuneConfig:
    """Everything that decides the fine-tuned weights. Same config + same inputs -> same weights."""

    preset: str = "seed"  # its loss layers are the layers distilled
    layers: list[str] | None = None  # override the preset's layers (e.g. shallow layers for quick tests)
    #: 800: on the trained VGG-16 the budgeted 3x network's held-out style-loss ratio went 4.63x (none) -> 4.06x
    #: (200 steps) -> 3.33x (800), still falling (bench/bench_finetune_objective.py, docs/finetune.md)
    steps: int = 800
    batch_size: int = 4
    crop_size: int = 128
    lr: float = 1e-4
    schedule: str = "cosine"  # cosine: decays to lr * min_lr_ratio at the last step
    min_lr_ratio: float = 0.01
    warmup_steps: int = 0  # linear warm-up from lr/warmup to lr
    feature_weight: float = 1.0  # distill objective only
    gram_weight: float = 1.0  # distill objective only
    objective: str = "distill"
    seed: int = 0
    scale_min: float = 0.25  # crop side as a fraction of the image's shorter side
    scale_max: float = 1.0
    flip: bool = True
    checkpoint_every: int = 25  # write the resumable state every k steps (and at the end)

    def validate(self) -> None:
        """Raise ``UserError`` naming the first setting that is out of range."""
        get_preset(self.preset)
        for layer in self.layers or ():
            try:
                layer_index(layer)
            except ValueError as exc:
                raise UserError(str(exc)) from None
        if self.layers is not None and not self.layers:
            raise UserError("the list of distilled layers is empty")
        if self.steps < 1:
            raise UserError(f"steps must be at least 1, not {self.steps}")
        if self.objective not in OBJECTIVES:
            raise UserError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if self.objective == "gradient" and self.layers is not None:
            raise UserError("the gradient objective matches the preset's whole loss; it takes no list of layers")
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        if not self.lr > 0:
            raise UserError(f"learning rate must be positive, not {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"min lr ratio must be in [0, 1], not {self.min_lr_ratio}")
        if self.warmup_steps < 0 or self.checkpoint_every < 1:
            raise UserError("warmup steps must be >= 0 and checkpoint interval >= 1")
        if self.feature_weight < 0 or self.gram_weight < 0 or self.feature_weight + self.gram_weight == 0:
            raise UserError("feature and Gram weights must be non-negative and not both zero")

    @property
    def distilled_layers(self) -> list[str]:
        """The layers matched: the override, else every layer the preset's losses read."""
        layers = self.layers if self.layers is not None else get_preset(self.preset).layers
        return sorted(dict.fromkeys(layers), key=layer_index)

    @property
    def weights(self) -> DistillWeights:
        """The loss weights as ``distillation_terms`` takes them."""
        return DistillWeights(self.feature_weight, self.gram_weight)


def learning_rate(config: FinetuneConfig, step: int) -> float:
    """Learning rate for 0-based ``step``: optional linear warm-up, then constant or cosine decay."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    span = max(1, config.steps - config.warmup_steps - 1)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
