"""The training loop: distil the teacher into the student, one Adam step per batch, resumable."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from nst_core.compress.calibration import CalibrationImage, CropSampler
from nst_core.compress.finetune.config import FinetuneConfig, learning_rate
from nst_core.compress.finetune.distill import distillation_terms, gradient_matching_loss, teacher_at_kept_channels
from nst_core.compress.finetune.masks import check_masks, zero_pruned_gradients
from nst_core.compress.finetune.ranks import Ranks
from nst_core.compress.finetune.state import TrainResult, resume, run_fingerprint, save_state
from nst_core.compress.pruning import apply_masks
from nst_core.core.errors import UserError
from nst_core.model.layers import layer_index
from nst_core.model.vgg import VGGFeatures, freeze
from nst_core.nst.losses import LossWeights, get_preset


def prepare_student(student: VGGFeatures, teacher: VGGFeatures, layers: list[str]) -> list[str]:
    """Check the pair can be distilled at ``layers``; return them."""
    deepest = max(layers, key=layer_index)
    for who, model in (("teacher", teacher), ("student", student)):
        if layer_index(model.last_layer) < layer_index(deepest):
            raise UserError(
                f"the {who} network stops at {model.last_layer}, but distillation needs layers up to {deepest}"
            )
    for name, kept in student.kept_channels.items():
        if name in student.widths and kept.numel() != student.widths[name]:
            raise UserError(
                f"{name}: {kept.numel()} kept channels recorded, but the conv has {student.widths[name]} outputs"
            )
    if teacher.preprocessing != student.preprocessing:
        raise UserError(
            f"teacher preprocessing {teacher.preprocessing.name!r} differs from the student's "
            f"{student.preprocessing.name!r}: "
            "fine-tune against the dense weights the student was pruned from"
        )
    check_masks(student)
    return layers


class _Distiller:
    """The fixed parts of one training run (networks, optimizer, sampler, state file) and its steps."""

    def __init__(
        self,
        teacher: VGGFeatures,
        student: VGGFeatures,
        train_images: list[CalibrationImage],
        config: FinetuneConfig,
        layers: list[str],
        state_path: Path | None,
        ranks: Ranks,
    ):
        self.teacher, self.student, self.config, self.layers, self.ranks = teacher, student, config, layers, ranks
        self.sampler = CropSampler(
            train_images,
            config.crop_size,
            config.batch_size,
            config.seed,
            (config.scale_min, config.scale_max),
            config.flip,
        )
        self.fingerprint = run_fingerprint(config, teacher, student, [im.name for im in train_images])
        self.state_path = state_path
        self.params = list(student.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=config.lr)
        self.forward: Callable[..., dict[str, torch.Tensor]] | None = None

    def start(self, on_start: Callable[[], dict] | None) -> TrainResult:
        """The run resumed from the state file, or a fresh one (its step-0 state written at once)."""
        resuming = self.state_path is not None and self.state_path.exists()
        self.ranks.barrier()  # every rank has looked before rank 0 writes the first state
        if resuming:
            assert self.state_path is not None
            return resume(self.state_path, self.fingerprint, self.student, self.optimizer)
        run = TrainResult(0, False, extra=dict(on_start() if on_start and self.ranks.writes else {}))
        self.save(run)  # step 0: keeps the "before" measurements even if the first interval is cut short
        return run

    def save(self, run: TrainResult) -> None:
        """Write the state (rank 0, and only with a state path)."""
        if self.state_path is not None and self.ranks.writes:
            save_state(self.state_path, self.fingerprint, run, self.student, self.optimizer)

    def train_mode(self, on: bool) -> None:
        """Turn the student's gradients on (the teacher frozen, DDP wrapped under torchrun) or off again."""
        if on:
            freeze(self.teacher)
        for p in self.params:
            p.requires_grad_(on)
        if not on:
            self.student.eval()
        elif self.ranks.distributed:
            # Layers past the deepest distilled one get no gradient; DDP must be told to expect that.
            self.forward = DistributedDataParallel(self.student, find_unused_parameters=True)

    def run_steps(self, run: TrainResult, bar: tqdm, stop_after: int | None) -> None:
        """Train from ``run.step`` to the end (or for ``stop_after`` steps), saving every ``checkpoint_every``."""
        config, ran = self.config, 0
        while run.step < config.steps and (stop_after is None or ran < stop_after):
            started = time.perf_counter()
            record = self.step(run.step)
            run.step += 1
            ran += 1
            run.seconds += time.perf_counter() - started
            run.history.append(record)
            bar.update(1)
            bar.set_postfix({"loss" if k == "total" else k: f"{record[k]:.4f}" for k in _TERMS[config.objective]})
            if run.step % config.checkpoint_every == 0 or run.step == config.steps:
                self.save(run)
        if ran and run.step % config.checkpoint_every != 0 and run.step != config.steps:
            self.save(run)  # stopped by stop_after between checkpoints

    def batch_share(self, step: int) -> torch.Tensor:
        """This rank's crops of ``step``'s batch (the whole batch in a single process)."""
        if not self.ranks.distributed:
            return self.sampler.batch(step)
        first = step * self.sampler.batch_size
        return torch.stack([self.sampler.sample(first + j) for j in self.ranks.share(self.sampler.batch_size)])

    def step(self, step: int) -> dict:
        """One Adam step of 0-based ``step`` on this rank's share of its batch; returns its history record.

        The student is called as DDP wraps it under torchrun (so the backward pass averages
        gradients over ranks).
        """
        student, ranks = self.student, self.ranks
        batch = self.batch_share(step).to(next(student.parameters()).device)  # the sampler makes CPU batches
        if self.config.objective == "gradient":
            preset = get_preset(self.config.preset)
            seed = self.config.seed * 1_000_003 + step  # the step's images, the same on a resumed run
            terms = gradient_matching_loss(self.teacher, student, batch, preset, LossWeights.from_preset(preset), seed)
        else:
            with torch.no_grad():
                targets = teacher_at_kept_channels(self.teacher(batch, self.layers), student)
            mean_over_ranks = ranks.mean if ranks.distributed else None
            acts = (self.forward or student)(batch, self.layers)
            terms = distillation_terms(acts, targets, self.config.weights, mean_over_ranks)
        lr = learning_rate(self.config, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        zero_pruned_gradients(student)
        self.optimizer.step()
        apply_masks(student)
        # The record is the whole batch's: each rank's terms cover its share, their mean the batch.
        names = _TERMS[self.config.objective]
        values = ranks.mean(torch.stack([terms[k].detach() for k in names]))
        return {"step": step + 1, "lr": lr, **{k: float(v) for k, v in zip(names, values)}}


#: The loss terms each objective records per step.
_TERMS = {"distill": ("feature", "gram", "total"), "gradient": ("gradient", "total")}


def train(
    teacher: VGGFeatures,
    student: VGGFeatures,
    train_images: list[CalibrationImage],
    config: FinetuneConfig,
    state_path: str | Path | None = None,
    stop_after: int | None = None,
    progress: bool | None = True,
    on_start: Callable[[], dict] | None = None,
) -> TrainResult:
    """Distil ``teacher`` into ``student`` in place for ``config.steps`` steps.

    With ``state_path``, the state is written there every ``config.checkpoint_every``
    steps and at the end, atomically; if the file exists when training starts, the run
    resumes from it (it must come from the same configuration, teacher, student and images).
    ``stop_after`` ends this call after that many steps (the state is written first), as an
    interruption would. ``on_start`` runs once before the first step of a fresh run and its
    dict is kept in the state (``TrainResult.extra``), e.g. measurements taken before training.
    ``progress``: True shows a tqdm bar with the loss, False none, None only on a terminal.

    Under ``torchrun`` (an initialised process group) every rank calls this with the same
    arguments; each distils its share of every batch, and rank 0 alone writes the state and
    runs ``on_start`` (the others' ``extra`` stays empty).

    >>> result = train(teacher, student, images, FinetuneConfig(steps=100))  # doctest: +SKIP
    """
    config.validate()
    ranks = Ranks.current()
    if config.objective == "gradient" and ranks.distributed:
        # DDP's gradient hooks do not follow the double backward the image-gradient match needs.
        raise UserError("the gradient objective trains in one process; run it without torchrun")
    ranks.share(config.batch_size)  # an uneven split is refused before any work
    layers = prepare_student(student, teacher, config.distilled_layers)
    path = Path(state_path) if state_path is not None else None
    distiller = _Distiller(teacher, student, train_images, config, layers, path, ranks)
    run = distiller.start(on_start)
    distiller.train_mode(True)
    show = ranks.writes and (None if progress is None else progress)
    bar = tqdm(
        total=config.steps,
        initial=run.step,
        desc="finetune",
        unit="step",
        disable=None if show is None else not show,
        dynamic_ncols=True,
    )
    try:
        distiller.run_steps(run, bar, stop_after)
        ranks.barrier()  # no rank reads a state (or the student's file) before rank 0 wrote it
    finally:
        bar.close()
        distiller.train_mode(False)
    run.finished = run.step >= config.steps
    return run
