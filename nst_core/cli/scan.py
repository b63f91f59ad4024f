"""`nst scan run|merge|select|plot`: the pruning sensitivity scan from the command line."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from nst_core.cli.common import (
    RANDOM_WARNING,
    HelpFormatter,
    add_stylize_args,
    add_weight_args,
    stylize_config_from_args,
)
from nst_core.compress.importance import CRITERIA, DEFAULT_CRITERION, criteria_help
from nst_core.compress.pruning import METHODS, save_profile
from nst_core.compress.scan import (
    DEGRADATIONS,
    MODES,
    ScanConfig,
    merge_scan,
    parse_shard,
    parse_sparsities,
    plot_scan,
    run_scan,
    select_profile,
    shard_from_env,
    write_tables,
)
from nst_core.core.devices import resolve_device
from nst_core.model.weight_spec import is_random_source


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `nst scan run|merge|select|plot` to the `nst` command."""
    scan = subparsers.add_parser(
        "scan",
        help="pruning sensitivity scan: layers x sparsities, judged against the dense network",
        description="Scan how much pruning each layer hurts style transfer, then pick a per-layer profile.",
    )
    sub = scan.add_subparsers(dest="scan_command", metavar="ACTION")
    for add in (_register_run, _register_merge, _register_select, _register_plot):
        add(sub)
    scan.set_defaults(func=lambda args: scan.print_help() or 2)


def _register_run(sub: argparse._SubParsersAction) -> None:
    """`nst scan run`."""
    run = sub.add_parser(
        "run",
        help="run (or resume) a scan into a folder",
        formatter_class=HelpFormatter,
        description=(
            "Each cell prunes one layer to one sparsity and (mode full) stylizes with the pruned network from the "
            "same seed and init as a dense run, judged by the dense network; every cell also gets a cheap proxy. "
            "Interrupt any time: rerunning the same command resumes. Under torchrun each process takes its share."
        ),
    )
    run.add_argument("--content", required=True, help="content image path")
    run.add_argument("--style", required=True, nargs="+", help="style image path(s)")
    run.add_argument("--out", required=True, help="scan folder (one configuration per folder)")
    add_weight_args(run, arch=True)
    run.add_argument("--method", choices=METHODS, default="fine", help="fine: zero weights; structured: remove filters")
    run.add_argument(
        "--importance",
        choices=CRITERIA,
        default=None,
        help=criteria_help(
            f"structured: rank each layer's filters by (default {DEFAULT_CRITERION}, chosen on trained weights)",
            "the scan's own content and style images",
        ),
    )
    run.add_argument(
        "--mode",
        choices=MODES,
        default="full",
        help="full: stylize and judge each cell; proxy: feature distortion only",
    )
    run.add_argument(
        "--layers", default=None, help="comma-separated convs to scan (default: every conv the preset's losses need)"
    )
    run.add_argument("--sparsities", default="0.4:0.9:0.1", help="levels: 0.4,0.6,0.8 or START:STOP:STEP")
    run.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only every N-th cell starting at I (0-based); default RANK/WORLD_SIZE under torchrun",
    )
    run.add_argument("--save-images", action="store_true", help="keep each cell's stylized image in OUT/images/")
    # Not --preserve-color or --tolerance: every cell runs all its iterations in full colour, as the dense
    # baseline does.
    shared = (
        "preset",
        "size",
        "optimizer",
        "lr",
        "init",
        "seed",
        "content_weight",
        "style_weight",
        "tv_weight",
        "style_blend",
        "scales",
    )
    add_stylize_args(run, (*shared, "iterations"), {"iterations": "iterations per cell (and for the dense baseline)"})
    run.set_defaults(func=cmd_run)


def _register_merge(sub: argparse._SubParsersAction) -> None:
    """`nst scan merge`."""
    merge = sub.add_parser(
        "merge", help="merge every shard's records into table.csv and table.json", formatter_class=HelpFormatter
    )
    merge.add_argument("folder", help="scan folder")
    merge.set_defaults(func=cmd_merge)


def _register_select(sub: argparse._SubParsersAction) -> None:
    """`nst scan select`."""
    select = sub.add_parser(
        "select",
        help="choose per-layer sparsity within a tolerance and write a profile JSON",
        formatter_class=HelpFormatter,
        description=(
            "Per layer, the highest sparsity reached by climbing the scanned levels while the degradation stays "
            "within --tolerance (worst = max(content_ratio-1, style_ratio-1, 1-ssim)). Layers are chosen one at a "
            "time; check the combined profile with a stylization before trusting it."
        ),
    )
    select.add_argument("folder", help="scan folder")
    select.add_argument("--tolerance", type=float, required=True, help="largest acceptable degradation, e.g. 0.1")
    select.add_argument(
        "--metric",
        choices=DEGRADATIONS,
        default=None,
        help="degradation measure (default: worst for full scans, proxy for proxy scans)",
    )
    select.add_argument("-o", "--output", default=None, help="profile JSON path (default: FOLDER/profile.json)")
    select.set_defaults(func=cmd_select)


def _register_plot(sub: argparse._SubParsersAction) -> None:
    """`nst scan plot`."""
    plot = sub.add_parser("plot", help="write curves.png and heatmap.png", formatter_class=HelpFormatter)
    plot.add_argument("folder", help="scan folder")
    plot.add_argument("--out", default=None, help="plot folder (default: FOLDER/plots)")
    plot.set_defaults(func=cmd_plot)


def _join_process_group() -> bool:
    """Join a gloo process group when launched by torchrun with more than one process; False when not."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return False
    if not dist.is_initialized():
        # Only a barrier goes over it; shards can take very different times, so wait long.
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    return True


def _merge_and_report(folder: str | os.PathLike) -> None:
    """Merge the folder's records into table.csv/table.json and print the table."""
    table = merge_scan(folder)
    paths = write_tables(table, folder)
    print(table.to_text())
    print("wrote " + ", ".join(str(p) for p in paths))


def cmd_run(args: argparse.Namespace) -> int:
    """`nst scan run`: run this process's shard, then merge if the grid is complete."""
    config = ScanConfig(
        content=args.content,
        styles=list(args.style),
        weights=args.weights,
        method=args.method,
        mode=args.mode,
        layers=[x.strip() for x in args.layers.split(",") if x.strip()] if args.layers else None,
        sparsities=parse_sparsities(args.sparsities),
        stylize=stylize_config_from_args(args),
        pooling=args.pooling,
        preprocessing=args.preprocessing,
        importance=args.importance,
        arch=args.arch,
    )
    shard = parse_shard(args.shard) if args.shard else (shard_from_env() or (0, 1))
    if is_random_source(args.weights):
        print(RANDOM_WARNING.format(source=args.weights), file=sys.stderr)
    device = resolve_device(args.device)
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun process
    distributed = _join_process_group()
    summary = run_scan(config, args.out, shard=shard, save_images=args.save_images, device=device)
    print(
        f"shard {shard[0]}/{shard[1]}: {summary.ran} cell(s) run, {summary.skipped} already done, "
        f"of {summary.shard_cells} in this shard ({summary.grid_cells} in the grid); config {summary.config_hash}"
    )
    if distributed:
        dist.barrier()  # every rank has appended its records
        complete = merge_scan(args.out).missing == []
        leader = dist.get_rank() == 0
        dist.destroy_process_group()
    else:
        complete, leader = summary.complete, True
    if complete and leader:
        _merge_and_report(args.out)
    elif not complete:
        print(f"the grid is not complete yet; run the other shards, then `nst scan merge {args.out}`")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """`nst scan merge`: every shard's records into table.csv and table.json."""
    _merge_and_report(args.folder)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    """`nst scan select`: a per-layer profile within the tolerance, written as JSON."""
    table = merge_scan(args.folder)
    if table.missing:
        print(
            f"warning: {len(table.missing)} cell(s) of the grid are not finished; selecting from what is there",
            file=sys.stderr,
        )
    profile = select_profile(table, args.tolerance, args.metric)
    output = Path(args.output) if args.output else Path(args.folder) / "profile.json"
    save_profile(profile, output)
    print(f"{profile.method} profile, degradation {profile.source['degradation']} <= {args.tolerance}:")
    for layer, sparsity in profile.sparsity.items():
        print(f"  {layer:<8} {sparsity:.2f}")
    print(f"wrote {output} (use it with: nst prune --profile {output})")
    if is_random_source(str(table.scan["weights"])):
        print("note: this scan used random weights; the profile is mechanically right but not meaningful")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """`nst scan plot`: curves.png and heatmap.png of the merged table."""
    table = merge_scan(args.folder)
    paths = plot_scan(table, args.out or Path(args.folder) / "plots")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
