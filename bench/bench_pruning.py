"""Per-iteration time of a stylization step with dense, fine-grained and structured-pruned VGG-19.

One invocation measures all three networks at every size, interleaved round by round so a
machine that is busy with other work slows all of them alike. An iteration is what
``nst_core.nst.stylize`` does per step: forward through the truncated network, content + style +
TV loss, backward to the image, Adam step. Reported: median seconds per iteration, speedup
over dense, and the conv multiply-accumulates each network does per forward pass (the work
that pruning can remove).

Expected: fine-grained sparsity (the seed profile) runs at ~1x, because dense kernels still
multiply the zeros; structured pruning removes whole filters, so the network is physically
smaller and faster with the same dense kernels.

    python bench/bench_pruning.py                                   # 256 and 512 px, 3 rounds x 2 iterations
    python bench/bench_pruning.py --sizes 256 --rounds 2 --iterations 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from nst_core.compress.pruning import Profile, prune, sparsity_report
from nst_core.image.io import load_image, resize_max_side
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import conv_macs
from nst_core.nst.losses import get_preset
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT / "examples" / "content" / "lakeside.jpg"
STYLE = ROOT / "examples" / "style" / "swirls.jpg"


def time_iterations(model, size: int, iterations: int) -> list[float]:
    """Seconds of each stylization iteration after the first (which also computes targets)."""
    stamps: list[float] = []
    stylize(
        prepare(model, CONTENT, [STYLE], StylizeConfig(size=size, iterations=iterations + 1)),
        callback=lambda _progress: stamps.append(time.perf_counter()),
    )
    return [b - a for a, b in zip(stamps, stamps[1:])]


def measure(networks: dict, sizes: list[int], rounds: int, iterations: int) -> list[dict]:
    """One row per size and network: median seconds per iteration, speedup and conv work against dense."""
    dense = networks["dense"]
    nonzeros = {name: sparsity_report(net).total_nonzeros for name, net in networks.items()}
    rows = []
    for size in sizes:
        width, height = resize_max_side(load_image(CONTENT), size).size
        times: dict[str, list[float]] = {name: [] for name in networks}
        for net in networks.values():
            # Untimed warm-up at this size: the first runs in a process pay for allocator growth and kernel set-up.
            time_iterations(net, size, 1)
        for _ in range(rounds):
            for name, net in networks.items():
                times[name].extend(time_iterations(net, size, iterations))
        dense_time = statistics.median(times["dense"])
        dense_macs = sum(conv_macs(dense.widths, height, width).values())
        for name, net in networks.items():
            median = statistics.median(times[name])
            macs = sum(conv_macs(net.widths, height, width).values())
            rows.append(
                {
                    "size": size,
                    "image": f"{width}x{height}",
                    "network": name,
                    "s_per_it": median,
                    "speedup": dense_time / median,
                    "conv_gmacs": macs / 1e9,
                    "work_ratio": dense_macs / macs,
                    "nonzero_weights": nonzeros[name],
                    "samples": len(times[name]),
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    """The rows as a plain-text table, after a line naming the machine's torch and threads."""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        "random VGG-19 weights up to relu5_3, seed preset, Adam"
    )
    print(
        f"{'size':>5} {'image':>8} | {'network':<26} | {'s/it':>7} | {'speedup':>7} | "
        f"{'conv GMAC':>9} | {'less work':>9} | {'nonzero w':>10}"
    )
    for r in rows:
        print(
            f"{r['size']:>5} {r['image']:>8} | {r['network']:<26} | {r['s_per_it']:>7.3f} | {r['speedup']:>6.2f}x | "
            f"{r['conv_gmacs']:>9.2f} | {r['work_ratio']:>8.2f}x | {r['nonzero_weights']:>10,}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="longer image side(s), px")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size")
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations per network per round")
    parser.add_argument("--structured", type=float, default=0.5, help="fraction of filters removed in every conv")
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "pruning.json"), help="where to write results"
    )
    args = parser.parse_args()

    dense = load_vgg("random:0", last_layer=get_preset("seed").last_layer)
    networks = {
        "dense": dense,
        "fine (seed profile)": prune(dense, "seed"),
        f"structured ({args.structured:.0%} filters)": prune(
            dense, Profile.uniform("structured", dense.conv_names, args.structured)
        ),
    }
    rows = measure(networks, args.sizes, args.rounds, args.iterations)
    print_table(rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "rounds": args.rounds,
                "iterations": args.iterations,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
