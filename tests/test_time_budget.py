"""`--time-budget`: the schedule chosen from the measured table, each scale's share of the time, the deadline kept.

Seeded random weights: what is checked is the planning and the clock, not the picture (the table's
quality numbers come from bench/bench_time_budget.py on the trained VGG-16). No test asserts how fast
anything is: they check which iterations the loop *started* relative to the deadline it computed,
which follows from its rule whatever the machine's speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nst_core.cli import main
from nst_core.core.errors import UserError
from nst_core.nst.stylize import (
    Schedule,
    StylizeConfig,
    load_run_inputs,
    load_schedules,
    plan_time_budget,
    prepare_run,
    stylize,
)
from nst_core.nst.stylize.config import split_by_pixels
from nst_core.nst.stylize.time_budget import TABLE

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

FAST_EARLY = Schedule("fast early", "adam", None, ((10.0, 2.0), (100.0, 1.5)))
SLOW_EARLY = Schedule("slow early", "lbfgs", 0.25, ((10.0, 4.0), (100.0, 1.1)))


def test_the_expected_ratio_interpolates_the_measured_curve_and_stays_flat_beyond_it():
    assert FAST_EARLY.expected_ratio(10) == pytest.approx(2.0)
    assert FAST_EARLY.expected_ratio(100) == pytest.approx(1.5)
    middle = FAST_EARLY.expected_ratio(31.6)  # log-midpoint: the geometric mean of the two ratios
    assert middle == pytest.approx((2.0 * 1.5) ** 0.5, rel=1e-3)
    assert FAST_EARLY.expected_ratio(1) == 2.0 and FAST_EARLY.expected_ratio(1e4) == 1.5


def test_the_plan_takes_the_schedule_best_at_that_budget():
    """Two schedules whose curves cross: a short budget goes to one, a long budget to the other."""
    config = StylizeConfig(size=256, time_budget=10.0)
    short = plan_time_budget(config, 256, 192, 1.0, 1e9, "relu5_3", "vgg19", (FAST_EARLY, SLOW_EARLY))
    assert short.schedule is FAST_EARLY and short.config.optimizer == "adam" and short.config.min_size is None
    long = plan_time_budget(
        StylizeConfig(size=256, time_budget=90.0), 256, 192, 1.0, 1e9, "relu5_3", "vgg19", (FAST_EARLY, SLOW_EARLY)
    )
    assert long.schedule is SLOW_EARLY and long.config.optimizer == "lbfgs"
    assert long.config.scale_sizes(256, 192)[0] == (64, 48)  # a quarter of the side
    assert long.expected_ratio == pytest.approx(SLOW_EARLY.expected_ratio(90.0))
    assert "lbfgs" in long.describe() or SLOW_EARLY.name in long.describe()


def test_a_palette_start_replaces_only_the_default_start():
    """The plan may start from the palette where the table says it is better, but a start the person
    chose (noise, an image) is kept: such a run plans among the schedules that start from the content."""
    palette = Schedule("palette", "lbfgs", None, ((10.0, 1.2), (100.0, 1.01)), init="palette")
    content = Schedule("content", "lbfgs", None, ((10.0, 3.0), (100.0, 1.1)))
    default = plan_time_budget(
        StylizeConfig(size=256, time_budget=20.0), 256, 192, 1.0, 1e9, "relu5_3", "vgg19", (content, palette)
    )
    assert default.schedule is palette and default.config.init == "palette"
    noise = plan_time_budget(
        StylizeConfig(size=256, time_budget=20.0, init="noise"),
        256,
        192,
        1.0,
        1e9,
        "relu5_3",
        "vgg19",
        (content, palette),
    )
    assert noise.schedule is content and noise.config.init == "noise"
    adam = Schedule("adam", "adam", None, ((10.0, 5.0), (100.0, 2.0)))
    pyramid = StylizeConfig(size=256, time_budget=20.0, pyramid_levels=3)
    plan = plan_time_budget(pyramid, 256, 192, 1.0, 1e9, "relu5_3", "vgg19", (content, palette, adam))
    assert plan.schedule is adam  # a pyramid is optimised with Adam, whatever the table prefers


def test_the_coarsest_scale_is_never_smaller_than_the_deepest_layer_needs():
    tiny = Schedule("tiny", "adam", 0.01, ((1.0, 1.0),))
    plan = plan_time_budget(StylizeConfig(size=256, time_budget=5.0), 256, 128, 0.1, 1e9, "relu5_3", "vgg19", (tiny,))
    assert min(plan.config.scale_sizes(256, 128)[0]) >= 16  # relu5_x needs 16 px


def test_equal_time_shares_give_coarse_scales_most_iterations():
    assert split_by_pixels(21, [1, 4, 16]) == [16, 4, 1]
    assert sum(split_by_pixels(500, [64 * 48, 128 * 96, 256 * 192])) == 500
    config = StylizeConfig(iterations=21, min_size=16, scale_split="time")
    assert config.scale_iterations(config.scale_sizes(64, 48)) == [16, 4, 1]


def test_the_package_table_is_a_measured_one(tmp_path):
    """The table shipped with the package names its provenance and has increasing budgets."""
    tables = json.loads(TABLE.read_text())["tables"]
    assert len(tables) >= 2  # the best schedule changes with the size: more than one size measured
    for table in tables:
        assert "bench_time_budget.py" in table["measured_by"] and table["weights"] and table["content"]
        assert f"--size {table['size']}" in table["measured_by"]
        for schedule in load_schedules(table["size"]):
            budgets = [x for x, _ in schedule.curve]
            assert budgets == sorted(budgets) and len(budgets) >= 3, schedule.name
            assert all(y > 0 for _, y in schedule.curve)


def test_a_budget_shorter_than_one_iteration_per_scale_is_called_so():
    """0.5 s where one full-size iteration is predicted at 1 s: the plan says the run will take longer."""
    schedule = Schedule("one scale", "lbfgs", None, ((1.0, 2.0), (10.0, 1.0), (100.0, 0.5)))

    def plan(seconds: float):
        config = StylizeConfig(size=256, time_budget=seconds)
        return plan_time_budget(config, 256, 192, 1.0, 1e9, "relu5_3", "vgg19", (schedule,))

    assert plan(0.5).least_s == pytest.approx(1.0) and "take longer" in plan(0.5).describe()
    assert "take longer" not in plan(5.0).describe()


def test_a_run_plans_from_the_table_of_the_nearest_size(tmp_path):
    """Two sizes' tables that disagree: a 300 px run follows the 256 px table, a 700 px run the 512 px one."""
    table = {
        "unit": "test",
        "tables": [
            {
                "size": size,
                "schedules": [
                    {
                        "name": f"at {size}",
                        "optimizer": "adam",
                        "min_size_ratio": None,
                        "curve": [[1, 2.0], [10, 1.5], [100, 1.0]],
                    }
                ],
            }
            for size in (256, 512)
        ],
    }
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    assert [s.name for s in load_schedules(300, path)] == ["at 256"]
    assert [s.name for s in load_schedules(700, path)] == ["at 512"]
    assert [s.name for s in load_schedules(362, path)] == ["at 256"]  # just under the geometric middle (362.04)
    assert [s.name for s in load_schedules(363, path)] == ["at 512"]


def test_a_budgeted_run_starts_no_iteration_it_cannot_finish_in_time(random_model, content_image, style_image):
    """Coarse-to-fine on a budget: every scale runs, every iteration after each scale's first started
    before the deadline, and the last ended at most one iteration late."""
    schedule = Schedule("c2f", "adam", 0.25, ((1.0, 1.0),))
    # A first run warms up the kernels for these shapes (seconds on a cold process, none in the app or CLI's
    # steady state); the second is the one checked.
    budget = 4.0
    for seconds in (1.0, budget):
        inputs = load_run_inputs(content_image, [style_image], StylizeConfig(size=64, time_budget=seconds))
        prepared = prepare_run(random_model, inputs, (schedule,))
        if seconds < budget:
            stylize(prepared)
    plan = prepared.time_plan
    assert plan is not None and prepared.plan.sizes == [(32, 24), (64, 48)]  # 16 px would be too small
    result = stylize(prepared)  # its clock starts when the plan was made: history's "elapsed" counts from there
    by_scale = [[h for h in result.history if h["scale"] == s] for s in range(2)]
    assert all(by_scale), "every scale runs"
    durations = [b["elapsed"] - a["elapsed"] for a, b in zip(result.history, result.history[1:])]
    longest = max(durations)
    for scale, rows in enumerate(by_scale):
        for previous in rows[:-1]:
            # the next one started when this one ended: before the deadline, by the loop's rule
            assert previous["elapsed"] < budget, (scale, previous["iteration"])
    assert result.history[-1]["elapsed"] <= budget + longest


def test_the_cli_prints_the_plan_and_refuses_a_bad_budget(tmp_path, capsys):
    out = tmp_path / "out.png"
    pair = [str(EXAMPLES / "content" / "lakeside.jpg"), str(EXAMPLES / "style" / "swirls.jpg")]
    code = main(["stylize", *pair, "-o", str(out), "--weights", "random:0", "--size", "64", "--time-budget", "3"])
    captured = capsys.readouterr()
    assert code == 0 and out.is_file(), captured.err
    assert "plan: time budget 3 s" in captured.err and "expected judged loss" in captured.err
    assert "of the 3 s budget" in captured.out
    code = main(["stylize", *pair, "-o", str(out), "--weights", "random:0", "--time-budget", "0"])
    err = capsys.readouterr().err
    assert code != 0 and "time budget must be between 0.1 and 86400 seconds" in err and "Traceback" not in err
    with pytest.raises(UserError, match="time budget"):
        StylizeConfig(time_budget=float("nan")).validate()
