"""The resumable training state: the student's weights, Adam's state and the step count, in one file.

The batch of a step is a pure function of (seed, step) and the learning rate a pure function of
the step, so this state is enough for an interrupted run to finish with the same weights as an
uninterrupted one. The file is written atomically; a kill mid-write leaves the previous one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nst_core.compress.finetune.config import FinetuneConfig
from nst_core.compress.finetune.masks import check_masks
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_path
from nst_core.core.validation import Fields
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_torch_file

STATE_VERSION = 1


@dataclass
class TrainResult:
    """Where a training run stands; a state file holds it beside the weights and Adam's state."""

    step: int  # steps completed in total (over every run that contributed)
    finished: bool  # False when stopped early by ``stop_after``
    history: list[dict] = field(default_factory=list)  # per step: step, lr, feature, gram, total
    resumed_from: int | None = None
    seconds: float = 0.0  # training time over every run that contributed
    extra: dict = field(default_factory=dict)  # carried in the state (e.g. "before" measurements)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    # A kill mid-write leaves the previous state intact: a resumable run never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def run_fingerprint(config: FinetuneConfig, teacher: VGGFeatures, student: VGGFeatures, train_names: list[str]) -> str:
    """What a state file must agree on to be resumed by this run (JSON, compared as a string)."""
    masks = {name: int(mask.sum()) for name, mask in sorted(student.masks.items())}
    kept = {name: int(k.numel()) for name, k in sorted(student.kept_channels.items())}
    return json.dumps(
        {
            # objective: only when not the default, so states written before it existed still resume.
            "config": {
                k: v
                for k, v in asdict(config).items()
                if k != "checkpoint_every" and not (k == "objective" and v == "distill")
            },
            "teacher": teacher.weight_source,
            "student": student.describe(),
            "kept_weights": masks,
            "kept_channels": kept,
            "train_images": train_names,
        },
        sort_keys=True,
    )


def load_state(path: Path) -> dict:
    """A state file written by ``train``, its fields checked; a damaged or foreign file gets a clear error."""
    try:
        state = load_torch_file(path, "fine-tuning state")
    except UserError as exc:
        raise UserError(f"{exc}: it cannot be read; delete it to start over") from None
    # type() first: a hostile file's "version" may be a tensor, whose comparison has no truth value.
    if not isinstance(state, dict) or type(state.get("version")) is not int or state["version"] != STATE_VERSION:
        raise UserError(f"{path} is not a fine-tuning state file of version {STATE_VERSION}; delete it to start over")
    fields = Fields(state, str(path), UserError)
    fields.string("fingerprint")
    fields.integer("step", low=0)
    fields.number("seconds", low=0.0)
    fields.sequence("history")
    fields.mapping("extra")
    student = fields.mapping("student")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in student.items()):
        fields.fail("student", "must map parameter names to tensors")
    optimizer = fields.nested("optimizer")
    optimizer.mapping("state")
    optimizer.sequence("param_groups")
    rng = fields.get("torch_rng")
    expected_rng = torch.get_rng_state()
    if not isinstance(rng, torch.Tensor) or rng.dtype != expected_rng.dtype or rng.shape != expected_rng.shape:
        fields.fail("torch_rng", f"must be a {expected_rng.dtype} tensor of shape {list(expected_rng.shape)}")
    return state


def save_state(
    path: Path, fingerprint: str, run: TrainResult, student: VGGFeatures, optimizer: torch.optim.Optimizer
) -> None:
    """Write the state :func:`resume` reads: the run's progress, the student's weights, Adam's state, the RNG."""
    _atomic_torch_save(
        {
            "version": STATE_VERSION,
            "fingerprint": fingerprint,
            "step": run.step,
            "student": student.state_dict(),
            "optimizer": optimizer.state_dict(),
            # The sampler needs no state (batches derive from seed and step); the global
            # RNG is saved so any stochastic op added later stays reproducible on resume.
            "torch_rng": torch.get_rng_state(),
            "history": run.history,
            "seconds": run.seconds,
            "extra": run.extra,
        },
        path,
    )


def resume(path: Path, fingerprint: str, student: VGGFeatures, optimizer: torch.optim.Optimizer) -> TrainResult:
    """Restore ``student``, ``optimizer`` and the RNG from the state in ``path``; return the run's progress."""
    state = load_state(path)
    if state["fingerprint"] != fingerprint:
        raise UserError(
            f"{path} belongs to a different fine-tuning run (other settings, network or images); "
            "delete it or choose another state file"
        )
    student.load_state_dict(state["student"])
    check_masks(student)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    step = int(state["step"])
    return TrainResult(step, False, list(state["history"]), step, float(state["seconds"]), dict(state["extra"]))
