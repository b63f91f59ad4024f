"""Per-iteration time and peak memory of `nst stylize` vs a plain textbook implementation.

Both run in this one invocation, on the same inputs, each size in fresh subprocesses so peak
memory (max RSS) belongs to one configuration. The reference is written the textbook way:
the full VGG-19 `features` every iteration, content and style targets recomputed every
iteration (autograd on, weights frozen), nothing truncated or cached. Ratios are the result; absolute
times depend on the machine and on what else it runs.

    python bench/bench_stylize.py                      # 256 and 512 px, random weights
    python bench/bench_stylize.py --sizes 256 --iterations 5 --json bench/results/stylize.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples" / "content" / "lakeside.jpg"
STYLE = ROOT / "examples" / "style" / "swirls.jpg"
# Untimed iterations first: the first passes at a new shape pay for oneDNN primitive creation.
WARMUP = 3


def run_ours(size: int, iterations: int) -> list[float]:
    from nst_core.model.weights import load_vgg
    from nst_core.nst.losses import get_preset
    from nst_core.nst.stylize import StylizeConfig, prepare, stylize

    model = load_vgg("random:0", last_layer=get_preset("seed").last_layer)
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(_progress):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    config = StylizeConfig(preset="seed", size=size, iterations=iterations + WARMUP)
    last[0] = time.perf_counter()
    stylize(prepare(model, CONTENT, [STYLE], config), callback=tick)
    return times[WARMUP:]  # the first iterations include target computation and oneDNN warm-up


def run_reference(size: int, iterations: int) -> list[float]:
    """The textbook loop: full network, targets recomputed each iteration, nothing cached."""
    import torch
    import torch.nn.functional as F

    from nst_core.image.io import load_image, pil_to_tensor
    from nst_core.model.layers import LAYER_INDEX
    from nst_core.model.vgg import VGGFeatures, random_state_dict

    net = VGGFeatures("pool5")  # all 37 layers of VGG-19's features
    net.load_state_dict(random_state_dict("pool5", seed=0))
    # Frozen weights, as any tutorial does: the gap measured is truncation and target caching only.
    net.eval().requires_grad_(False)
    features = net.features
    mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    content_layer = LAYER_INDEX["relu4_2"]
    style_layers = [LAYER_INDEX[n] for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")]

    def all_features(x):
        x = x.flip(1) - mean
        outs = []
        for module in features:  # every layer, every time
            x = module(x)
            outs.append(x)
        return outs

    def gram(f):
        _, c, h, w = f.shape
        f = f.view(c, h * w)
        return f @ f.T / (h * w)

    content = pil_to_tensor(load_image(CONTENT, max_side=size))
    style = pil_to_tensor(load_image(STYLE, max_side=size))
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=10.0)
    times = []
    for _ in range(iterations + WARMUP):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        gen, con, sty = all_features(image), all_features(content), all_features(style)
        loss = 5.0 * F.mse_loss(gen[content_layer], con[content_layer])
        for i in style_layers:
            c = gen[i].shape[1]
            loss = loss + 1e2 * 0.2 * F.mse_loss(gram(gen[i]), gram(sty[i])) / c**2
        dx = image[..., :, 1:] - image[..., :, :-1]
        dy = image[..., 1:, :] - image[..., :-1, :]
        loss = loss + 1e-3 * (dx.abs().mean() + dy.abs().mean())
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0, 255)
        times.append(time.perf_counter() - t0)
    return times[WARMUP:]


def worker(kind: str, size: int, iterations: int) -> None:
    from nst_core.nst.memory import peak_rss

    times = (run_ours if kind == "ours" else run_reference)(size, iterations)
    peak_mib = peak_rss() / 2**20
    print(json.dumps({"kind": kind, "size": size, "times": times, "peak_rss_mib": peak_mib}))


def measure(kind: str, size: int, iterations: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--sizes", str(size), "--iterations", str(iterations)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="longer image side(s), px")
    parser.add_argument(
        "--iterations", type=int, default=5, help="timed iterations per run (after 3 untimed warm-up iterations)"
    )
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "stylize.json"), help="where to write results"
    )
    parser.add_argument("--worker", choices=("ours", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.sizes[0], args.iterations)
        return

    import torch

    rows = []
    for size in args.sizes:
        ours = measure("ours", size, args.iterations)
        ref = measure("reference", size, args.iterations)
        row = {
            "size": size,
            "ours_s_per_it": statistics.median(ours["times"]),
            "reference_s_per_it": statistics.median(ref["times"]),
            "ours_peak_rss_mib": ours["peak_rss_mib"],
            "reference_peak_rss_mib": ref["peak_rss_mib"],
        }
        row["speedup"] = row["reference_s_per_it"] / row["ours_s_per_it"]
        rows.append(row)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, random VGG-19 weights, seed preset, Adam")
    print(
        f"{'size':>5} | {'ours s/it':>9} | {'reference s/it':>14} | {'speedup':>7} | "
        f"{'ours peak MiB':>13} | {'ref peak MiB':>12}"
    )
    for r in rows:
        print(
            f"{r['size']:>5} | {r['ours_s_per_it']:>9.3f} | {r['reference_s_per_it']:>14.3f} | {r['speedup']:>6.2f}x | "
            f"{r['ours_peak_rss_mib']:>13.0f} | {r['reference_peak_rss_mib']:>12.0f}"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
