"""The whole fine-tuning job: measure, train, measure again, and record it in the student's provenance."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nst_core.compress.calibration import CalibrationImage
from nst_core.compress.finetune.config import METHODS, FinetuneConfig
from nst_core.compress.finetune.loop import train
from nst_core.compress.finetune.ranks import Ranks
from nst_core.compress.finetune.recovery import RecoveryConfig, RecoveryMeter, recovery_table
from nst_core.compress.finetune.state import TrainResult
from nst_core.core.errors import UserError
from nst_core.model.vgg import VGGFeatures


@dataclass
class FinetuneResult:
    """The trained student, how training went and, once finished, the recovery measurements."""

    student: VGGFeatures
    train: TrainResult
    before: dict | None  # None until finished, and on ranks other than 0 of a distributed run
    after: dict | None
    table: str | None


def finetune(
    teacher: VGGFeatures,
    student: VGGFeatures,
    train_images: list[CalibrationImage],
    heldout_images: list[CalibrationImage],
    config: FinetuneConfig,
    recovery: RecoveryConfig | None = None,
    state_path: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool | None = True,
) -> FinetuneResult:
    """Measure, fine-tune, measure again; record everything in ``student.provenance["finetune"]``.

    The student is trained in place. Held-out images must not be among the training images.

    >>> result = finetune(teacher, student, train, heldout, FinetuneConfig(steps=200))  # doctest: +SKIP
    >>> print(result.table)                                                              # doctest: +SKIP
    """
    recovery = _checked_recovery(train_images, heldout_images, config, recovery)
    meter = RecoveryMeter(teacher, heldout_images, recovery, config.distilled_layers)
    started = time.perf_counter()
    result = train(
        teacher,
        student,
        train_images,
        config,
        state_path=state_path,
        stop_after=stop_after,
        progress=progress,
        on_start=lambda: {"before": meter.measure(student)},
    )
    if not result.finished or not Ranks.current().writes:
        # Under torchrun only rank 0 measures and records: the others hold the same weights.
        return FinetuneResult(student, result, None, None, None)
    before = result.extra["before"]
    after = meter.measure(student)
    table = recovery_table(before, after)
    provenance = dict(student.provenance)
    if "finetune" in provenance:  # fine-tuned before: keep the earlier record too
        provenance["earlier_finetunes"] = [*provenance.get("earlier_finetunes", []), provenance.pop("finetune")]
    record = _record(meter, config, train_images, result, started)
    student.provenance = {**provenance, "finetune": {**record, "before": before, "after": after, "table": table}}
    return FinetuneResult(student, result, before, after, table)


def _checked_recovery(
    train_images: list[CalibrationImage],
    heldout_images: list[CalibrationImage],
    config: FinetuneConfig,
    recovery: RecoveryConfig | None,
) -> RecoveryConfig:
    """The recovery settings (default: the fine-tuning preset and seed), refused if they cannot judge this run."""
    train_names = {im.name for im in train_images}
    overlap = [im.name for im in heldout_images if im.name in train_names]
    if overlap:
        raise UserError(f"held-out image(s) also in the training set: {', '.join(overlap)}")
    recovery = recovery or RecoveryConfig(preset=config.preset, seed=config.seed)
    if recovery.preset != config.preset:
        raise UserError(f"recovery preset {recovery.preset!r} differs from the fine-tuning preset {config.preset!r}")
    return recovery


def _record(
    meter: RecoveryMeter,
    config: FinetuneConfig,
    train_images: list[CalibrationImage],
    result: TrainResult,
    started: float,
) -> dict:
    """How the student was fine-tuned (``provenance["finetune"]`` without the measurements)."""
    return {
        "method": METHODS[config.objective],
        "teacher": meter.teacher.weight_source,
        "config": asdict(config),
        "recovery_config": asdict(meter.config),
        "train_images": sorted({im.name for im in train_images}),
        "heldout_images": [im.name for im in meter.heldout],
        "judge_content_image": meter.content_name,
        "judge_style_image": meter.style_name,
        "final_loss": result.history[-1] if result.history else None,
        "train_seconds": round(result.seconds, 2),
        "wall_seconds_this_run": round(time.perf_counter() - started, 2),
        "resumed_from_step": result.resumed_from,
        "random_weights": meter.teacher.has_random_weights,
    }
