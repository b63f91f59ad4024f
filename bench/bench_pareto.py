"""Speed against quality of structured-pruned VGG-19s: uniform L1 pruning and width budgets, before and after
fine-tuning.

Candidates (all structured, from the same dense network):

- uniform: 25%, 50%, 62.5% and 75% of the filters of every conv removed, ranked by L1 norm;
- budgeted: widths chosen by ``nst_core.compress.budget`` for a predicted 2x, 3x and 4x per-iteration
  speedup, with filters ranked (and proxy curves measured) by each importance criterion
  (l1, activation, taylor), on the calibration images that are not held out.

Each is measured as pruned and again after a short distillation fine-tune
(``nst_core.compress.finetune``). x = measured per-iteration speedup over dense (stylization
iterations at SIZE x SIZE px, every network timed in each round, rounds interleaved);
y = the judge on held-out images (never used for importance, proxy or training): dense
content and style loss ratio of a short style transfer against the dense output's, and SSIM
against it. Predicted speedups (MACs only, or a cost model fitted first with
``--calibrate-cost``) are recorded beside the measured ones.

With random weights (all this machine has) the quality numbers are mechanical, not a verdict
on real pruning; the plot and JSON say so.

    python bench/bench_pareto.py             # 512 px timing, 40 fine-tune steps (~8 min on a quiet 2-core CPU)
    python bench/bench_pareto.py --quick     # smoke run: 128 px timing, tiny fine-tune (noisy, not numbers to quote)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from nst_core.compress.budget import (
    allocate_widths,
    calibrate_cost_model,
    calibration_tensors,
    proxy_curves,
    time_iterations,
)
from nst_core.compress.calibration import load_folder, split_heldout
from nst_core.compress.finetune import FinetuneConfig, RecoveryConfig, finetune
from nst_core.compress.importance import CRITERIA, filter_importance
from nst_core.compress.pruning import Profile, prune
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import CostModel
from nst_core.nst.losses import get_preset

ROOT = Path(__file__).resolve().parents[1]
UNIFORM = (0.25, 0.5, 0.625, 0.75)
TARGETS = (2.0, 3.0, 4.0)
METRICS = ("content_ratio", "style_ratio", "ssim")


def build_candidates(dense, train, size: int, cost_model: CostModel, levels: tuple[float, ...]) -> list[dict]:
    """Every candidate network with its description (family, importance, target, predicted speedup)."""
    candidates = []
    for fraction in UNIFORM:
        net = prune(dense, Profile.uniform("structured", dense.conv_names, fraction))
        candidates.append(
            {
                "name": f"uniform L1 {fraction:.1%}",
                "family": "uniform",
                "importance": "l1",
                "target": None,
                "fraction": fraction,
                "net": net,
                "predicted_speedup": cost_model.speedup(net.widths, size, size),
            }
        )
    content, styles = calibration_tensors(train)
    for criterion in CRITERIA:
        scores = filter_importance(dense, criterion, train)
        curves = proxy_curves(dense, content, styles, scores, levels=levels)
        for target in TARGETS:
            plan = allocate_widths(dense.widths, curves, size, target_speedup=target, cost_model=cost_model)
            candidates.append(
                {
                    "name": f"budget {target:g}x {criterion}",
                    "family": "budget",
                    "importance": criterion,
                    "target": target,
                    "net": prune(dense, Profile("structured", {}, widths=plan.widths), scores),
                    "predicted_speedup": plan.predicted_speedup,
                    "predicted_degradation": plan.predicted_degradation,
                }
            )
    return candidates


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Style-loss ratio and SSIM against measured speedup; hollow = as pruned, filled = fine-tuned."""
    import matplotlib  # optional heavy dependency, only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"uniform": "tab:gray", "l1": "tab:blue", "activation": "tab:orange", "taylor": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, metric, label in (
        (axes[0], "style_ratio", "judged style-loss ratio vs dense (lower is better)"),
        (axes[1], "ssim", "SSIM vs dense output (higher is better)"),
    ):
        for row in rows:
            key = "uniform" if row["family"] == "uniform" else row["importance"]
            x = row["measured_speedup"]
            before, after = row["before"][metric], row["after"][metric]
            ax.scatter(
                [x],
                [before],
                facecolors="none",
                edgecolors=colours[key],
                marker="o" if row["family"] == "budget" else "s",
            )
            ax.scatter([x], [after], color=colours[key], marker="o" if row["family"] == "budget" else "s")
            ax.plot([x, x], [before, after], color=colours[key], linewidth=0.6, alpha=0.6)
            ax.annotate(
                row["name"].replace("uniform L1 ", "u").replace("budget ", ""),
                (x, after),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("measured per-iteration speedup over dense")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles = [
        plt.Line2D(
            [],
            [],
            color=c,
            marker="o" if k != "uniform" else "s",
            linestyle="",
            label=k if k == "uniform" else f"budget, {k}",
        )
        for k, c in colours.items()
    ]
    handles.append(plt.Line2D([], [], color="k", marker="o", markerfacecolor="none", linestyle="", label="as pruned"))
    handles.append(plt.Line2D([], [], color="k", marker="o", linestyle="", label="fine-tuned"))
    axes[1].legend(handles=handles, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny sizes and fine-tune (about a minute or two)"
    )
    parser.add_argument(
        "--size", type=int, default=None, help="timing and cost size, px (default 512; 128 with --quick)"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="interleaved timing rounds (default 2; 1 with --quick)"
    )
    parser.add_argument("--iterations", type=int, default=1, help="timed iterations per network and round")
    parser.add_argument(
        "--steps", type=int, default=None, help="fine-tune steps per candidate (default 40; 2 with --quick)"
    )
    parser.add_argument(
        "--calibrate-cost", action="store_true", help="fit the cost model to this machine before allocating"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for pareto.json and pareto.png")
    return parser.parse_args()


def time_and_finetune(
    dense, candidates: list[dict], train, heldout, size: int, iterations: int, rounds: int, ft_config, recovery
) -> tuple[list[dict], float]:
    """(one row per candidate: measured speedup and judged quality before/after fine-tuning, dense s/it)."""
    samples = time_iterations([dense] + [c["net"] for c in candidates], size, iterations, rounds)
    rows = []
    for candidate, times in zip(candidates, samples[1:]):
        student = copy.deepcopy(candidate["net"])
        result = finetune(dense, student, train, heldout, ft_config, recovery, progress=False)
        row = {k: v for k, v in candidate.items() if k != "net"}
        row.update(
            {
                "widths": candidate["net"].widths,
                "s_per_it": statistics.median(times),
                # Per-round ratios: each round timed dense and this network close together.
                "measured_speedup": statistics.median(d / t for d, t in zip(samples[0], times)),
                "before": {m: result.before[m] for m in METRICS},
                "after": {m: result.after[m] for m in METRICS},
            }
        )
        rows.append(row)
        print(
            f"{row['name']:<24} predicted {row['predicted_speedup']:5.2f}x measured {row['measured_speedup']:5.2f}x | "
            + " ".join(f"{m} {row['before'][m]:.3f}->{row['after'][m]:.3f}" for m in METRICS),
            flush=True,
        )
    return rows, statistics.median(samples[0])


def equal_cost(rows: list[dict]) -> list[dict]:
    """The issue's equal-cost comparison: uniform 50% of filters and the 4x budgets both do about 4x fewer MACs."""
    uniform = next(r for r in rows if r["name"] == "uniform L1 50.0%")
    compared = []
    for row in (r for r in rows if r["target"] == 4.0):
        better = row["after"]["style_ratio"] < uniform["after"]["style_ratio"]
        compared.append(
            {
                "budget": row["name"],
                "budget_style_ratio": row["after"]["style_ratio"],
                "uniform_style_ratio": uniform["after"]["style_ratio"],
                "budget_better": better,
            }
        )
        print(
            f"equal cost, fine-tuned: {row['name']} style ratio {row['after']['style_ratio']:.3f} vs uniform L1 50% "
            f"{uniform['after']['style_ratio']:.3f} ({'better' if better else 'not better'}; random weights)"
        )
    return compared


def main() -> None:
    args = parse_args()
    quick = args.quick
    size = args.size or (128 if quick else 512)
    rounds = args.rounds or (1 if quick else 2)
    steps = args.steps or (2 if quick else 40)
    calibration_size = 64 if quick else 128
    levels = (0.5, 0.75, 0.875) if quick else (0.25, 0.5, 0.625, 0.75, 0.875)
    ft_config = FinetuneConfig(
        steps=steps,
        batch_size=1 if quick else 2,
        crop_size=64 if quick else 128,
        lr=1e-4,
        checkpoint_every=max(1, steps),
    )
    recovery = RecoveryConfig(
        distortion_size=64 if quick else 128, stylize_size=64 if quick else 128, stylize_iterations=5 if quick else 40
    )

    started = time.perf_counter()
    preset = get_preset("seed")
    dense = load_vgg("random:0", last_layer=preset.last_layer)
    images = load_folder(max_side=calibration_size)
    train, heldout = split_heldout(images, count=2, seed=0)
    cost_model = calibrate_cost_model(dense, size, 1, rounds) if args.calibrate_cost else CostModel.macs_only()
    candidates = build_candidates(dense, train, size, cost_model, levels)
    print(
        f"{len(candidates)} candidates built in {time.perf_counter() - started:.0f} s; timing at {size} px", flush=True
    )

    rows, dense_s = time_and_finetune(
        dense, candidates, train, heldout, size, args.iterations, rounds, ft_config, recovery
    )
    equal_cost_rows = equal_cost(rows)

    label = "RANDOM WEIGHTS (random:0): quality numbers are mechanical, not meaningful"
    title = (
        f"{label}\nstructured VGG-19 to relu5_3: speed at {size}x{size} px ({rounds} rounds), "
        "judged on 2 held-out images, "
        f"fine-tune {steps} steps" + (" [--quick smoke run]" if quick else "")
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "weights": "random:0",
        "note": label,
        "quick": quick,
        "size": size,
        "rounds": rounds,
        "iterations": args.iterations,
        "dense_s_per_it": dense_s,
        "cost_model": cost_model.to_dict(),
        "finetune_steps": steps,
        "heldout": [im.name for im in heldout],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - started,
        "equal_cost": equal_cost_rows,
        "rows": rows,
    }
    (out / "pareto.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(rows, out / "pareto.png", title)
    print(f"wrote {out / 'pareto.json'} and {out / 'pareto.png'} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
