"""How long one click of the app takes at its default settings: dense run, pruned run, judge.

    python bench/bench_app.py                       # CPU defaults, seed profile, random weights
    python bench/bench_app.py --pruned structured:0.5 --size 256 --iterations 40

Runs exactly what the app runs (``nst_core.workflows.compare.run_comparison``) on the bundled examples
and prints wall time and process CPU time of each phase. CPU time / wall time shows how much
of the machine the run had: on a shared machine, wall time alone overstates the cost. The
conv work of one stylization step (``nst_core.nst.cost``, GMACs of a forward and a backward pass)
is the machine-independent side of the dense/pruned ratio.
Writes the numbers as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_core.nst.cost import iteration_macs  # noqa: E402
from nst_core.workflows import compare  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random:0")
    parser.add_argument("--pruned", default=compare.DEFAULT_PRUNED)
    parser.add_argument("--size", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--optimizer")
    parser.add_argument("--time-budget", type=float, help="seconds per picture (0: the iterations decide)")
    parser.add_argument("--content", default=str(ROOT / "examples/content/lakeside.jpg"))
    parser.add_argument("--style", default=str(ROOT / "examples/style/swirls.jpg"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = compare.default_settings()
    given = (("size", args.size), ("iterations", args.iterations), ("optimizer", args.optimizer))
    overrides = {k: v for k, v in given if v}
    if args.time_budget is not None:
        overrides["time_budget"] = args.time_budget
    settings = replace(settings, **overrides)
    dense = compare.load_dense(args.weights, fallback=False)
    compare.warm_up(dense.model)
    pruned = compare.resolve_pruned(args.pruned, dense.model)

    marks: dict[str, tuple[float, float]] = {}
    wall0, cpu0 = time.perf_counter(), cpu_seconds()
    last_phase = None
    result = None
    for event in compare.run_comparison(dense.model, pruned, args.content, [args.style], settings):
        if isinstance(event, compare.Comparison):
            result = event
        elif event.phase != last_phase:
            marks[event.phase] = (time.perf_counter(), cpu_seconds())
            last_phase = event.phase
    wall_end, cpu_end = time.perf_counter(), cpu_seconds()

    def span(a: str, b: str | None) -> tuple[float, float]:
        wa, ca = marks[a]
        wb, cb = marks[b] if b else (wall_end, cpu_end)
        return wb - wa, cb - ca

    rows = {"dense": span("dense", "pruned"), "pruned": span("pruned", "judge"), "judge": span("judge", None)}
    total = (wall_end - wall0, cpu_end - cpu0)
    print(
        f"settings: {asdict(settings)}; pruned: {pruned.label}; weights: {dense.model.weight_source}; "
        f"torch threads: {torch.get_num_threads()}"
    )
    print(f"{'phase':<8} {'wall s':>8} {'cpu s':>8} {'cpu/wall':>9} {'ms/it':>7} {'GMAC/it':>8}")
    per_it = {"dense": result.dense.timings["per_iteration"], "pruned": result.pruned.timings["per_iteration"]}
    width, height = result.dense.image.size
    macs = {
        name: iteration_macs(model.widths, height, width)
        for name, model in (("dense", dense.model), ("pruned", pruned.model))
    }
    for name, (wall, cpu) in [*rows.items(), ("total", total)]:
        ms = f"{1000 * per_it[name]:.0f}" if name in per_it else ""
        gmacs = f"{macs[name] / 1e9:.2f}" if name in macs else ""
        print(f"{name:<8} {wall:>8.2f} {cpu:>8.2f} {cpu / wall:>9.2f} {ms:>7} {gmacs:>8}")
    print(
        f"dense/pruned per iteration: time {per_it['dense'] / per_it['pruned']:.2f}x, "
        f"conv work {macs['dense'] / macs['pruned']:.2f}x; iterations run: dense {len(result.dense.history)}, "
        f"pruned {len(result.pruned.history)}"
    )
    print(
        "judged by the dense network, pruned over dense: " + ", ".join(f"{k} {v:.3f}" for k, v in result.judged.items())
    )
    if args.json:
        report = {
            "settings": asdict(settings),
            "pruned": args.pruned,
            "phases": rows,
            "total": total,
            "macs_per_iteration": macs,
            "iterations": {"dense": len(result.dense.history), "pruned": len(result.pruned.history)},
            "judged": result.judged,
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
