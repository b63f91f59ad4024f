"""Print-size stylization: peak RSS and seconds per iteration per megapixel, dense vs structured-pruned, whole vs tiled.

Each row is one `stylize` run in its own fresh interpreter (peak RSS belongs to that run
alone): the dense VGG-19 and the structured-pruned one (50% of the filters of every conv,
``nst_core.compress.pruning.prune_structured``), at each size, run whole (where the memory model says
it fits this machine's RAM) and under a memory budget (``max_memory``: tiled where the whole
image does not fit). Random weights: time and memory do not depend on their values. Then,
from the memory model (its fit is checked by tests/test_memory_model.py and by the measured
rows here), the largest 4:3 output each network makes in 4 GB and in 8 GB, whole and tiled.

    python bench/bench_highres.py              # 1024, 2048, 4096 px, 1 iteration each (~10 min on a quiet 2-core CPU)
    python bench/bench_highres.py --quick      # 256 and 512 px with a 1.4 GB budget: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples" / "content" / "lakeside.jpg"
STYLE = ROOT / "examples" / "style" / "cubist.jpg"
NETWORKS = ("dense", "pruned50")
#: The tile side of the "tiled" column of the largest sizes: its core keeps 288 px after the 112 px halos.
PRACTICAL_TILE = 512


def load_network(name: str):
    from nst_core.compress.pruning import prune_structured
    from nst_core.model.weights import load_vgg
    from nst_core.nst.losses import get_preset

    model = load_vgg("random:0", last_layer=get_preset("seed").last_layer)
    return prune_structured(model, 0.5) if name == "pruned50" else model


def child(network: str, size: int, budget: int | None, iterations: int) -> dict:
    """One run in this process; its peak RSS, time per iteration and plan."""
    import warnings

    from PIL import Image

    from nst_core.nst.memory import peak_rss
    from nst_core.nst.stylize import StylizeConfig, prepare, stylize

    warnings.simplefilter("ignore")
    model = load_network(network)
    # A 4:3 content image at the asked size (the example photo enlarged: speed and memory do not depend on the pixels).
    content = Image.open(CONTENT).convert("RGB").resize((size, size * 3 // 4), Image.LANCZOS)
    config = StylizeConfig(size=size, iterations=iterations, max_memory=budget)
    started = time.perf_counter()
    prepared = prepare(model, content, [STYLE], config)
    plan = prepared.plan  # the plan the run follows
    result = stylize(prepared)
    return {
        "network": network,
        "size": f"{content.size[0]}x{content.size[1]}",
        "budget": budget,
        "plan": plan.describe("relu5_3"),
        "predicted_peak_added": plan.predicted_peak,
        "peak_rss": peak_rss(),
        "s_per_iteration": result.timings["per_iteration"],
        "wall": time.perf_counter() - started,
        "megapixels": content.size[0] * content.size[1] / 1e6,
    }


def measure(network: str, size: int, budget: int | None, iterations: int) -> dict:
    """``child`` in a fresh interpreter."""
    argv = [sys.executable, __file__, "--child", network, str(size), str(budget or 0), str(iterations)]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        return {"network": network, "size": size, "budget": budget, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def largest_sizes(network: str, held: int, budgets: list[int]) -> dict:
    """Largest 4:3 longer side (multiple of 64, at most 8192) whose run fits each budget, whole and tiled.

    Judged by the memory model.
    """
    from nst_core.nst.losses import get_preset
    from nst_core.nst.memory import SAFETY, predict_step_peak

    widths = load_network(network).widths
    layers = get_preset("seed").layers
    out = {}
    for budget in budgets:
        room = SAFETY * (budget - held)
        fits = {}
        for mode, tile in (("whole", None), ("tiled", PRACTICAL_TILE)):
            side = 64
            while (
                side + 64 <= 8192
                and predict_step_peak(widths, layers, (side + 64) * 3 // 4, side + 64, "fp32", tile) <= room
            ):
                side += 64
            fits[mode] = side
        out[f"{budget / 1e9:.0f} GB"] = fits
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 and 512 px with a 1.4 GB budget (a smoke run)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=None, help="longer sides in px (default 1024 2048 4096)"
    )
    parser.add_argument(
        "--budget", default=None, help="the memory budget of the tiled rows (default 4GB; --quick 1.4GB)"
    )
    parser.add_argument("--iterations", type=int, default=1, help="timed iterations per run")
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "highres.json"), help="where to write the results"
    )
    parser.add_argument("--child", nargs=4, metavar=("NETWORK", "SIZE", "BUDGET", "ITERATIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        network, size, budget, iterations = args.child
        print(json.dumps(child(network, int(size), int(budget) or None, int(iterations))))
        return

    import warnings

    from nst_core.core.files import atomic_write_text
    from nst_core.nst.losses import get_preset
    from nst_core.nst.memory import parse_memory, predict_step_peak

    warnings.simplefilter("ignore")  # random weights are the point here; the children say so in the JSON
    sizes = args.sizes or ([256, 512] if args.quick else [1024, 2048, 4096])
    budget = parse_memory(args.budget or ("1.4GB" if args.quick else "4GB"))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    base = measure("dense", 64, None, 1)  # the interpreter, torch and the network: what every run holds first
    held = base["peak_rss"]
    rows = []
    for size in sizes:  # sizes outermost: both networks meet the machine in the same state
        for network in NETWORKS:
            widths = load_network(network).widths
            whole = predict_step_peak(widths, get_preset("seed").layers, size * 3 // 4, size, "fp32") + held
            if whole < 0.8 * ram:
                rows.append({**measure(network, size, None, args.iterations), "mode": "whole"})
            else:
                rows.append(
                    {
                        "network": network,
                        "size": size,
                        "mode": "whole",
                        "error": f"predicted {whole / 1e9:.1f} GB > 80% of RAM",
                    }
                )
            rows.append(
                {**measure(network, size, budget, args.iterations), "mode": f"budget {args.budget or budget / 1e9}"}
            )
            print(json.dumps(rows[-2]), json.dumps(rows[-1]), sep="\n", flush=True)
    fits = {network: largest_sizes(network, held, [4 * 10**9, 8 * 10**9]) for network in NETWORKS}
    print(f"\n{'network':9} {'size':>10} {'mode':>12} {'peak RSS':>9} {'s/it/MP':>8}  plan")
    for r in rows:
        if "error" in r:
            print(f"{r['network']:9} {r['size']!s:>10} {r['mode']:>12}  -- {r['error']}")
        else:
            print(
                f"{r['network']:9} {r['size']:>10} {r['mode']:>12} {r['peak_rss'] / 1e9:8.2f}G "
                f"{r['s_per_iteration'] / r['megapixels']:8.2f}  {r['plan']}"
            )
    print(
        f"\nlargest 4:3 output (longer side, px) by the memory model, with {held / 1e9:.2f} GB held before the run "
        f"(tiled: {PRACTICAL_TILE} px tiles):"
    )
    for network, by_budget in fits.items():
        print(
            f"  {network:9} " + "  ".join(f"{b}: {v['whole']} whole, {v['tiled']} tiled" for b, v in by_budget.items())
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        args.json, json.dumps({"held": held, "rows": rows, "largest": fits, "weights": "random:0"}, indent=1)
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
