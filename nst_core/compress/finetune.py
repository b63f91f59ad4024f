"""Fine-tuning a pruned VGG-19 by distillation from the dense one.

The teacher is the dense network, frozen. The student is the pruned network; its weights
(not an image, as in the seed) are trained so that at every layer the style and content
losses read, its activations and their Gram matrices match the teacher's:

    loss = feature_weight * mean_l |S_l - T_l|^2 / |T_l|^2  +  gram_weight * mean_l |G(S_l) - G(T_l)|^2 / |G(T_l)|^2

Each term is normalised by the teacher's energy at that layer, so shallow and deep layers
(whose activations differ in scale by orders of magnitude) count alike, and the value reads
as a relative squared error (0 = identical to the teacher).

* A structured student kept only some output channels of each conv; it is matched against
  the teacher's activations at exactly those channels (``student.kept_channels``).
* A fine-grained student keeps its masks exactly: gradients of pruned weights are zeroed
  before every Adam step (so Adam's moment estimates for them stay zero and never revive
  them), and the masks are re-applied after every step (``nst_core.compress.pruning.apply_masks``).

Training is resumable: the batch of a step is a pure function of (seed, step)
(``nst_core.compress.calibration.CropSampler``) and the learning rate a pure function of the step, so
a state file holding the student's weights, Adam's state and the step count is enough for an
interrupted run to finish with the same weights as an uninterrupted one.

Training scales out under ``torchrun`` (``torch.distributed`` initialised, see ``Ranks``): the
student is wrapped in DistributedDataParallel, each rank distils its equal share of the step's
batch, and only rank 0 writes the state. Each loss term is a squared error (a mean over the
batch, so the ranks' average is the whole batch's) divided by the teacher's energy; the energy
is averaged over the ranks before dividing, so DDP's averaged gradient is the whole batch's
gradient and N ranks follow the single-process run up to floating-point summation order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from nst_core.compress.calibration import CalibrationImage, CropSampler
from nst_core.compress.pruning import apply_masks
from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_path
from nst_core.core.validation import Fields
from nst_core.image.io import tensor_to_pil
from nst_core.model.vgg import VGGFeatures, conv_feeding, freeze, layer_index
from nst_core.model.weights import load_torch_file
from nst_core.nst.losses import get_preset, gram_matrix
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

STATE_VERSION = 1
SCHEDULES = ("cosine", "constant")
_EPS = 1e-12


# ---------------------------------------------------------------------------------------
# Distillation loss
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistillWeights:
    """How much the feature term and the Gram term count in the distillation loss."""

    feature: float = 1.0
    gram: float = 1.0


def teacher_at_kept_channels(teacher_acts: dict[str, torch.Tensor], student: VGGFeatures) -> dict[str, torch.Tensor]:
    """Teacher activations restricted to the channels the (structured) student kept at each layer."""
    out = {}
    for layer, act in teacher_acts.items():
        kept = student.kept_channels.get(conv_feeding(layer))
        out[layer] = act.index_select(1, kept.to(act.device)) if kept is not None else act
    return out


def relative_error(student: torch.Tensor, teacher: torch.Tensor, energy: torch.Tensor | None = None) -> torch.Tensor:
    """|s - t|^2 / |t|^2 (means), a scale-free distortion: 0 when equal, 1 when s = 0.

    ``energy`` replaces the teacher's mean square |t|^2 (distributed training passes the mean over all ranks).
    """
    energy = teacher.pow(2).mean() if energy is None else energy
    return F.mse_loss(student, teacher) / energy.clamp_min(_EPS)


def distillation_terms(
    student_acts: dict[str, torch.Tensor],
    teacher_acts: dict[str, torch.Tensor],
    weights: DistillWeights = DistillWeights(),
    mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Feature and Gram terms (each a mean over layers) and their weighted total.

    ``teacher_acts`` must already be restricted to the student's kept channels.
    ``mean_over_ranks`` (distributed training) turns this rank's teacher energies into the
    whole batch's, so every rank divides by the same numbers the single-process run would.
    """
    pairs = []
    for layer, t in teacher_acts.items():
        s = student_acts[layer]
        if s.shape != t.shape:
            raise ValueError(
                f"layer {layer}: student activation {list(s.shape)} does not match teacher {list(t.shape)}"
            )
        pairs.append((s, t))
        pairs.append((gram_matrix(s), gram_matrix(t)))
    energies = torch.stack([t.detach().pow(2).mean() for _, t in pairs])
    if mean_over_ranks is not None:
        energies = mean_over_ranks(energies)  # one collective per step for every layer
    errors = [relative_error(s, t, energy) for (s, t), energy in zip(pairs, energies)]
    feature = torch.stack(errors[0::2]).mean()
    gram = torch.stack(errors[1::2]).mean()
    return {"feature": feature, "gram": gram, "total": weights.feature * feature + weights.gram * gram}


# ---------------------------------------------------------------------------------------
# Ranks of a distributed run
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranks:
    """This process's place in a distributed run: rank 0 of 1 when there is none."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Ranks:
        """From ``torch.distributed`` when a process group is initialised (``torchrun``), else a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def distributed(self) -> bool:
        """More than one process shares the work."""
        return self.world > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes files and reports (rank 0 only)."""
        return self.rank == 0

    def share(self, batch_size: int) -> range:
        """The indices of the step's batch this rank distils: an equal, contiguous share."""
        if batch_size % self.world:
            raise UserError(
                f"batch size {batch_size} does not split evenly over {self.world} processes; use a multiple of {self.world}"
            )
        per_rank = batch_size // self.world
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` averaged over every rank (itself in a single process)."""
        if not self.distributed:
            return values
        values = values.detach().clone()
        dist.all_reduce(values)
        return values / self.world

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.distributed:
            dist.barrier()


@contextmanager
def process_group_from_env(device: str = "auto") -> Iterator[str]:
    """Join the process group ``torchrun`` describes in the environment, if any; yield this rank's device.

    Without ``torchrun`` (no ``WORLD_SIZE`` above 1) nothing happens and ``device`` comes back
    as given. Under it, CPU ranks talk over gloo and CUDA ranks over nccl, each on the GPU
    ``LOCAL_RANK`` names; the group is left again on exit.

    >>> with process_group_from_env("cpu") as device:   # doctest: +SKIP
    ...     train(...)
    """
    world = os.environ.get("WORLD_SIZE", "1")
    if not world.isdigit() or int(world) <= 1 or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    if not dist.is_available():
        raise UserError("WORLD_SIZE is set (torchrun?) but this torch has no torch.distributed")
    kind = resolve_device(device).type
    if kind == "mps":
        raise UserError("distributed fine-tuning runs on CPU (gloo) or CUDA (nccl), not on MPS; pass --device cpu")
    if kind == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(resolve_device(device))
    dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    try:
        yield device if kind == "cuda" else "cpu"
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------
# Masks of fine-grained students
# ---------------------------------------------------------------------------------------


def zero_pruned_gradients(student: VGGFeatures) -> None:
    """Zero the gradient of every pruned weight, so Adam's moments for it stay exactly zero."""
    for name, mask in student.masks.items():
        grad = student.conv(name).weight.grad
        if grad is not None:
            grad.masked_fill_(~mask, 0.0)


def check_masks(student: VGGFeatures) -> None:
    """Raise if a pruned weight is not exactly zero (a corrupted or mismatched state)."""
    for name, mask in student.masks.items():
        weight = student.conv(name).weight
        if mask.shape != weight.shape:
            raise UserError(f"mask of {name} has shape {list(mask.shape)}, weight has {list(weight.shape)}")
        if bool((weight[~mask] != 0).any()):
            raise UserError(f"{name}: pruned weights are not zero; the weights do not belong to this mask")


# ---------------------------------------------------------------------------------------
# Configuration and schedule
# ---------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    """Everything that decides the fine-tuned weights. Same config + same inputs -> same weights."""

    preset: str = "seed"  # its loss layers are the layers distilled
    layers: list[str] | None = None  # override the preset's layers (e.g. shallow layers for quick tests)
    steps: int = 200
    batch_size: int = 4
    crop_size: int = 128
    lr: float = 1e-4
    schedule: str = "cosine"  # cosine: decays to lr * min_lr_ratio at the last step
    min_lr_ratio: float = 0.01
    warmup_steps: int = 0  # linear warm-up from lr/warmup to lr
    feature_weight: float = 1.0
    gram_weight: float = 1.0
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


# ---------------------------------------------------------------------------------------
# Resumable state
# ---------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """Where a training run stands; a state file holds it beside the weights and Adam's state."""

    step: int  # steps completed in total (over every run that contributed)
    finished: bool  # False when stopped early by ``stop_after``
    history: list[dict] = field(default_factory=list)  # per step: step, lr, feature, gram, total
    resumed_from: int | None = None
    seconds: float = 0.0  # training time over every run that contributed
    extra: dict = field(default_factory=dict)  # carried in the state (e.g. "before" measurements)


def _atomic_torch_save(obj, path: Path) -> None:
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
            "config": {k: v for k, v in asdict(config).items() if k != "checkpoint_every"},
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


def _save_state(
    path: Path, fingerprint: str, run: TrainResult, student: VGGFeatures, optimizer: torch.optim.Optimizer
) -> None:
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


def _resume(path: Path, fingerprint: str, student: VGGFeatures, optimizer: torch.optim.Optimizer) -> TrainResult:
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


# ---------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------


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
            f"teacher preprocessing {teacher.preprocessing.name!r} differs from the student's {student.preprocessing.name!r}: "
            "fine-tune against the dense weights the student was pruned from"
        )
    check_masks(student)
    return layers


def _train_step(
    teacher: VGGFeatures,
    student: VGGFeatures,
    optimizer: torch.optim.Optimizer,
    batch: torch.Tensor,
    layers: list[str],
    config: FinetuneConfig,
    step: int,
    ranks: Ranks = Ranks(),
    forward: Callable[..., dict[str, torch.Tensor]] | None = None,
) -> dict:
    """One Adam step of 0-based ``step`` on ``batch`` (this rank's share); returns its history record.

    ``forward`` is the student as DDP wraps it (so the backward pass averages gradients over ranks).
    """
    batch = batch.to(next(student.parameters()).device)  # the sampler makes batches on the CPU
    with torch.no_grad():
        targets = teacher_at_kept_channels(teacher(batch, layers), student)
    mean_over_ranks = ranks.mean if ranks.distributed else None
    terms = distillation_terms((forward or student)(batch, layers), targets, config.weights, mean_over_ranks)
    lr = learning_rate(config, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    zero_pruned_gradients(student)
    optimizer.step()
    apply_masks(student)
    # The record is the whole batch's: each rank's terms cover its share, their mean the batch.
    values = ranks.mean(torch.stack([terms[k].detach() for k in _TERMS]))
    return {"step": step + 1, "lr": lr, **{k: float(v) for k, v in zip(_TERMS, values)}}


_TERMS = ("feature", "gram", "total")


def _batch_share(sampler: CropSampler, step: int, ranks: Ranks) -> torch.Tensor:
    """This rank's crops of ``step``'s batch (the whole batch in a single process)."""
    if not ranks.distributed:
        return sampler.batch(step)
    first = step * sampler.batch_size
    return torch.stack([sampler.sample(first + j) for j in ranks.share(sampler.batch_size)])


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
    ranks.share(config.batch_size)  # an uneven split is refused before any work
    layers = prepare_student(student, teacher, config.distilled_layers)
    sampler = CropSampler(
        train_images,
        config.crop_size,
        config.batch_size,
        config.seed,
        (config.scale_min, config.scale_max),
        config.flip,
    )
    fingerprint = run_fingerprint(config, teacher, student, [im.name for im in train_images])
    state_path = Path(state_path) if state_path is not None else None

    params = list(student.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)

    resuming = state_path is not None and state_path.exists()
    ranks.barrier()  # every rank has looked before rank 0 writes the first state
    if resuming:
        run = _resume(state_path, fingerprint, student, optimizer)
    else:
        run = TrainResult(0, False, extra=dict(on_start() if on_start and ranks.writes else {}))

    def save_state() -> None:
        if state_path is not None and ranks.writes:
            _save_state(state_path, fingerprint, run, student, optimizer)

    if not resuming:
        save_state()  # step 0: keeps the "before" measurements even if the first interval is cut short

    freeze(teacher)
    for p in params:
        p.requires_grad_(True)
    forward = None
    if ranks.distributed:
        # Layers past the deepest distilled one get no gradient; DDP must be told to expect that.
        forward = DistributedDataParallel(student, find_unused_parameters=True)
    ran = 0
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
        while run.step < config.steps and (stop_after is None or ran < stop_after):
            started = time.perf_counter()
            batch = _batch_share(sampler, run.step, ranks)
            record = _train_step(teacher, student, optimizer, batch, layers, config, run.step, ranks, forward)
            run.step += 1
            ran += 1
            run.seconds += time.perf_counter() - started
            run.history.append(record)
            bar.update(1)
            bar.set_postfix(
                loss=f"{record['total']:.4f}", feat=f"{record['feature']:.4f}", gram=f"{record['gram']:.4f}"
            )
            if run.step % config.checkpoint_every == 0 or run.step == config.steps:
                save_state()
        if ran and run.step % config.checkpoint_every != 0 and run.step != config.steps:
            save_state()  # stopped by stop_after between checkpoints
        ranks.barrier()  # no rank reads a state (or the student's file) before rank 0 wrote it
    finally:
        bar.close()
        for p in params:
            p.requires_grad_(False)
        student.eval()
    run.finished = run.step >= config.steps
    return run


# ---------------------------------------------------------------------------------------
# Measured recovery
# ---------------------------------------------------------------------------------------


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

    def _dense(self) -> Image.Image:
        if self._dense_image is None:
            self._dense_image, content, style = self._stylize(self.teacher)
            self._judge = Judge(
                self.teacher, get_preset(self.config.preset), content, [style], self.config.stylize_size
            )
        return self._dense_image

    def measure(self, student: VGGFeatures) -> dict:
        """{"feature", "gram", "content_ratio", "style_ratio", "ssim", "layers"} for ``student``."""
        was_training = student.training
        grads = [p.requires_grad for p in student.parameters()]
        for p in student.parameters():
            p.requires_grad_(False)  # the style transfer optimises the image only
        student.eval()
        try:
            result = distortion(self.teacher, student, self.heldout, self.layers, self.config.distortion_size)
            dense_image = self._dense()
            image, _, _ = self._stylize(student)
            result.update({k: float(v) for k, v in self._judge.compare(image, dense_image).items()})
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


def recovery_table(before: dict, after: dict) -> str:
    """A small plain-text before/after table."""
    width = max(len(label) for _, label in TABLE_ROWS)
    lines = [f"{'held-out metric':<{width}}  {'before':>9}  {'after':>9}", f"{'-' * width}  {'-' * 9}  {'-' * 9}"]
    for key, label in TABLE_ROWS:
        lines.append(f"{label:<{width}}  {before[key]:>9.4f}  {after[key]:>9.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# The whole job
# ---------------------------------------------------------------------------------------


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
    train_names = {im.name for im in train_images}
    overlap = [im.name for im in heldout_images if im.name in train_names]
    if overlap:
        raise UserError(f"held-out image(s) also in the training set: {', '.join(overlap)}")
    recovery = recovery or RecoveryConfig(preset=config.preset, seed=config.seed)
    if recovery.preset != config.preset:
        raise UserError(f"recovery preset {recovery.preset!r} differs from the fine-tuning preset {config.preset!r}")
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
    student.provenance = {
        **provenance,
        "finetune": {
            "method": "distillation from the dense network (feature MSE + Gram, normalised per layer)",
            "teacher": teacher.weight_source,
            "config": asdict(config),
            "recovery_config": asdict(recovery),
            "train_images": sorted(train_names),
            "heldout_images": [im.name for im in heldout_images],
            "judge_content_image": meter.content_name,
            "judge_style_image": meter.style_name,
            "final_loss": result.history[-1] if result.history else None,
            "train_seconds": round(result.seconds, 2),
            "wall_seconds_this_run": round(time.perf_counter() - started, 2),
            "resumed_from_step": result.resumed_from,
            "random_weights": teacher.has_random_weights,
            "before": before,
            "after": after,
            "table": table,
        },
    }
    return FinetuneResult(student, result, before, after, table)
