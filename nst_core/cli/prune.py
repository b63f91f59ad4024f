"""`nst prune`: prune VGG-19 by a profile or a sparsity, print the report, optionally save it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nst_core.cli.common import HelpFormatter, add_weight_args, check_output_path, load_model_from_args
from nst_core.compress.budget import CURVE_KINDS, BudgetResult, budgeted_prune, calibrate_cost_model, measure_speedup
from nst_core.compress.calibration import load_folder
from nst_core.compress.importance import CRITERIA, DEFAULT_CRITERION, criteria_help, criterion_for, filter_importance
from nst_core.compress.pruning import METHODS, PROFILES, Profile, load_profile, prune, sparsity_report
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text
from nst_core.core.validation import read_json_file
from nst_core.model.checkpoint import ENCODINGS, STORED_DTYPES, check_storage, save_checkpoint
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.cost import CostModel
from nst_core.nst.losses import PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nst prune`` to the ``nst`` parser's subcommands."""
    p = subparsers.add_parser(
        "prune",
        help="prune VGG-19 (fine-grained or structured) and report per-layer sparsity",
        description=(
            "Prune the VGG-19 trunk a loss preset needs (layers after its deepest loss layer are dropped, "
            "not pruned) and print weights, nonzeros, sparsity and the multiply-accumulates of one stylization "
            "iteration per conv, with the predicted speedup over dense. With --target-speedup (or --target-macs) "
            "and --method structured, every conv's width is chosen so the predicted cost meets the budget at the "
            "least predicted quality loss (per-layer curves from --scan, else from the proxy), and the speedup "
            "is also measured. Example: nst prune --weights random --method structured --target-speedup 3"
        ),
        formatter_class=HelpFormatter,
    )
    add_weight_args(p, arch=True)
    _add_what_args(p)
    _add_budget_args(p)
    _add_output_args(p)
    p.set_defaults(func=run)


def _add_what_args(p: argparse.ArgumentParser) -> None:
    """What to prune: a profile, a sparsity, a global sparsity or a budget; the method and filter ranking."""
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--profile", help=f"named profile ({', '.join(PROFILES)}) or a profile JSON (from `nst scan select`)"
    )
    what.add_argument(
        "--sparsity",
        type=float,
        help="one sparsity for every conv (fraction of weights, or of filters with --method structured)",
    )
    what.add_argument(
        "--global-sparsity",
        type=float,
        help="fine-grained with one magnitude threshold over all convs, zeroing this fraction overall",
    )
    what.add_argument(
        "--target-speedup",
        type=float,
        metavar="X",
        help="structured budget: predicted per-iteration speedup over dense at --size (needs --method structured)",
    )
    what.add_argument(
        "--target-macs",
        type=float,
        metavar="N",
        help="structured budget: conv MACs of one iteration at --size, e.g. 2.5e10 (needs --method structured)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        default="fine",
        help="with --sparsity or a target: zero weights (fine) or remove filters (structured)",
    )
    p.add_argument(
        "--importance",
        choices=CRITERIA,
        default=None,
        help=criteria_help(
            f"structured: rank filters by (default {DEFAULT_CRITERION}, chosen on trained weights)", "--images"
        ),
    )
    p.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="calibration images for --importance activation|taylor and the proxy (default: the bundled examples/)",
    )
    p.add_argument(
        "--calibration-size",
        type=int,
        default=128,
        metavar="PX",
        help="calibration images are shrunk to this longer side",
    )


def _add_budget_args(p: argparse.ArgumentParser) -> None:
    """How a width budget is met and checked: sensitivity curves, the cost model, the timing."""
    p.add_argument(
        "--scan",
        default=None,
        metavar="DIR",
        help="with a target: per-layer sensitivity from this structured scan folder instead of the proxy",
    )
    p.add_argument(
        "--curves",
        default="proxy",
        choices=CURVE_KINDS,
        help="with a target and no --scan: how each conv's sensitivity is measured: proxy (feature and Gram "
        "distortion, seconds) or gradient (how far the loss's image gradient moves from the dense network's; "
        "minutes, see docs/pruning.md for which gave better networks on trained weights)",
    )
    p.add_argument(
        "--calibrate-cost",
        action="store_true",
        help="with a target: fit the cost model (MACs, activation sizes, fixed part) to timings on this machine "
        "at --size first, so the predicted speedup is this machine's; default: MACs only",
    )
    p.add_argument(
        "--cost-model",
        default=None,
        metavar="PATH.json",
        help="with a target: a cost model fitted earlier (read), or with --calibrate-cost where to write the fit",
    )
    p.add_argument(
        "--measure-iterations",
        type=int,
        default=None,
        metavar="N",
        help="time N stylization iterations per network and round at --size to measure the speedup "
        "(default: 2 with a target, else 0 = do not measure)",
    )
    p.add_argument("--measure-rounds", type=int, default=2, metavar="N", help="interleaved dense/pruned timing rounds")


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """The network's depth, what is written and the image size costs are counted at."""
    p.add_argument(
        "--preset", default="seed", choices=sorted(PRESETS), help="loss preset whose deepest layer ends the network"
    )
    p.add_argument(
        "--last-layer", default=None, help="truncate after this layer instead of the preset's deepest loss layer"
    )
    p.add_argument("--save", default=None, metavar="PATH.safetensors", help="write the pruned network as a checkpoint")
    p.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default="packed",
        help="checkpoint encoding (packed stores masks + kept values)",
    )
    p.add_argument(
        "--dtype",
        choices=STORED_DTYPES,
        default="fp16",
        help="checkpoint weight dtype; int8 and codebook4 quantise the packed encoding's weights",
    )
    p.add_argument(
        "--size",
        type=int,
        default=512,
        metavar="PX",
        help="image side (PX x PX) at which the report counts multiply-accumulates, "
        "a budget's cost is predicted and the speedup measured",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON")


def _check_args(args: argparse.Namespace) -> bool:
    """Refuse options that need each other; True when a width budget is asked for."""
    budgeted = args.target_speedup is not None or args.target_macs is not None
    if budgeted and args.method != "structured":
        raise UserError("--target-speedup/--target-macs choose filter counts: add --method structured")
    if args.importance not in (None, "l1") and args.method != "structured":
        raise UserError(f"--importance {args.importance} ranks filters: it needs --method structured")
    if not budgeted:
        for flag, value in (
            ("--scan", args.scan),
            ("--calibrate-cost", args.calibrate_cost),
            ("--cost-model", args.cost_model),
            ("--curves gradient", args.curves == "gradient"),
        ):
            if value:
                raise UserError(f"{flag} is used to choose widths: it needs --target-speedup or --target-macs")
    if args.scan and args.curves == "gradient":
        raise UserError("--scan gives the curves and --curves gradient measures them: choose one")
    if args.target_speedup is not None and not args.target_speedup > 1.0:
        raise UserError(f"--target-speedup must be > 1, not {args.target_speedup}")
    if args.target_macs is not None and not args.target_macs > 0:
        raise UserError(f"--target-macs must be > 0, not {args.target_macs}")
    if args.size < 32:
        raise UserError(f"--size must be at least 32 px, not {args.size}")
    if args.calibration_size < 32:
        raise UserError(f"--calibration-size must be at least 32 px, not {args.calibration_size}")
    if args.measure_iterations is not None and args.measure_iterations < 0:
        raise UserError(f"--measure-iterations must be >= 0, not {args.measure_iterations}")
    if args.measure_rounds < 1:
        raise UserError(f"--measure-rounds must be >= 1, not {args.measure_rounds}")
    if args.scan and not Path(args.scan).is_dir():
        raise UserError(f"--scan {args.scan}: no such scan folder")
    if args.cost_model and not args.calibrate_cost and not Path(args.cost_model).is_file():
        raise UserError(f"--cost-model {args.cost_model}: no such file (add --calibrate-cost to fit and write one)")
    if args.images and not Path(args.images).is_dir():
        raise UserError(f"--images {args.images}: no such folder")
    return budgeted


def _cost_model(args: argparse.Namespace, model) -> CostModel | None:
    """The cost model the budget uses: fitted now (and written to --cost-model), read from --cost-model,
    or MACs only."""
    if args.calibrate_cost:
        fitted = calibrate_cost_model(model, args.size, preset=args.preset)
        if args.cost_model:
            atomic_write_text(Path(args.cost_model), json.dumps(fitted.to_dict(), indent=2) + "\n")
            print(f"wrote {args.cost_model}")
        return fitted
    if args.cost_model:
        data = read_json_file(Path(args.cost_model), "a cost model", UserError)
        try:
            return CostModel.from_dict(data)
        except ValueError as exc:
            raise UserError(f"--cost-model {args.cost_model}: {exc}") from None
    return None


def _prune_to_budget(args: argparse.Namespace, model: VGGFeatures) -> tuple[BudgetResult, str]:
    """``--target-speedup``/``--target-macs``: the budgeted network and the report's label for it."""
    importance = criterion_for("structured", args.importance)
    result = budgeted_prune(
        model,
        args.target_speedup,
        args.target_macs,
        importance,
        args.images,
        args.scan,
        args.size,
        args.calibration_size,
        _cost_model(args, model),
        args.preset,
        curves=args.curves,
    )
    budget = f"{args.target_speedup}x" if args.target_speedup is not None else f"{args.target_macs:.3g} MACs"
    source = args.scan or ("image-gradient errors" if args.curves == "gradient" else "the proxy")
    label = f"structured, budget {budget}, {importance} importance, curves from {source}"
    return result, label


def _prune_to_profile(args: argparse.Namespace, model: VGGFeatures, profile: Profile | None) -> tuple[VGGFeatures, str]:
    """``--profile``, ``--sparsity`` or ``--global-sparsity``: the pruned network and the report's label for it."""
    if profile is None and args.sparsity is None:
        if not 0.0 <= args.global_sparsity <= 1.0:
            raise UserError(f"--global-sparsity must be in [0, 1], not {args.global_sparsity}")
        pruned = prune(model, Profile("fine", {}, global_sparsity=args.global_sparsity))
        threshold = pruned.provenance["global_threshold"]
        return pruned, f"global fine sparsity {args.global_sparsity} (|w| < {threshold:.4g})"
    if profile is None:
        profile = Profile.uniform(args.method, model.conv_names, args.sparsity, {"uniform": args.sparsity})
        label = f"uniform {args.method} sparsity {args.sparsity}"
    else:
        label = f"profile {args.profile} ({profile.method})"
    scores = None
    if profile.method == "structured":  # only filters are ranked; fine pruning ranks weights by magnitude
        importance = criterion_for("structured", args.importance)
        images = load_folder(args.images, args.calibration_size) if importance != "l1" else []
        scores = filter_importance(model, importance, images, args.preset)
        label += f", {importance} importance"
    return prune(model, profile, scores), label


def _measure(
    args: argparse.Namespace, model: VGGFeatures, pruned: VGGFeatures, iterations: int, predicted: float
) -> dict:
    """Time dense against pruned, print the measured speedup beside ``predicted``; the measurement as JSON."""
    speed = measure_speedup(model, pruned, args.size, iterations, args.measure_rounds, args.preset)
    print(
        f"measured at {args.size}x{args.size} px: dense {speed.dense_s:.3f} s/it, pruned {speed.pruned_s:.3f} s/it: "
        f"{speed.speedup:.2f}x (predicted {predicted:.2f}x, {predicted / speed.speedup - 1:+.0%}; "
        f"median of the dense/pruned ratios of {speed.samples} interleaved rounds x {iterations} iterations)"
    )
    return speed.to_dict()


def run(args: argparse.Namespace) -> int:
    """``nst prune``: exit status 0 on success (errors are raised as ``UserError``)."""
    budgeted = _check_args(args)
    last_layer = args.last_layer or PRESETS[args.preset].last_layer
    save = check_output_path(args.save, "--save", (".safetensors",)) if args.save else None
    check_storage(args.encoding, args.dtype)  # e.g. int8 with --encoding dense, refused before any work
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        check_output_path(args.json, "--json")
    profile = load_profile(args.profile) if args.profile else None  # a bad profile fails before weights load
    model = load_model_from_args(args, last_layer)
    extra: dict = {}
    plan = None
    if budgeted:
        result, label = _prune_to_budget(args, model)
        pruned, plan = result.pruned, result.plan
        extra["budget"] = plan.to_dict()
    else:
        pruned, label = _prune_to_profile(args, model, profile)

    report = sparsity_report(pruned, args.size)
    print(f"{model.architecture.title} up to {last_layer}, weights {model.weight_source}, {label}")
    print(report.to_text())
    if plan is not None:
        print(
            f"budget: predicted speedup {plan.predicted_speedup:.2f}x by {plan.cost_model['source']} "
            f"(MACs alone: {report.predicted_speedup:.2f}x); predicted degradation {plan.predicted_degradation:.3g} "
            f"(sum of each conv's own, {plan.curves_source.get('mode', 'proxy')})"
        )
    iterations = args.measure_iterations if args.measure_iterations is not None else (2 if budgeted else 0)
    if iterations:
        predicted = plan.predicted_speedup if plan is not None else report.predicted_speedup
        extra["measured"] = _measure(args, model, pruned, iterations, predicted)
    if args.json:
        data = {
            "weights": model.weight_source,
            "last_layer": last_layer,
            "pruning": pruned.provenance,
            "report": report.to_dict(),
            **extra,
        }
        atomic_write_text(Path(args.json), json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    if save:
        path = save_checkpoint(pruned, save, encoding=args.encoding, dtype=args.dtype)
        print(f"wrote {path} ({Path(path).stat().st_size / 2**20:.2f} MiB on disk, {args.encoding}, {args.dtype})")
    return 0
