"""`nst release`: scan, budgeted prune, fine-tune, judge, checkpoint, model card, optional push; resumable."""

from __future__ import annotations

import argparse
import sys

from nst_core.cli.common import RANDOM_WARNING, HelpFormatter, add_weight_args
from nst_core.cli.finetune import parse_layers
from nst_core.compress.budget import PROXY_LEVELS
from nst_core.compress.finetune import OBJECTIVES
from nst_core.compress.importance import CRITERIA, criteria_help
from nst_core.core.errors import UserError
from nst_core.model.checkpoint import STORED_DTYPES
from nst_core.model.weight_spec import is_random_source
from nst_core.nst.losses import PRESETS
from nst_core.workflows.release import ReleaseSettings, run_release


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nst release`` to the ``nst`` parser's subcommands."""
    p = subparsers.add_parser(
        "release",
        help="one command from dense weights to a judged, documented (optionally published) fast network",
        description=(
            "Scan every conv's structured sensitivity (proxy by default, --full-scan to stylize and judge each cell), "
            "choose widths for --target-speedup (budgeted pruning, filters ranked by --importance), fine-tune by "
            "distillation, judge every candidate on held-out images, write the checkpoint in --dtype, a model card "
            "with the report, the scan plots and a Pareto plot, and push it with --push. Each stage keeps its files in "
            "OUT_DIR (1-scan ... 6-card) and report.md/report.json summarise them; run the same command again after an "
            "interruption (even kill -9) and it continues, ending with the same files. "
            "Example: nst release out/fast3x --weights caffe --target-speedup 3 --push me/vgg19-fast3x"
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="release folder (created; an existing release folder is resumed)")
    add_weight_args(p)
    p.add_argument(
        "--images",
        default=None,
        help="folder of calibration images, photos and paintings (default: the bundled examples/)",
    )
    p.add_argument(
        "--target-speedup", type=float, required=True, help="fewer MACs per stylization iteration than dense, e.g. 3"
    )
    p.add_argument(
        "--push",
        default=None,
        metavar="REPO",
        help="push the checkpoint, card, report and plots to this Hub model repo",
    )
    p.add_argument("--private", action="store_true", help="create the Hub repo private")
    _add_scan_and_prune_args(p)
    _add_finetune_and_judge_args(p)
    p.set_defaults(func=run)


def _add_scan_and_prune_args(p: argparse.ArgumentParser) -> None:
    """The scan (preset, proxy or full, levels) and the budgeted pruning (importance, cost, baseline)."""
    p.add_argument(
        "--preset", default="seed", choices=sorted(PRESETS), help="loss preset: layers scanned, distilled and judged"
    )
    p.add_argument(
        "--full-scan", action="store_true", help="stylize and judge every scan cell instead of the proxy (slow)"
    )
    p.add_argument("--scan-size", type=int, default=128, help="image size of the scan")
    p.add_argument("--scan-iterations", type=int, default=50, help="style-transfer iterations per cell of a full scan")
    p.add_argument(
        "--levels",
        default=",".join(str(x) for x in PROXY_LEVELS),
        help="fractions of filters removed at which each conv is scanned",
    )
    p.add_argument(
        "--importance",
        default=ReleaseSettings.importance,
        choices=CRITERIA,
        help=criteria_help("rank filters by", "the training images of --images (held-out ones never)"),
    )
    p.add_argument(
        "--cost-size", type=int, default=512, help="image size the MAC budget is counted (and the speedup measured) at"
    )
    p.add_argument("--calibration-size", type=int, default=128, help="image size for ranking filters")
    p.add_argument(
        "--uniform-fraction",
        type=float,
        default=0.5,
        help="the uniform L1 baseline removes this fraction of every conv's filters",
    )


def _add_finetune_and_judge_args(p: argparse.ArgumentParser) -> None:
    """Fine-tuning, judging on held-out images, the released dtype and the seed."""
    p.add_argument(
        "--steps",
        type=int,
        default=ReleaseSettings.steps,
        help="fine-tuning steps (the default was measured on a trained VGG-16: longer keeps helping; "
        "about 0.8 s a step on 2 CPU cores)",
    )
    p.add_argument("--batch-size", type=int, default=ReleaseSettings.batch_size, help="fine-tuning crops per step")
    p.add_argument("--crop-size", type=int, default=ReleaseSettings.crop_size, help="fine-tuning crop side, px")
    p.add_argument("--lr", type=float, default=ReleaseSettings.lr, help="fine-tuning learning rate")
    p.add_argument(
        "--objective",
        default=ReleaseSettings.objective,
        choices=OBJECTIVES,
        help="fine-tuning objective: distill (activations and Gram matrices at the loss layers) or gradient "
        "(the style-transfer loss's image gradient, as the dense network gives it)",
    )
    p.add_argument("--layers", default=None, help="comma-separated layers to distil instead of the preset's")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=ReleaseSettings.checkpoint_every,
        help="write the fine-tuning state every K steps",
    )
    p.add_argument("--heldout", type=int, default=2, help="images held out of everything but judging")
    p.add_argument("--eval-size", type=int, default=256, help="held-out distortion image size")
    p.add_argument("--judge-size", type=int, default=128, help="size of the judged style transfer")
    p.add_argument("--judge-iterations", type=int, default=50, help="iterations of the judged style transfer")
    p.add_argument(
        "--dtype",
        default=ReleaseSettings.dtype,
        choices=STORED_DTYPES,
        help="stored weights of the released checkpoint (packed encoding; default int8: on trained weights within "
        "0.3%% of fp32's judged losses at half fp16's size, docs/checkpoints.md)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the held-out split, crops and judged style transfers")
    p.add_argument("--max-side", type=int, default=512, help="calibration images are shrunk to this longer side")
    p.add_argument(
        "--measure-iterations",
        type=int,
        default=2,
        help="iterations timed per network to measure the speedup (0: skip)",
    )


def _levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--levels {text!r}: expected comma-separated fractions such as 0.25,0.5,0.75") from None
    return levels


def run(args: argparse.Namespace) -> int:
    """``nst release``: exit status 0 on success (errors are raised as ``UserError``)."""
    settings = ReleaseSettings(
        weights=args.weights,
        target_speedup=args.target_speedup,
        images=args.images,
        preset=args.preset,
        pooling=args.pooling,
        preprocessing=args.preprocessing,
        full_scan=args.full_scan,
        scan_size=args.scan_size,
        scan_iterations=args.scan_iterations,
        levels=_levels(args.levels),
        importance=args.importance,
        cost_size=args.cost_size,
        calibration_size=args.calibration_size,
        uniform_fraction=args.uniform_fraction,
        steps=args.steps,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        lr=args.lr,
        objective=args.objective,
        layers=parse_layers(args.layers),
        checkpoint_every=args.checkpoint_every,
        heldout=args.heldout,
        eval_size=args.eval_size,
        judge_size=args.judge_size,
        judge_iterations=args.judge_iterations,
        dtype=args.dtype,
        seed=args.seed,
        max_side=args.max_side,
        measure_iterations=args.measure_iterations,
    )
    if is_random_source(settings.weights):
        print(RANDOM_WARNING.format(source=settings.weights), file=sys.stderr)
    release = run_release(args.out_dir, settings, push=args.push, private=args.private or None, device=args.device)
    print(
        f"release in {release.out}: report {release.out / 'report.md'}, "
        f"checkpoint {release.out / '5-checkpoint' / 'model.safetensors'}, "
        f"card {release.out / '6-card' / 'card' / 'README.md'}"
    )
    return 0
