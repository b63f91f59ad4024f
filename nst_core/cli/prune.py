"""`nst prune`: prune VGG-19 by a profile or a sparsity, print the report, optionally save it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..checkpoint import DTYPES, ENCODINGS, save_checkpoint
from ..errors import UserError
from ..files import atomic_write_text
from ..losses import PRESETS
from ..pruning import METHODS, PROFILES, Profile, load_profile, prune, prune_fine, sparsity_report, threshold_for_global_sparsity
from .common import HelpFormatter, add_weight_args, check_output_path, load_model_from_args


def register(subparsers) -> None:
    """Add ``nst prune`` to the ``nst`` parser's subcommands."""
    p = subparsers.add_parser(
        "prune",
        help="prune VGG-19 (fine-grained or structured) and report per-layer sparsity",
        description=(
            "Prune the VGG-19 trunk a loss preset needs (layers after its deepest loss layer are dropped, "
            "not pruned) and print weights, nonzeros and sparsity per conv. "
            "Example: nst prune --weights random --profile seed"
        ),
        formatter_class=HelpFormatter,
    )
    add_weight_args(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--profile", help=f"named profile ({', '.join(PROFILES)}) or a profile JSON (from `nst scan select`)")
    what.add_argument("--sparsity", type=float, help="one sparsity for every conv (fraction of weights, or of filters with --method structured)")
    what.add_argument("--global-sparsity", type=float, help="fine-grained with one magnitude threshold over all convs, zeroing this fraction overall")
    p.add_argument("--method", choices=METHODS, default="fine", help="with --sparsity: zero weights (fine) or remove filters (structured)")
    p.add_argument("--preset", default="seed", choices=sorted(PRESETS), help="loss preset whose deepest layer ends the network")
    p.add_argument("--last-layer", default=None, help="truncate after this layer instead of the preset's deepest loss layer")
    p.add_argument("--save", default=None, metavar="PATH.safetensors", help="write the pruned network as a checkpoint")
    p.add_argument("--encoding", choices=ENCODINGS, default="packed", help="checkpoint encoding (packed stores masks + kept values)")
    p.add_argument("--dtype", choices=list(DTYPES), default="fp16", help="checkpoint weight dtype")
    p.add_argument("--size", type=int, default=512, metavar="PX", help="image side (PX x PX) at which the report counts multiply-accumulates")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``nst prune``: exit status 0 on success (errors are raised as ``UserError``)."""
    last_layer = args.last_layer or PRESETS[args.preset].last_layer
    save = check_output_path(args.save, "--save", (".safetensors",)) if args.save else None
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        check_output_path(args.json, "--json")
    profile = load_profile(args.profile) if args.profile else None  # a bad profile fails before weights load
    model = load_model_from_args(args, last_layer)
    if profile is not None:
        pruned = prune(model, profile)
        label = f"profile {args.profile} ({profile.method})"
    elif args.sparsity is not None:
        profile = Profile(args.method, {name: args.sparsity for name in model.conv_names}, {"uniform": args.sparsity})
        pruned = prune(model, profile)
        label = f"uniform {args.method} sparsity {args.sparsity}"
    else:
        if not 0.0 <= args.global_sparsity <= 1.0:
            raise UserError(f"--global-sparsity must be in [0, 1], not {args.global_sparsity}")
        threshold = threshold_for_global_sparsity(model, args.global_sparsity)
        pruned = prune_fine(model, global_threshold=threshold)
        label = f"global fine sparsity {args.global_sparsity} (|w| < {threshold:.4g})"

    report = sparsity_report(pruned, args.size)
    print(f"VGG-19 up to {last_layer}, weights {model.weight_source}, {label}")
    print(report.to_text())
    if args.json:
        data = {"weights": model.weight_source, "last_layer": last_layer, "pruning": pruned.provenance, "report": report.to_dict()}
        atomic_write_text(Path(args.json), json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")
    if save:
        path = save_checkpoint(pruned, save, encoding=args.encoding, dtype=args.dtype)
        print(f"wrote {path} ({Path(path).stat().st_size / 2**20:.2f} MiB on disk, {args.encoding}, {args.dtype})")
    return 0
