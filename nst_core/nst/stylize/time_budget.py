"""A stylization planned to a wall-clock budget (``--time-budget SECONDS``).

The budget is spent, not guessed: the loop gives every coarse-to-fine scale its share of the time
left when that scale starts (equal shares, or a larger one for the finest scale), and stops a scale
when one more iteration (a quarter longer than its last) would overrun the share, so a run ends
inside its budget, late only when an iteration is much slower than the one before it. What is
planned beforehand is the *schedule* (optimiser, coarsest scale, the finest scale's share) and the
quality to expect, both from a table measured by ``bench/bench_time_budget.py`` on trained weights
(``time_to_quality.json`` beside this module, one table per measured output size; a run uses the
table of the nearest size, as the best schedule changes with size): for each schedule, the judged
loss its runs reached, relative to the dense 500-iteration Adam reference, against the budget
expressed in *full-size iterations*: the budget divided by the predicted seconds of one iteration
at the output size (conv MACs over a measured throughput). That unit carries over between machines
and sizes; the expected quality is the table's, interpolated, so it is an estimate for this content
and style.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from nst_core.model.layers import convs_up_to, min_input_side
from nst_core.nst.cost import iteration_macs
from nst_core.nst.stylize.config import StylizeConfig

TABLE = Path(__file__).with_name("time_to_quality.json")


@dataclass(frozen=True)
class Schedule:
    """One way to spend a budget: an optimiser, single-scale or coarse-to-fine (halving, equal time per scale)."""

    name: str
    optimizer: str
    min_size_ratio: float | None  # coarsest scale's side over the output's; None: one scale
    #: (budget in full-size iterations, judged loss / the 500-iteration reference's), budgets increasing
    curve: tuple[tuple[float, float], ...]
    final_share: float | None = None  # the finest scale's share of the time; None: every scale an equal share
    init: str = "content"  # the start: "content", or "palette" (the content in the styles' colours)

    def time_weights(self, scales: int) -> list[float]:
        """Relative time of each scale, coarse to fine.

        >>> Schedule("s", "lbfgs", 0.25, ((1.0, 1.0),), final_share=0.5).time_weights(3)
        [1.0, 1.0, 2.0]
        """
        if self.final_share is None or scales == 1:
            return [1.0] * scales
        return [1.0] * (scales - 1) + [self.final_share * (scales - 1) / (1 - self.final_share)]

    def expected_ratio(self, full_iterations: float) -> float:
        """The judged-loss ratio the table gives at this budget (log-linear between points, flat beyond them)."""
        points = self.curve
        if full_iterations <= points[0][0]:
            return points[0][1]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if full_iterations <= x1:
                t = (math.log(full_iterations) - math.log(x0)) / (math.log(x1) - math.log(x0))
                return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
        return points[-1][1]

    def usable(self, config: StylizeConfig) -> bool:
        """Whether a run of ``config`` may take this schedule: one that starts from the palette replaces
        only the default start (the content), not a start the person chose (noise, an image); a pyramid
        (``pyramid_levels``) is optimised with Adam only."""
        if config.pyramid_levels > 1 and self.optimizer != "adam":
            return False
        return self.init == "content" or config.init in ("content", self.init)

    def apply(self, config: StylizeConfig, width: int, height: int, need: int) -> StylizeConfig:
        """``config`` with this schedule's optimiser, start and scales (the coarsest no smaller than ``need`` px)."""
        init = self.init if self.init != "content" else config.init
        planned = replace(config, optimizer=self.optimizer, lr=None, scales=1, min_size=None, init=init)
        if self.min_size_ratio is None:
            return planned
        side = max(width, height)
        min_size = max(round(side * self.min_size_ratio), math.ceil(need * side / min(width, height)))
        if min_size >= side:
            return planned
        return replace(planned, min_size=min_size, scale_spacing="2")


@dataclass(frozen=True)
class TimePlan:
    """The chosen schedule, the config that runs it, and what it is expected to reach."""

    config: StylizeConfig  # with the schedule's optimiser and scales, and the estimated iterations
    schedule: Schedule
    full_iteration_s: float  # predicted seconds of one iteration at the output size
    macs_per_second: float  # the throughput measured for it (the CLI's printed plan reuses it)
    expected_ratio: float  # judged loss / the dense 500-iteration Adam reference's, from the table
    started: float  # perf_counter when the budget's clock started
    least_s: float = 0.0  # predicted seconds of the least a run does: one iteration at every scale

    @property
    def full_iterations(self) -> float:
        """The budget in full-size iterations (the table's unit)."""
        return float(self.config.time_budget or 0.0) / self.full_iteration_s

    @property
    def deadline(self) -> float:
        """perf_counter time by which the run ends."""
        return self.started + float(self.config.time_budget or 0.0)

    def describe(self) -> str:
        """One line: budget, schedule, iterations, expected quality."""
        budget = float(self.config.time_budget or 0.0)
        text = (
            f"time budget {budget:g} s = {self.full_iterations:.0f} full-size iterations "
            f"({self.full_iteration_s:.2f} s each, predicted): {self.schedule.name}, about "
            f"{self.config.iterations} iterations; expected judged loss {self.expected_ratio:.2f}x "
            "that of 500 Adam iterations"
        )
        if budget < self.least_s:
            text += (
                f"; the budget is shorter than one iteration at each scale (about {self.least_s:.1f} s), "
                "so the run will take longer: give more time or a smaller --size"
            )
        return text


def load_schedules(side: int, path: Path = TABLE) -> tuple[Schedule, ...]:
    """The schedules measured at the output size nearest ``side`` (longer side, px; nearest by ratio).

    ``bench/bench_time_budget.py table --write-table`` writes the file, one table per size.
    """
    tables = _tables(path)
    nearest = min(tables, key=lambda table: abs(math.log(table["size"] / side)))
    return tuple(
        Schedule(
            name=row["name"],
            optimizer=row["optimizer"],
            min_size_ratio=row["min_size_ratio"],
            curve=tuple((float(x), float(y)) for x, y in row["curve"]),
            final_share=row.get("final_share"),
            init=row.get("init", "content"),
        )
        for row in nearest["schedules"]
    )


@cache
def _tables(path: Path) -> list[dict]:
    return json.loads(path.read_text())["tables"]


def full_iteration_seconds(
    widths: dict[str, int], last_layer: str, arch: str, width: int, height: int, macs_per_second: float
) -> float:
    """Predicted seconds of one iteration at ``width`` x ``height``: the step's conv MACs over a measured rate."""
    used = {name: widths[name] for name in convs_up_to(last_layer, arch)}
    return iteration_macs(used, height, width, arch) / macs_per_second


def plan_time_budget(
    config: StylizeConfig,
    width: int,
    height: int,
    full_iteration_s: float,
    macs_per_second: float,
    last_layer: str,
    arch: str,
    schedules: tuple[Schedule, ...] | None = None,
    started: float | None = None,
) -> TimePlan:
    """The schedule with the lowest expected judged loss at this budget, applied to ``config``.

    ``config.iterations`` becomes the schedule's estimated iteration count (for progress bars; the loop
    stops on time, not on the count).
    """
    budget = float(config.time_budget or 0.0)  # validated with the config: 0.1 s to a day
    schedules = schedules or load_schedules(max(width, height))
    full = budget / full_iteration_s
    best = min((s for s in schedules if s.usable(config)), key=lambda s: s.expected_ratio(full))
    planned = best.apply(config, width, height, min_input_side(last_layer, arch))
    sizes = planned.scale_sizes(width, height)
    weights = best.time_weights(len(sizes))
    least = sum(full_iteration_s * w * h / (width * height) for w, h in sizes)
    estimate = sum(
        max(1, int(budget * weight / sum(weights) / (full_iteration_s * w * h / (width * height))))
        for weight, (w, h) in zip(weights, sizes)
    )
    planned = replace(planned, iterations=max(1, min(estimate, 100_000)))
    return TimePlan(
        planned,
        best,
        full_iteration_s,
        macs_per_second,
        best.expected_ratio(full),
        time.perf_counter() if started is None else started,
        least,
    )
