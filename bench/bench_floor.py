"""How close `nst stylize` runs to the hardware's floor, dense and structured-pruned, in one run.

The floor is the least work any Gatys-style iteration must do: one forward pass of the same
truncated VGG-19 and one backward pass to the input image, with a trivial loss (the sum of the
deepest activation), no Gram matrices, no optimiser. It is measured in both memory layouts (NCHW
and channels_last); the headline ratio divides by the NCHW floor, which is what a plain PyTorch
loop gets, and the channels_last floor is shown beside it.

Every configuration is timed in interleaved rounds inside this one process (floor, ours, floor,
ours, ...), so a change in machine load hits all of them alike; per-iteration times are medians
after untimed warm-up iterations. Ratios are the result, not absolute times.

    python bench/bench_floor.py                                # 256 and 512 px on the best device
    python bench/bench_floor.py --sizes 256 --rounds 2         # quick
    python bench/bench_floor.py --weights caffe                # real weights: timing does not depend on them

On a GPU it also measures 1024 px, bf16 autocast beside fp32, and the end-to-end seconds of a
500-iteration stylization at 512 px (targets included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from nst_core.compress.pruning import prune_structured
from nst_core.core.devices import DEVICE_CHOICES, prepare_backend, resolve_device
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import PRESETS, get_preset
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples" / "content" / "lakeside.jpg"
STYLE = ROOT / "examples" / "style" / "swirls.jpg"
WARMUP = 2  # the first passes at a new shape pay for oneDNN/cuDNN primitive selection


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_times(
    model: VGGFeatures, size_hw: tuple[int, int], iterations: int, layout: torch.memory_format
) -> list[float]:
    """Seconds per forward + backward-to-input of ``model`` with a trivial loss."""
    device = next(model.parameters()).device
    image = (torch.rand(1, 3, *size_hw, device=device) * 255).contiguous(memory_format=layout)
    times = []
    for step in range(iterations + WARMUP):
        _sync(device)
        start = time.perf_counter()
        x = image.detach().requires_grad_(True)
        model(x, [model.last_layer])[model.last_layer].sum().backward()
        _sync(device)
        if step >= WARMUP:
            times.append(time.perf_counter() - start)
    return times


def stylize_times(model: VGGFeatures, config: StylizeConfig) -> tuple[list[float], tuple[int, int]]:
    """Per-iteration seconds of a real `stylize` run (from its progress callback) and the output size."""
    stamps: list[float] = []
    result = stylize(prepare(model, CONTENT, [STYLE], config), callback=lambda _p: stamps.append(time.perf_counter()))
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return gaps[WARMUP:], result.image.size


def networks(weights: str, preset: str, device: torch.device) -> dict[str, VGGFeatures]:
    dense = load_vgg(weights, last_layer=get_preset(preset).last_layer, device=device)
    return {"dense": dense, "structured 50%": prune_structured(dense, 0.5)}


def measure(args: argparse.Namespace, device: torch.device) -> list[dict]:
    gpu = device.type == "cuda"
    sizes = args.sizes + ([1024] if gpu and 1024 not in args.sizes else [])
    precisions = ["fp32", "bf16"] if gpu or args.bf16 else ["fp32"]
    rows = []
    for name, model in networks(args.weights, args.preset, device).items():
        for size in sizes:
            config = StylizeConfig(preset=args.preset, size=size, iterations=args.iterations + WARMUP + 1)
            _, (w, h) = stylize_times(model, StylizeConfig(preset=args.preset, size=size, iterations=1))
            samples: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                samples.setdefault("floor NCHW", []).extend(
                    floor_times(model, (h, w), args.iterations, torch.contiguous_format)
                )
                samples.setdefault("floor channels_last", []).extend(
                    floor_times(model, (h, w), args.iterations, torch.channels_last)
                )
                for precision in precisions:
                    for channels_last in (True, False):
                        key = f"ours {precision} {'channels_last' if channels_last else 'NCHW'}"
                        run = replace(config, precision=precision, channels_last=channels_last)
                        samples.setdefault(key, []).extend(stylize_times(model, run)[0])
            floor = statistics.median(samples["floor NCHW"])
            for key, times in samples.items():
                median = statistics.median(times)
                rows.append(
                    {
                        "network": name,
                        "size": size,
                        "wh": [w, h],
                        "what": key,
                        "s_per_it": median,
                        "x_floor": median / floor,
                    }
                )
                print(
                    f"{name:>15} {size:>5} px  {key:<26} {median:8.3f} s/it  {median / floor:5.2f}x floor", flush=True
                )
    if gpu:
        for name, model in networks(args.weights, args.preset, device).items():
            for precision in ("fp32", "bf16"):
                config = StylizeConfig(preset=args.preset, size=512, iterations=500, precision=precision)
                stylize(
                    prepare(
                        model,
                        CONTENT,
                        [STYLE],
                        StylizeConfig(preset=args.preset, size=512, iterations=5, precision=precision),
                    )
                )
                _sync(device)
                start = time.perf_counter()
                stylize(prepare(model, CONTENT, [STYLE], config))
                _sync(device)
                seconds = time.perf_counter() - start
                rows.append(
                    {"network": name, "size": 512, "what": f"end-to-end 500 it {precision}", "seconds": seconds}
                )
                print(f"{name:>15}   512 px  end-to-end 500 iterations {precision}: {seconds:.2f} s", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| network | size | what | s/iteration | x NCHW floor |", "|---|---|---|---|---|"]
    for r in rows:
        if "s_per_it" in r:
            lines.append(f"| {r['network']} | {r['size']} | {r['what']} | {r['s_per_it']:.3f} | {r['x_floor']:.2f} |")
        else:
            lines.append(f"| {r['network']} | {r['size']} | {r['what']} | {r['seconds']:.2f} s in total | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[256, 512], help="longer image side(s), px (a GPU adds 1024)"
    )
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per configuration and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--preset", default="seed", choices=sorted(PRESETS), help="loss preset (sets the truncation)")
    parser.add_argument("--weights", default="random:0", help="weight spec; timing does not depend on the values")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where to run")
    parser.add_argument(
        "--bf16", action="store_true", help="also time bf16 autocast on a CPU (slow without bf16 units)"
    )
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "floor.json"), help="where to write the results"
    )
    args = parser.parse_args()

    device = resolve_device(args.device)
    prepare_backend(device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{device.type}, {torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__}, {where}, weights {args.weights}, preset {args.preset}", flush=True)
    rows = measure(args, device)
    print()
    print(markdown(rows))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"torch": torch.__version__, "device": where, "weights": args.weights, "rows": rows}, indent=1)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
