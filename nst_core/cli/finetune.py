"""`nst finetune`: distil the dense VGG-19 into a pruned one and save it as a checkpoint."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings
from pathlib import Path

from nst_core.cli.common import RANDOM_WARNING, HelpFormatter, add_weight_args, check_output_path
from nst_core.compress.calibration import CalibrationImage, CropSampler, SkippedImageWarning, load_folder, split_heldout
from nst_core.compress.finetune import (
    OBJECTIVES,
    SCHEDULES,
    FinetuneConfig,
    FinetuneResult,
    Ranks,
    RecoveryConfig,
    checkpoint_metrics,
    finetune,
    process_group_from_env,
)
from nst_core.compress.pruning import load_profile, prune
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text
from nst_core.model.checkpoint import ENCODINGS, STORED_DTYPES, check_storage, save_checkpoint
from nst_core.model.layers import LAYER_NAMES, layer_index
from nst_core.model.vgg import VGGFeatures, load_checkpoint
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import PRESETS, get_preset


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nst finetune`` to the ``nst`` parser's subcommands."""
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a pruned network by distillation from the dense one",
        description=(
            "Train the weights of a pruned VGG-19 (student) so its activations and Gram matrices match the "
            "dense network's (teacher) at every layer the preset's losses read. Fine-grained students keep "
            "their zeros exactly; structured students are matched at the channels they kept. Recovery is "
            "measured before and after on held-out images (never trained on) and stored in the checkpoint. "
            "The run is resumable: run the same command again after an interruption. "
            "Under torchrun (torchrun --nproc_per_node N -m nst_core.cli finetune ...) it trains with "
            "DistributedDataParallel: each process distils batch-size/N crops of every step (gloo on CPU, nccl "
            "on CUDA, one GPU per process) and only rank 0 writes the state, the checkpoint and the report. "
            "Example: nst finetune --profile seed --weights random --steps 20 -o tuned.safetensors"
        ),
        formatter_class=HelpFormatter,
    )
    _add_source_args(p)
    _add_training_args(p)
    _add_recovery_and_output_args(p)
    p.set_defaults(func=run)


def _add_source_args(p: argparse.ArgumentParser) -> None:
    """The student (a profile or a checkpoint), the teacher's weights, the images and the layers distilled."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--profile",
        help="prune the dense network with this profile (a name such as 'seed' or a profile JSON), then fine-tune",
    )
    source.add_argument(
        "--checkpoint", help="fine-tune this pruned checkpoint (.safetensors written by nst prune / nst finetune)"
    )
    p.add_argument("-o", "--output", required=True, help="fine-tuned checkpoint to write (.safetensors)")
    p.add_argument(
        "--images",
        default=None,
        help="folder of calibration images, any mix of photos and paintings (default: the bundled examples/)",
    )
    add_weight_args(p)
    # The teacher's weights: "auto" is caffe for --profile and, for --checkpoint, the dense weights it was pruned from.
    p.set_defaults(weights="auto")
    for action in p._actions:  # argparse has no public way to reword a shared argument's help
        if action.dest == "weights":
            shared = action.help or ""
            action.help = (
                "dense (teacher) VGG-19 weights: auto, "
                + (shared.partition(": ")[2] or shared)
                + "; auto = caffe for --profile, the checkpoint's own dense weights for --checkpoint"
            )
    p.add_argument(
        "--preset", default="seed", choices=sorted(PRESETS), help="loss preset whose layers are distilled and judged"
    )
    p.add_argument(
        "--layers",
        default=None,
        help="comma-separated layers to distil instead of the preset's (e.g. relu1_1,relu2_1 for a quick run)",
    )


def _add_training_args(p: argparse.ArgumentParser) -> None:
    """How long and how the student is trained: steps, batches, crops, learning rate, loss weights."""
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=float, help="passes over the training images (one crop per image per pass)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=FinetuneConfig.batch_size,
        help="crops per step, over all processes under torchrun (a multiple of their number)",
    )
    p.add_argument(
        "--crop-size", type=int, default=FinetuneConfig.crop_size, help="side of the square training crops, px"
    )
    p.add_argument(
        "--scale-min",
        type=float,
        default=FinetuneConfig.scale_min,
        help="smallest crop side as a fraction of the image's shorter side",
    )
    p.add_argument(
        "--scale-max",
        type=float,
        default=FinetuneConfig.scale_max,
        help="largest crop side as a fraction of the image's shorter side",
    )
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    p.add_argument(
        "--max-side", type=int, default=512, help="calibration images are shrunk to this longer side when loaded"
    )
    p.add_argument("--lr", type=float, default=FinetuneConfig.lr, help="Adam learning rate (peak)")
    p.add_argument("--schedule", default=FinetuneConfig.schedule, choices=SCHEDULES, help="learning-rate schedule")
    p.add_argument(
        "--min-lr-ratio", type=float, default=FinetuneConfig.min_lr_ratio, help="cosine schedule ends at lr times this"
    )
    p.add_argument(
        "--warmup-steps", type=int, default=FinetuneConfig.warmup_steps, help="linear learning-rate warm-up steps"
    )
    p.add_argument(
        "--objective",
        default=FinetuneConfig.objective,
        choices=OBJECTIVES,
        help="distill: match activations and Gram matrices at the loss layers; gradient: match the image gradient "
        "of the preset's style-transfer loss on content/style mixes of the crops (about twice the time per step)",
    )
    p.add_argument(
        "--feature-weight",
        type=float,
        default=FinetuneConfig.feature_weight,
        help="weight of the normalised feature MSE term",
    )
    p.add_argument(
        "--gram-weight",
        type=float,
        default=FinetuneConfig.gram_weight,
        help="weight of the normalised Gram matching term",
    )


def _add_recovery_and_output_args(p: argparse.ArgumentParser) -> None:
    """How recovery is measured on held-out images, the resumable state, and the checkpoint written."""
    p.add_argument("--seed", type=int, default=0, help="seed for the held-out split, crops and judged style transfer")
    p.add_argument("--heldout", type=int, default=2, help="images held out of training to measure recovery on")
    p.add_argument(
        "--eval-size", type=int, default=256, help="longer side of held-out images for the distortion measurement"
    )
    p.add_argument("--judge-size", type=int, default=128, help="size of the short judged style transfer")
    p.add_argument("--judge-iterations", type=int, default=50, help="iterations of the short judged style transfer")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=FinetuneConfig.checkpoint_every,
        help="write the resumable training state every K steps",
    )
    p.add_argument(
        "--state", default=None, help="training state file (default: OUTPUT.state.pt); an existing one is resumed"
    )
    p.add_argument("--keep-state", action="store_true", help="keep the training state file after a finished run")
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="K",
        help="stop after K steps of this run (state saved; run again to resume)",
    )
    p.add_argument(
        "--encoding", default="packed", choices=ENCODINGS, help="checkpoint encoding (packed: positions + kept values)"
    )
    p.add_argument(
        "--dtype",
        default="fp16",
        choices=STORED_DTYPES,
        help="stored weight precision (measurements use fp32); int8 (per-output-channel scale) and codebook4 "
        "(16-entry k-means codebook per conv, 4-bit indices) quantise the packed encoding's weights",
    )
    p.add_argument(
        "--log-json", default=None, metavar="PATH", help="also write the loss history and before/after metrics as JSON"
    )


def parse_layers(text: str | None) -> list[str] | None:
    """A ``--layers`` value (comma-separated layer names) as a list; None stays None."""
    if text is None:
        return None
    layers = [name.strip() for name in text.split(",") if name.strip()]
    for name in layers:
        if name not in LAYER_NAMES:
            raise UserError(f"unknown layer {name!r} in --layers; valid names: {', '.join(LAYER_NAMES)}")
    if not layers:
        raise UserError("--layers is empty")
    return layers


def _output_path(args) -> Path:
    """The checkpoint to write (its folder created); the run's length checked before any work."""
    if Path(args.output).suffix == ".safetensors":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    output = check_output_path(args.output, "-o", (".safetensors",))
    if args.state:
        check_output_path(args.state, "--state")
    check_storage(args.encoding, args.dtype)  # e.g. int8 with --encoding dense, refused before training
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, not {args.steps}")
    if args.epochs is not None and not args.epochs > 0:
        raise UserError(f"--epochs must be positive, not {args.epochs}")
    return output


def _load_images(args) -> tuple[list[CalibrationImage], list[CalibrationImage]]:
    """(training images, held-out images); unreadable files are reported and skipped."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedImageWarning)
        images = load_folder(args.images, max_side=args.max_side)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return split_heldout(images, args.heldout, args.seed)


def _pair_from_checkpoint(args, last_layer: str) -> tuple[VGGFeatures, VGGFeatures]:
    student = load_checkpoint(args.checkpoint, device=args.device)
    if not student.masks and not student.kept_channels:
        raise UserError(f"{args.checkpoint} is a dense network (no masks, no kept channels): nothing to recover")
    # The teacher is the dense network the student was pruned from, unless told otherwise.
    weights = student.weight_source if args.weights == "auto" else args.weights
    if weights in ("unset", ""):
        raise UserError(f"{args.checkpoint} does not record its dense weights; pass --weights")
    preprocessing = args.preprocessing or student.preprocessing.name
    teacher = load_vgg(
        weights, last_layer=last_layer, pooling=student.pooling, preprocessing=preprocessing, device=args.device
    )
    if weights != student.weight_source:
        print(f"note: the student was pruned from {student.weight_source}; the teacher is {weights}", file=sys.stderr)
    return teacher, student


def _pair_from_profile(args, last_layer: str) -> tuple[VGGFeatures, VGGFeatures]:
    profile = load_profile(args.profile)  # validated before any weights are loaded
    teacher = load_vgg(
        "caffe" if args.weights == "auto" else args.weights,
        last_layer=last_layer,
        pooling=args.pooling,
        preprocessing=args.preprocessing,
        device=args.device,
    )
    return teacher, prune(teacher, profile)


def _load_pair(args, last_layer: str) -> tuple[VGGFeatures, VGGFeatures]:
    """(teacher, student): the dense network and the pruned network to fine-tune."""
    teacher, student = (
        _pair_from_checkpoint(args, last_layer) if args.checkpoint else _pair_from_profile(args, last_layer)
    )
    if teacher.has_random_weights and Ranks.current().writes:
        print(RANDOM_WARNING.format(source=teacher.weight_source), file=sys.stderr)
    return teacher, student


def _configs(
    args, layers: list[str] | None, train_images: list[CalibrationImage]
) -> tuple[FinetuneConfig, RecoveryConfig]:
    """The training and recovery settings the flags ask for (--epochs turned into steps)."""
    steps = args.steps
    if steps is None:
        per_epoch = CropSampler(train_images, args.crop_size, args.batch_size).steps_per_epoch()
        steps = max(1, round(args.epochs * per_epoch))
    config = FinetuneConfig(
        preset=args.preset,
        layers=layers,
        steps=steps,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        lr=args.lr,
        schedule=args.schedule,
        min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup_steps,
        feature_weight=args.feature_weight,
        gram_weight=args.gram_weight,
        objective=args.objective,
        seed=args.seed,
        scale_min=args.scale_min,
        scale_max=args.scale_max,
        flip=not args.no_flip,
        checkpoint_every=args.checkpoint_every,
    )
    config.validate()
    recovery = RecoveryConfig(
        preset=args.preset,
        distortion_size=args.eval_size,
        stylize_size=args.judge_size,
        stylize_iterations=args.judge_iterations,
        seed=args.seed,
    )
    return config, recovery


def _save_and_report(
    args, output: Path, result: FinetuneResult, teacher: VGGFeatures, heldout: list[CalibrationImage], started: float
) -> None:
    """Write the fine-tuned checkpoint (with its held-out metrics), print the recovery table, log JSON."""
    student, after = result.student, result.after
    assert after is not None  # a finished run is measured (and this is rank 0, which measures)
    metrics = checkpoint_metrics(after)
    student.provenance["finetune"]["measured_dtype"] = "fp32"
    student.provenance["finetune"]["stored_dtype"] = args.dtype
    save_checkpoint(student, output, encoding=args.encoding, dtype=args.dtype, metrics=metrics)
    elapsed = time.perf_counter() - started
    random_note = (
        " (random weights: numbers are mechanically right, not meaningful)" if teacher.has_random_weights else ""
    )
    print(f"recovery on {len(heldout)} held-out image(s){random_note}:")
    print(result.table)
    print(f"wrote {output} in {elapsed:.1f} s (training {result.train.seconds:.1f} s over {result.train.step} steps)")
    if args.log_json:
        payload = {
            "history": result.train.history,
            "before": result.before,
            "after": result.after,
            "table": result.table,
            "seconds_total_this_run": elapsed,
            "train_seconds": result.train.seconds,
            "config": student.provenance["finetune"]["config"],
            "weights": teacher.weight_source,
        }
        atomic_write_text(args.log_json, json.dumps(payload, indent=2))


def run(args: argparse.Namespace) -> int:
    """``nst finetune``: exit status 0 on success (errors are raised as ``UserError``).

    Under ``torchrun`` every process runs this; see ``nst_core.compress.finetune.process_group_from_env``.
    """
    with process_group_from_env(args.device) as device:
        args.device = device
        return _run(args)


def _announce(
    ranks: Ranks,
    config: FinetuneConfig,
    student: VGGFeatures,
    train_images: list[CalibrationImage],
    heldout: list[CalibrationImage],
    state_path: Path,
) -> None:
    """Say on stderr what is about to be trained (and from where it resumes)."""
    if ranks.distributed:
        print(
            f"distributed: {ranks.world} processes, {config.batch_size // ranks.world} crop(s) each per step",
            file=sys.stderr,
        )
    print(
        f"student: {student.provenance.get('method', 'pruned')} pruned, {len(train_images)} training image(s), "
        f"held out: {', '.join(im.name for im in heldout)}; {config.steps} steps of batch {config.batch_size} "
        f"at {config.crop_size} px; distilled layers: {', '.join(config.distilled_layers)}",
        file=sys.stderr,
    )
    if state_path.exists():
        print(f"resuming from {state_path}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    ranks = Ranks.current()
    output = _output_path(args)
    layers = parse_layers(args.layers)
    preset = get_preset(args.preset)
    # The teacher must reach the preset's layers (the judged style transfer uses them) and any --layers.
    last_layer = max([preset.last_layer, *(layers or [])], key=layer_index)
    train_images, heldout = _load_images(args)
    teacher, student = _load_pair(args, last_layer)
    config, recovery = _configs(args, layers, train_images)
    ranks.share(config.batch_size)  # refused before any work if the processes cannot share a batch evenly
    state_path = Path(args.state) if args.state else output.with_name(output.name + ".state.pt")
    job = functools.partial(
        finetune,
        teacher,
        student,
        train_images,
        heldout,
        config,
        recovery,
        state_path=state_path,
        stop_after=args.stop_after,
    )
    if not ranks.writes:
        job(progress=False)
        return 0  # rank 0 measures, writes and reports

    _announce(ranks, config, student, train_images, heldout, state_path)
    try:
        result = job(progress=None)
    except KeyboardInterrupt:
        if state_path.exists():
            print(
                f"training state is in {state_path} (saved every {config.checkpoint_every} steps); "
                "run the same command again to resume",
                file=sys.stderr,
            )
        raise
    if result.train.resumed_from is not None:
        print(f"resumed at step {result.train.resumed_from} of {config.steps}", file=sys.stderr)
    if not result.train.finished:
        print(
            f"stopped at step {result.train.step} of {config.steps}; state saved to {state_path}; "
            "run the same command again to resume"
        )
        return 0
    _save_and_report(args, output, result, teacher, heldout, started)
    if not args.keep_state and state_path.exists():
        state_path.unlink()
    return 0
