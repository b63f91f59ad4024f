"""Every user-facing setting, once: the table the CLI flags and the app are generated from.

Each :class:`~nst_core.workflows.setting_types.Setting` is one entry. From the entries with a
``cli`` part, ``nst_core.cli.common.add_stylize_args`` makes the flags of `nst stylize` (and the
ones `nst scan run` shares); from those with an ``app`` part, ``nst_core.workflows.compare_settings``
makes ``CompareSettings``, its validator and its ``StylizeConfig``, and ``nst_core.app`` makes the
input widgets, the /compare endpoint's signature and its API docs. The table's order is the order of
the flags in --help and of the endpoint's parameters (a new optional parameter goes after the others,
so callers that pass them by position keep working).

Adding a setting is one entry here plus its use in the engine (a ``StylizeConfig`` field).

>>> [s.parameter for s in SETTINGS if s.app][:4]
['content', 'styles', 'size', 'iterations']
>>> SETTINGS_BY_NAME["color"].cli.choices
('none', 'luminance', 'histogram')
"""

from __future__ import annotations

import argparse

from nst_core.core.errors import UserError
from nst_core.nst.losses import PRESETS, STYLE_LOSSES, get_preset
from nst_core.nst.stylize import COLORS, INITS, OPTIMIZERS, PADDINGS, PRECISIONS, SCALE_SPACINGS, SCALE_SPLITS
from nst_core.workflows.setting_types import (
    CHOICE,
    CHOICE_OR_NONE,
    FLAG,
    NUMBER,
    PATH,
    PATHS,
    RAW,
    WEIGHTS,
    WHOLE,
    Control,
    Flag,
    Setting,
)

#: The loss preset of the app's comparison (its style weight is what ``style_strength`` multiplies).
PRESET = "seed"
# The app's size bounds: the upper one keeps one request from taking a GPU Space for minutes; the lower
# one is what relu5_3 needs with a little room, so the judge's windows are not degenerate.
SIZE_RANGE = (64, 1024)
#: The largest size on a GPU by default (``app.py --max-size`` sets another); sizes that do not fit the
#: GPU's memory whole are stylized in tiles (``CompareSettings.max_memory``).
GPU_MAX_SIZE = 2048
MAX_STYLES = 4
IMAGE_FILES = {"file_count": "multiple", "file_types": ["image"], "type": "filepath"}
UPLOAD = {"type": "filepath", "sources": ["upload", "clipboard"]}


def _check_style_weights(weights: tuple[float, ...] | None) -> None:
    if weights is not None and (len(weights) > MAX_STYLES or not all(w >= 0 for w in weights)):
        raise UserError(f"style weights: at most {MAX_STYLES} non-negative numbers, one per style image")


def _style_weight(strength: float) -> dict[str, float]:
    """The app's style strength multiplies the preset's style weight."""
    return {"style_weight": get_preset(PRESET).style_weight * strength}


def _time_budget(seconds: float) -> dict[str, float | None]:
    """The app's 0 means no budget (the iterations decide); a budget below 0.1 s is refused by the config."""
    return {"time_budget": float(seconds) if seconds else None}


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "content",
        app=Control(
            "image",
            RAW,
            ("images", 1),
            "The content image (PNG, JPEG, WebP, ...); scaled so that its longer side is `size`.",
            {"label": "Content image", **UPLOAD, "height": 240, "elem_id": "content"},
            setting=False,
        ),
    ),
    Setting(
        "styles",
        app=Control(
            "file",
            RAW,
            ("images", 2),
            "One to four style images, blended with equal weights unless style_weights says otherwise.",
            {
                "label": f"Style images (up to {MAX_STYLES}, blended by the style weights under Style controls)",
                **IMAGE_FILES,
                "elem_id": "style-files",
            },
            setting=False,
        ),
    ),
    Setting("preset", Flag("loss layers, weights and normalisations", choices=sorted(PRESETS))),
    Setting(
        "size",
        Flag("longer side of the output in px", type=int),
        Control(
            "slider",
            WHOLE,
            ("settings", 1),
            "Longer side of the results in pixels, 64 to 1024 (on a GPU to 2048, or the server's --max-size).",
            {"step": 16, "label": "Size (longer side, px)", "elem_id": "size"},
            default=128,
            bounds=(SIZE_RANGE[0], "max_size"),
        ),
    ),
    Setting(
        "iterations",
        Flag("optimiser iterations in total (over all scales)", type=int),
        Control(
            "slider",
            WHOLE,
            ("settings", 2),
            "Optimisation steps of each run, 1 to 1000.",
            {"step": 1, "label": "Iterations", "elem_id": "iterations"},
            default=30,
            bounds=(1, 1000),
        ),
    ),
    Setting(
        "optimizer",
        Flag("Adam (seed) or L-BFGS (fewer iterations)", choices=OPTIMIZERS),
        Control(
            "radio",
            CHOICE,
            ("settings", 4),
            "adam or lbfgs.",
            {"label": "Optimizer"},
            default="adam",
            choices=OPTIMIZERS,
        ),
    ),
    Setting("lr", Flag("learning rate in grey levels per step (default: 10 Adam, 1 L-BFGS)", type=float)),
    Setting(
        "init",
        Flag(
            "start from the content, the content in the styles' colours (palette: the fastest start measured), "
            "seeded noise, the style, or an image file (e.g. a smaller result to refine)",
            metavar="|".join(INITS) + "|PATH",
        ),
    ),
    Setting("content_weight", Flag("content loss weight (default: the preset's)", type=float)),
    Setting("style_weight", Flag("style loss weight (default: the preset's)", type=float)),
    Setting(
        "style_strength",
        app=Control(
            "slider",
            NUMBER,
            ("settings", 3),
            "Multiplies the preset's style weight, 0 to 20 (1 is the preset).",
            {"step": 0.1, "label": "Style strength (x preset)"},
            default=1.0,
            bounds=(0.0, 20.0),
            config=_style_weight,
        ),
    ),
    Setting(
        "tv_weight",
        Flag("total-variation weight (default: the preset's)", type=float),
        Control(
            "number",
            NUMBER,
            ("settings", 5),
            "Total-variation (smoothness) weight, 0 to 1.",
            {"label": "TV weight (0 to 1)", "info": "smoothness"},
            default=1e-3,
            noun="TV weight",
            bounds=(0.0, 1.0),
        ),
    ),
    Setting(
        "seed",
        Flag("random seed (noise init); same seed + settings = same image", type=int),
        Control(
            "number",
            WHOLE,
            ("settings", 5),
            "Random seed of both runs, 0 to 2147483647.",
            {"precision": 0, "label": "Seed", "info": "both runs start from it"},
            default=0,
            bounds=(0, 2**31 - 1),
        ),
    ),
    Setting(
        "preserve_color",
        Flag("keep the content's colours (luminance-only transfer)", action="store_true"),
        Control(
            "checkbox",
            FLAG,
            ("settings", 4),
            "Keep the content image's colours (only the luminance is stylized).",
            {"label": "Keep the content's colours"},
            default=False,
        ),
    ),
    Setting(
        "pruned_choice",
        app=Control(
            "dropdown",
            RAW,
            ("pruned", 1),
            "The pruned network to compare with: fast:2 (structured, widths chosen for a 2x speedup; the"
            " default), profile:seed (the seed's fine-grained profile), structured:0.5 (half of every conv's"
            " filters removed), fast:3, or a file the server offers.",
            {"label": "Compare the dense network with", "elem_id": "pruned-choice"},
            setting=False,
        ),
    ),
    Setting(
        "pruned_upload",
        app=Control(
            "file",
            RAW,
            ("pruned", 2),
            "Your own pruned network instead of pruned_choice: a profile (.json, from `nst scan select`) or a"
            " checkpoint (.safetensors, from `nst prune --save`).",
            {
                "label": "Or upload a profile (.json) or checkpoint (.safetensors)",
                "file_types": [".json", ".safetensors"],
                "type": "filepath",
                "elem_id": "pruned-upload",
            },
            optional=True,
            setting=False,
        ),
    ),
    Setting(
        "hub_repo",
        app=Control(
            "textbox",
            RAW,
            ("pruned", 3),
            "A pruned checkpoint on the Hugging Face Hub instead of pruned_choice, OWNER/NAME[:FILE][@REVISION]"
            " (an upload wins over it).",
            {
                "label": "Or a pruned checkpoint on the Hugging Face Hub",
                "placeholder": "OWNER/NAME[:FILE][@REVISION]",
                "max_lines": 1,
                "elem_id": "hub-repo",
            },
            optional=True,
            setting=False,
        ),
    ),
    Setting("scales", Flag("coarse-to-fine scales (3 = size/4, size/2, size)", type=int)),
    Setting(
        "tolerance", Flag("stop early when the loss changes less than this (relative) over 10 iterations", type=float)
    ),
    Setting(
        "precision",
        Flag(
            "bf16: convolutions under bf16 autocast (fast on GPUs; Gram matrices and losses stay fp32)",
            choices=PRECISIONS,
        ),
    ),
    Setting(
        "channels_last",
        Flag(
            "NHWC activations, the fastest conv layout for oneDNN and cuDNN (bench/bench_floor.py)",
            action=argparse.BooleanOptionalAction,
        ),
    ),
    Setting(
        "style_scale",
        Flag(
            "style images' size relative to the output (brush-stroke size): 0.5 finer, 2 coarser",
            type=float,
            metavar="F",
        ),
        Control(
            "slider",
            NUMBER,
            ("style", 1),
            "Size of the style images relative to the result, 0.25 to 4 (brush-stroke size; 1 is the result's size).",
            {"step": 0.05, "label": "Style scale (brush-stroke size)", "elem_id": "style-scale"},
            default=1.0,
            optional=True,
            bounds=(0.25, 4.0),
        ),
    ),
    Setting(
        "style_blend",
        Flag("one weight per style image", type=float, nargs="+", metavar="W"),
        Control(
            "textbox",
            WEIGHTS,
            ("style", 2),
            'One weight per style image, comma-separated (e.g. "1, 2"); empty blends them equally.',
            {
                "label": "Style weights, one per style image (e.g. 1, 2; empty: equal)",
                "max_lines": 1,
                "elem_id": "style-weights",
            },
            optional=True,
            check=_check_style_weights,
            parameter="style_weights",
        ),
    ),
    Setting(
        "style_size",
        Flag(
            "style images' longer side in px at the full output size (instead of --style-scale)",
            type=int,
            metavar="PX",
        ),
    ),
    Setting(
        "content_layers",
        Flag(
            "content layers with optional weights, e.g. relu4_2 or relu3_1:0.5,relu4_1 (default: the preset's)",
            metavar="LAYER[:W],...",
        ),
    ),
    Setting(
        "style_layers",
        Flag(
            "style layers with optional weights (unweighted ones share equally; default: the preset's)",
            metavar="LAYER[:W],...",
        ),
    ),
    Setting(
        "style_loss",
        Flag(
            "gram: Gram matrices (Gatys); meancov: feature means and covariances (2-Wasserstein), keeps the "
            "style's colour saturation; its values are ~20x the Gram loss, so lower --style-weight",
            choices=list(STYLE_LOSSES),
        ),
    ),
    Setting(
        "color",
        Flag(
            "luminance: keep the content's colours (as --preserve-color); histogram: recolour the style images to "
            "the content's RGB mean and covariance first",
            choices=COLORS,
        ),
        Control(
            "radio",
            CHOICE_OR_NONE,
            ("style", 3),
            "none (the style's colours) or histogram (the styles recoloured to the content's palette first).",
            {"label": "Colours", "elem_id": "color"},
            default="none",
            optional=True,
            noun="colour",
            choices={"none": "style's colours", "histogram": "content's palette (histogram matching)"},
        ),
    ),
    Setting(
        "mask",
        Flag(
            "greyscale content mask: style where white, the content kept where black, soft edges blend",
            metavar="PATH",
        ),
        Control(
            "image",
            PATH,
            ("style", 4),
            "A greyscale content mask: stylized where white, the content kept where black, soft edges blend.",
            {
                "label": "Content mask (white: stylize, black: keep the content)",
                **UPLOAD,
                "image_mode": "L",
                "height": 140,
                "elem_id": "mask",
            },
            optional=True,
        ),
    ),
    Setting(
        "style_masks",
        Flag(
            "one greyscale mask per style image: each style is matched in its own region",
            nargs="+",
            metavar="PATH",
            spelling="--style-mask",
        ),
        Control(
            "file",
            PATHS,
            ("style", 5),
            "One greyscale mask per style image, in order: each style is applied in its own region.",
            {
                "label": "Style masks: one per style image, in the same order (where each style goes)",
                **IMAGE_FILES,
                "elem_id": "style-masks",
            },
            optional=True,
        ),
    ),
    Setting(
        "ema",
        Flag("average the iterates with this decay (e.g. 0.9); the output is the average", type=float, metavar="DECAY"),
    ),
    Setting("padding", Flag("first conv's padding: replicate reduces dark/bright edge artefacts", choices=PADDINGS)),
    Setting(
        "scale_spacing",
        Flag(
            "ratio between coarse-to-fine sizes: 2 (halving) or sqrt2 (more, gentler steps)",
            choices=tuple(SCALE_SPACINGS),
        ),
    ),
    Setting(
        "min_size",
        Flag("coarse-to-fine from this longer side up to --size (instead of --scales)", type=int, metavar="PX"),
    ),
    Setting(
        "time_budget",
        Flag(
            "finish within this many seconds (from when the network and images are loaded): the optimiser, "
            "coarse-to-fine scales and iterations are planned to fit from a measured throughput and a table of "
            "measured time-to-quality; the plan and its expected quality are printed first",
            type=float,
            metavar="SECONDS",
        ),
        Control(
            "number",
            NUMBER,
            ("settings", 2),
            "Seconds each of the two pictures may take, 0 to 600 (0: run the iterations instead); the optimiser "
            "and coarse-to-fine scales are planned to fit, so the pruned network gets more iterations in the time.",
            {"label": "Time per picture (s; 0: use the iterations)", "elem_id": "time-budget"},
            default=0.0,
            optional=True,
            noun="time per picture",
            bounds=(0.0, 600.0),
            config=_time_budget,
        ),
    ),
    Setting(
        "lr_decay",
        Flag(
            "Adam's learning rate falls to this fraction of --lr over each scale (half a cosine), e.g. 0.1",
            type=float,
            metavar="FRACTION",
        ),
    ),
    Setting(
        "pyramid_levels",
        Flag(
            "optimise a Laplacian pyramid of N levels (each half the size of the next) instead of the pixels, "
            "with Adam: coarse structure moves as fast as fine detail",
            type=int,
            metavar="N",
        ),
    ),
    Setting(
        "scale_split",
        Flag(
            "how coarse-to-fine shares --iterations: as many per scale, or as much time per scale "
            "(most iterations at the cheap coarse sizes)",
            choices=SCALE_SPLITS,
        ),
    ),
)

SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}
#: What `nst stylize` offers, in --help's order.
CLI_SETTINGS = tuple(setting for setting in SETTINGS if setting.cli)
#: The /compare endpoint's parameters (and the app's input widgets), in the API's order.
APP_PARAMETERS = tuple(setting for setting in SETTINGS if setting.app)
#: The person's settings of a comparison: the fields of CompareSettings.
APP_SETTINGS = tuple(setting for setting in APP_PARAMETERS if setting.app and setting.app.setting)
