"""`nst stylize` end to end as a user runs it: a subprocess, real files, exit codes."""

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # every test starts `nst` in a subprocess

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def nst(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nst_core.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_stylize_writes_a_png_and_previews(tmp_path):
    out = tmp_path / "out.png"
    log = tmp_path / "log.json"
    proc = nst(
        "stylize",
        str(EXAMPLES / "content" / "lakeside.jpg"),
        str(EXAMPLES / "style" / "swirls.jpg"),
        "-o",
        str(out),
        "--weights",
        "random",
        "--size",
        "64",
        "--iterations",
        "4",
        "--save-every",
        "2",
        "--log-json",
        str(log),
    )
    assert proc.returncode == 0, proc.stderr
    assert "random" in proc.stderr and "meaningless" in proc.stderr  # never silent about random weights
    image = Image.open(out)
    assert image.format == "PNG" and max(image.size) == 64
    assert sorted(p.name for p in tmp_path.glob("out.iter*.png")) == ["out.iter00002.png", "out.iter00004.png"]
    assert '"history"' in log.read_text()


def test_bad_image_exits_nonzero_with_one_line(tmp_path):
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is not a picture")
    proc = nst(
        "stylize",
        str(bogus),
        str(EXAMPLES / "style" / "swirls.jpg"),
        "-o",
        str(tmp_path / "o.png"),
        "--weights",
        "random",
        "--size",
        "64",
        "--iterations",
        "1",
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("nst: error:")]
    assert len(lines) == 1 and "notes.jpg" in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_settings_exit_nonzero(tmp_path):
    content, style = str(EXAMPLES / "content" / "village.jpg"), str(EXAMPLES / "style" / "cubist.jpg")
    proc = nst("stylize", content, style, "-o", str(tmp_path / "o.gif"), "--weights", "random")
    assert proc.returncode == 2 and "must end in .png" in proc.stderr
    proc = nst("stylize", content, style, "-o", str(tmp_path / "o.png"), "--weights", "random", "--iterations", "0")
    assert proc.returncode == 2 and "iterations must be between" in proc.stderr


def test_help_explains_flags():
    proc = nst("stylize", "--help")
    assert proc.returncode == 0
    for flag in (
        "--weights",
        "--preset",
        "--preserve-color",
        "--scales",
        "--save-every",
        "--style-blend",
        "--optimizer",
        "--style-scale",
        "--style-size",
        "--init",
        "--content-layers",
        "--style-layers",
        "--color",
        "--mask",
        "--style-mask",
        "--style-loss",
        "--ema",
        "--padding",
        "--scale-spacing",
        "--min-size",
    ):
        assert flag in proc.stdout


def test_help_shows_each_default_once_and_every_flag_explained():
    """No "(default: None)", no default said twice, no flag without a help text."""
    import argparse

    from nst_core.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    for parser in parsers(build_parser()):
        text = " ".join(parser.format_help().split())  # argparse wraps lines; join them back
        assert "(default: None)" not in text and "(default: False)" not in text, parser.prog
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"{parser.prog} {action.option_strings[0]} has no help text"
                help_text = parser._get_formatter()._expand_help(action)
                assert help_text.count("(default") <= 1, f"{parser.prog} {action.option_strings[0]}: {help_text}"
    stylize_help = " ".join(nst("stylize", "--help").stdout.split())
    convert_help = " ".join(nst("weights", "convert", "--help").stdout.split())
    assert "(default: caffe)" in convert_help and "(default: fp32)" in convert_help  # defaults shown, once
    assert (
        "(default: 10 Adam, 1 L-BFGS)" in stylize_help
        and "--seed SEED random seed (noise init); same seed + settings = same image (default: 0)" in stylize_help
    )


def offline_env(tmp_path):
    """No network and nothing cached: loading the default (caffe) weights would fail."""
    import os

    return {**os.environ, "NST_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch")}


def nst_env(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "nst_core.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_inputs_and_outputs_are_checked_before_the_weights(tmp_path):
    """Offline with default weights, a typo in any input or output is what the person is told about."""
    env, style = offline_env(tmp_path), str(EXAMPLES / "style" / "swirls.jpg")
    content = str(EXAMPLES / "content" / "lakeside.jpg")
    folder = tmp_path / "a_folder.png"
    folder.mkdir()
    cases = [
        (["stylize", str(tmp_path / "lakesid.jpg"), style, "-o", str(tmp_path / "o.png")], "lakesid.jpg"),
        (["stylize", content, str(tmp_path / "swirl.jpg"), "-o", str(tmp_path / "o.png")], "swirl.jpg"),
        (["stylize", content, style, "-o", str(folder)], "is a folder"),
        (["stylize", content, style, "-o", str(tmp_path / "missing" / "o.png")], "does not exist"),
        (["stylize", content, style, "-o", str(tmp_path / "o.png"), "--log-json", str(tmp_path)], "--log-json"),
        (["stylize", content, style, "-o", "/proc/o.png"], "not writable"),
        (["prune", "--profile", "seed", "--save", "/proc/x.safetensors"], "not writable"),
    ]
    for args, expected in cases:
        proc = nst_env(env, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr and "weights" not in proc.stderr.lower(), (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    # With every input right, the same offline run does reach the weights and says so.
    proc = nst_env(env, "stylize", content, style, "-o", str(tmp_path / "o.png"))
    assert proc.returncode == 2 and "offline" in proc.stderr


def test_missing_gpu_is_one_line_and_exit_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        return  # a GPU is there: --device cuda is right on this machine
    content, style = str(EXAMPLES / "content" / "lakeside.jpg"), str(EXAMPLES / "style" / "swirls.jpg")
    for device, expected in (("cuda", "no CUDA GPU is available"), ("gpu", "a GPU is 'cuda'")):
        proc = nst("stylize", content, style, "-o", str(tmp_path / "o.png"), "--weights", "random", "--device", device)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_controls_from_the_command_line(tmp_path):
    """Masks, layers, colour, style scale and init through the real CLI, on a shallow trunk at 48 px."""
    import numpy as np

    content = tmp_path / "content.png"
    Image.open(EXAMPLES / "content" / "lakeside.jpg").convert("RGB").resize((48, 36)).save(content)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.r_[np.zeros(24), np.full(24, 255)].astype(np.uint8), (36, 1)), mode="L").save(mask)
    out = tmp_path / "out.png"
    shallow = [
        "--weights",
        "random",
        "--size",
        "48",
        "--iterations",
        "2",
        "--content-layers",
        "relu2_1",
        "--style-layers",
        "relu1_1:0.5,relu2_1",
    ]
    proc = nst(
        "stylize",
        str(content),
        str(EXAMPLES / "style" / "swirls.jpg"),
        "-o",
        str(out),
        *shallow,
        "--mask",
        str(mask),
        "--init",
        "noise",
        "--color",
        "histogram",
        "--style-scale",
        "0.5",
        "--ema",
        "0.5",
        "--padding",
        "replicate",
        "--style-loss",
        "meancov",
    )
    assert proc.returncode == 0, proc.stderr
    result = np.asarray(Image.open(out), dtype=np.float64)
    original = np.asarray(Image.open(content), dtype=np.float64)
    assert np.abs(result[:, :24] - original[:, :24]).max() <= 1  # black half: the content
    assert np.abs(result[:, 24:] - original[:, 24:]).mean() > 10  # white half: from noise, stylized
    refined = tmp_path / "refined.png"
    proc = nst(
        "stylize",
        str(content),
        str(EXAMPLES / "style" / "swirls.jpg"),
        "-o",
        str(refined),
        *shallow,
        "--init",
        str(out),
        "--lr",
        "0.0001",
        "--iterations",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        np.abs(np.asarray(Image.open(refined), dtype=np.float64) - result).max() <= 1
    )  # it started from the earlier result


def test_bad_controls_are_one_line_errors(tmp_path):
    content, style = str(EXAMPLES / "content" / "lakeside.jpg"), str(EXAMPLES / "style" / "swirls.jpg")
    cases = [
        (["--style-layers", "relu3_1:0.5,relu9_9"], "style layers: unknown VGG-19 layer 'relu9_9'"),
        (["--style-mask", str(tmp_path / "nope.png")], "style mask 1"),
        (["--style-mask", content, content], "2 style masks given for 1 style images"),
        (["--ema", "2"], "ema decay must be between 0 and 1"),
        (["--scale-spacing", "sqrt2"], "scale spacing needs several scales"),
        (["--style-size", "64", "--style-scale", "2"], "style size and style scale"),
    ]
    for extra, expected in cases:
        proc = nst(
            "stylize",
            content,
            style,
            "-o",
            str(tmp_path / "o.png"),
            "--weights",
            "random",
            "--size",
            "48",
            "--iterations",
            "1",
            "--content-layers",
            "relu2_1",
            "--style-layers",
            "relu1_1",
            *extra,
        )
        assert proc.returncode == 2 and expected in proc.stderr, (extra, proc.stderr)
        assert (
            len(proc.stderr.strip().splitlines()) <= 2 and "Traceback" not in proc.stderr
        )  # the random-weights warning may precede it


def test_the_plan_printed_is_the_plan_run(tmp_path, monkeypatch, capsys):
    """The memory in use is read once, when the run is prepared: the plan printed is the plan the loop runs,
    although the process holds more afterwards (a second reading would refuse the budget outright)."""
    from nst_core.cli import main
    from nst_core.cli import stylize as cli_stylize
    from nst_core.nst.stylize import planning

    readings: list[int] = []

    def memory_in_use(device):
        readings.append(0 if not readings else 10**12)  # then more than any budget below
        return readings[-1]

    monkeypatch.setattr(planning, "memory_in_use", memory_in_use)
    run = {}
    real_stylize = cli_stylize.stylize

    def spy(prepared, *, callback, cancel):
        run["plan"], run["tiled_scales"] = prepared.plan, set()

        def report(progress):
            if progress.tile:
                run["tiled_scales"].add(progress.scale)
            callback(progress)

        return real_stylize(prepared, callback=report, cancel=cancel)

    monkeypatch.setattr(cli_stylize, "stylize", spy)
    content = tmp_path / "content.png"
    Image.open(EXAMPLES / "content" / "lakeside.jpg").convert("RGB").resize((64, 48)).save(content)
    shallow = ["--content-layers", "relu2_1", "--style-layers", "relu1_2,relu2_2", "--scales", "2"]
    for flags, plan in (
        (["--max-memory", "8GB"], "plan: 32x24 whole, 64x48 whole"),
        (["--tile", "32"], "plan: 32x24 whole, 64x48 in 12 tiles of 32 px (halo 8 px)"),
    ):
        readings.clear()
        args = [str(content), str(EXAMPLES / "style" / "swirls.jpg"), "-o", str(tmp_path / "o.png")]
        code = main(["stylize", *args, "--weights", "random:0", "--size", "64", "--iterations", "2", *shallow, *flags])
        err = capsys.readouterr().err
        assert code == 0, err
        assert readings == [0]  # read once, in prepare
        assert [line for line in err.splitlines() if line.startswith("plan: ")] == [plan]
        assert plan == f"plan: {run['plan'].describe('relu2_2')}"  # what was printed is what the loop was given
        assert run["tiled_scales"] == {k for k, tile in enumerate(run["plan"].tiles) if tile is not None}
