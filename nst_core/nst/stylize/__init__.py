"""Style transfer of one image: prepare the run once, then run exactly what was prepared.

>>> from nst_core.model.weights import load_vgg
>>> from nst_core.nst.stylize import StylizeConfig, prepare, stylize
>>> model = load_vgg("random:0", last_layer="relu5_3")                  # doctest: +SKIP
>>> prepared = prepare(model, "examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
...                    StylizeConfig(size=64, iterations=5))            # doctest: +SKIP
>>> stylize(prepared).image.size                                        # doctest: +SKIP
(64, 48)

- ``config``: :class:`StylizeConfig` (everything that decides the image), its validation, the schedule.
- ``inputs``: the content, style, mask and init images loaded once (:func:`load_run_inputs`).
- ``planning``: :func:`prepare` -> :class:`PreparedRun` (inputs, the network checked, the plan of
  scales and tiles, the memory in use read once).
- ``time_budget``: a run planned to a wall-clock budget: the schedule from a measured
  time-to-quality table, each scale's share of the time (:class:`TimePlan`).
- ``evaluators``: the objective of one scale, whole or tiled, seen through the mask.
- ``loop``: :func:`stylize`, the optimisation of the prepared run, with progress and cancel.
"""

from nst_core.nst.stylize.config import (
    COLORS,
    DEFAULT_LR,
    INITS,
    OPTIMIZERS,
    PADDINGS,
    PRECISIONS,
    SCALE_SPACINGS,
    SCALE_SPLITS,
    StylizeConfig,
    parse_layers,
    scale_sizes,
    split_iterations,
)
from nst_core.nst.stylize.evaluators import Evaluator, View, dense_evaluator, targets_at, tiled_evaluator
from nst_core.nst.stylize.inputs import (
    NOISE_MEAN_RGB,
    NOISE_STD,
    PreparedInputs,
    RunInputs,
    initial_image,
    load_mask,
    load_run_inputs,
    mask_at,
    prepare_inputs,
    scale_images,
    style_load_side,
)
from nst_core.nst.stylize.loop import Progress, StylizeResult, stylize
from nst_core.nst.stylize.planning import PreparedRun, prepare, prepare_run
from nst_core.nst.stylize.time_budget import Schedule, TimePlan, load_schedules, plan_time_budget

__all__ = [
    "COLORS",
    "DEFAULT_LR",
    "INITS",
    "NOISE_MEAN_RGB",
    "NOISE_STD",
    "OPTIMIZERS",
    "PADDINGS",
    "PRECISIONS",
    "SCALE_SPACINGS",
    "SCALE_SPLITS",
    "Evaluator",
    "PreparedInputs",
    "PreparedRun",
    "Progress",
    "RunInputs",
    "StylizeConfig",
    "StylizeResult",
    "View",
    "dense_evaluator",
    "initial_image",
    "load_mask",
    "load_run_inputs",
    "mask_at",
    "parse_layers",
    "prepare",
    "prepare_inputs",
    "prepare_run",
    "scale_images",
    "scale_sizes",
    "split_iterations",
    "Schedule",
    "TimePlan",
    "load_schedules",
    "plan_time_budget",
    "stylize",
    "style_load_side",
    "targets_at",
    "tiled_evaluator",
]
