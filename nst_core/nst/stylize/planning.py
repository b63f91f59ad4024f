"""Preparing a run: inputs loaded, the network checked, and the plan (scales, tiles, memory) made once.

:func:`prepare` returns a :class:`PreparedRun`; ``stylize(prepared)`` runs exactly its plan, so
what a caller prints from ``prepared.plan`` is what runs. The memory in use is read once, here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from nst_core.core.errors import UserError
from nst_core.image.io import ImageSource
from nst_core.model.layers import get_architecture, min_input_side
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import LossPreset
from nst_core.nst.memory import SAFETY, memory_in_use
from nst_core.nst.network import FeatureNetwork, PaddedNetwork, device_of
from nst_core.nst.stylize.config import StylizeConfig
from nst_core.nst.stylize.inputs import RunInputs, load_run_inputs
from nst_core.nst.stylize.time_budget import Schedule, TimePlan, full_iteration_seconds, plan_time_budget
from nst_core.nst.tiling import TilePlan, measure_macs_per_second, plan_tiles


@dataclass(frozen=True)
class PreparedRun:
    """Everything a run needs, decided before it starts: inputs, the network as the losses call it, the plan."""

    inputs: RunInputs
    model: VGGFeatures  # the network as given
    network: FeatureNetwork  # as the losses call it: ``model``, with the first conv's padding if one is asked
    plan: TilePlan  # the scales, and which of them run in tiles of which side
    memory_held: int  # bytes the process (or GPU) held when the plan was made; the budget is what remains
    time_plan: TimePlan | None = None  # with ``time_budget``: the schedule chosen and the quality expected

    @property
    def config(self) -> StylizeConfig:
        """The validated config (a copy of the caller's)."""
        return self.inputs.config

    @property
    def preset(self) -> LossPreset:
        """The loss preset with the config's layer and style-loss choices."""
        return self.inputs.preset

    @property
    def device(self) -> torch.device:
        """Where the network, and so the run, lives."""
        return device_of(self.model)

    def describe(self) -> str:
        """The plan in one line: each scale's size, whole or in how many tiles."""
        return self.plan.describe(self.preset.last_layer)


def prepare(
    model: VGGFeatures, content: ImageSource, styles: Sequence[ImageSource], config: StylizeConfig | None = None
) -> PreparedRun:
    """Validate ``config``, load the images and plan the run of ``model`` on them: ``stylize(prepare(...))``.

    >>> from nst_core.model.weights import load_vgg
    >>> from nst_core.nst.stylize import stylize
    >>> model = load_vgg("random:0", last_layer="relu5_3")              # doctest: +SKIP
    >>> prepared = prepare(model, "examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
    ...                    StylizeConfig(size=64, iterations=5))        # doctest: +SKIP
    >>> prepared.describe()                                             # doctest: +SKIP
    '64x48 whole'
    >>> stylize(prepared).image.size                                    # doctest: +SKIP
    (64, 48)
    """
    return prepare_run(model, load_run_inputs(content, styles, config))


def prepare_run(model: VGGFeatures, inputs: RunInputs, schedules: tuple[Schedule, ...] | None = None) -> PreparedRun:
    """Plan the run of ``model`` on inputs already loaded (the CLI loads them before the network, and the
    comparison runs two networks on one set): the network checked, memory read once, scales and tiles;
    with a time budget, the schedule (among ``schedules``, default the measured table's)."""
    config, preset = inputs.config, inputs.preset
    preset.check_architecture(model.arch)  # "unknown VGG-16 layer 'relu5_4'" before any work
    architecture = get_architecture(model.arch)
    if architecture.layer_index(model.last_layer) < architecture.layer_index(preset.last_layer):
        raise UserError(f"the network stops at {model.last_layer} but preset {preset.name!r} needs {preset.last_layer}")
    time_plan = None
    if config.time_budget is not None:
        time_plan = _plan_time(model, inputs, schedules)
        inputs = replace(inputs, config=time_plan.config)
        config = inputs.config
    held = memory_in_use(device_of(model))
    plan = _plan(model, config, preset, held, *inputs.images.content.size)
    _check_sizes(inputs, plan, model.arch)
    network: FeatureNetwork = model if config.padding == "zeros" else PaddedNetwork(model, config.padding)
    return PreparedRun(inputs, model, network, plan, held, time_plan)


def _plan_time(model: VGGFeatures, inputs: RunInputs, schedules: tuple[Schedule, ...] | None) -> TimePlan:
    """The schedule for the config's time budget, from this machine's measured throughput (the clock starts here)."""
    started = time.perf_counter()
    rate = measure_macs_per_second(model, inputs.preset, inputs.config.precision)
    width, height = inputs.images.content.size
    seconds = full_iteration_seconds(model.widths, inputs.preset.last_layer, model.arch, width, height, rate)
    return plan_time_budget(
        inputs.config, width, height, seconds, rate, inputs.preset.last_layer, model.arch, schedules, started
    )


def _plan(
    model: FeatureNetwork, config: StylizeConfig, preset: LossPreset, held: int, width: int, height: int
) -> TilePlan:
    """The scales of a run for an output of ``width`` x ``height`` and which of them are tiled (with
    ``max_memory``: what fits next to the ``held`` bytes the process or GPU already holds; with ``tile``: forced)."""
    budget = None
    if config.max_memory is not None:
        # What the run may add, less a margin for the memory model's error.
        budget = int(SAFETY * (config.max_memory - held))
        if budget <= 0:
            raise UserError(
                f"max memory {config.max_memory / 1e9:.2f} GB is less than this process already holds "
                f"({held / 1e9:.2f} GB with the network loaded)"
            )
    sizes = config.scale_sizes(width, height)
    return plan_tiles(model.widths, preset.layers, sizes, config.precision, budget, config.tile, model.arch)


def _check_sizes(inputs: RunInputs, plan: TilePlan, arch: str) -> None:
    """A UserError when the coarsest scale, or the style images at it, are too small for the deepest layer."""
    sizes, last = plan.sizes, inputs.preset.last_layer
    need = min_input_side(last, arch)
    if min(sizes[0]) < need:
        raise UserError(
            f"image too small: the coarsest scale is {sizes[0][0]}x{sizes[0][1]} px but layer {last} "
            f"needs at least {need} px per side; use a larger --size or fewer --scales"
        )
    side = inputs.images.style_side(max(sizes[0]))
    if side is not None and side < need:
        raise UserError(
            f"style images too small: {side} px at the coarsest scale, but layer {last} needs {need}; "
            "raise --style-scale/--style-size or use fewer scales"
        )
