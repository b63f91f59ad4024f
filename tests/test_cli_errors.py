"""Every case of issue 10's list gives one line and a non-zero exit (or loads), through the real `nst` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nst_core import cli
from nst_core.compress.finetune import load_state
from nst_core.core.errors import UserError
from nst_core.model.checkpoint import save_checkpoint
from nst_core.model.weights import load_vgg

from support.formats import safetensors_bytes, split_safetensors

ROOT = Path(__file__).resolve().parents[1]


def nst_error(argv: list[str], capsys, code: int = 2) -> str:
    """Run `nst ARGV` in-process; assert the exit code and a one-line `nst: error:` message, and return it."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("nst: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(load_vgg("random:0", last_layer="relu1_2"), folder / "good.safetensors", encoding="dense")


def edited(tmp_path: Path, good: Path, name: str, metadata_changes=None, entries_edit=None, keep_only=None) -> Path:
    entries, metadata, data = split_safetensors(good.read_bytes())
    if keep_only is not None:
        metadata = {k: v for k, v in metadata.items() if k in keep_only}
    metadata.update(metadata_changes or {})
    if entries_edit:
        entries_edit(entries)
    path = tmp_path / name
    path.write_bytes(safetensors_bytes(entries, metadata, data))
    return path


def test_string_data_offsets(tmp_path, good_checkpoint, capsys):
    def stringify(entries):
        entries["features.0.bias"]["data_offsets"] = ["0", "128"]

    path = edited(tmp_path, good_checkpoint, "offsets.safetensors", entries_edit=stringify)
    for command in (["checkpoint", "info"], ["prune", "--last-layer", "relu1_2", "--sparsity", "0.5", "--weights"]):
        err = nst_error([*command, str(path)], capsys)
        assert str(path) in err and "features.0.bias" in err and "data_offsets" in err


def test_header_with_only_the_format(tmp_path, good_checkpoint, capsys):
    path = edited(tmp_path, good_checkpoint, "bare.safetensors", keep_only={"format", "format_version"})
    err = nst_error(["checkpoint", "info", str(path)], capsys)
    assert str(path) in err and "'encoding' is missing" in err


@pytest.mark.parametrize(
    "width, words", [(-3, "-3"), (0, "it must be in [1, 64]"), (25_000, "25000"), (True, "integer")]
)
def test_absurd_widths(tmp_path, good_checkpoint, capsys, width, words):
    path = edited(
        tmp_path, good_checkpoint, "widths.safetensors", {"widths": json.dumps({"conv1_1": width, "conv1_2": 64})}
    )
    err = nst_error(["checkpoint", "info", str(path)], capsys)
    assert "'widths.conv1_1'" in err and words in err


@pytest.mark.parametrize(
    "value, words",
    [
        ("{not json", ["'preprocessing'", "not valid JSON"]),
        ("[1, 2, 3]", ["expected a JSON object", "preprocessing"]),
        (json.dumps({"name": "x", "bgr": True, "scale": 1.0, "mean": [1, 2, 3]}), ["'preprocessing.std' is missing"]),
        (
            json.dumps({"name": "x", "bgr": True, "scale": 1.0, "mean": [1, 2], "std": [1, 1, 1]}),
            ["'preprocessing.mean' has 2 items, expected 3"],
        ),
        (
            json.dumps({"name": "x", "bgr": True, "scale": 1.0, "mean": [1, 2, 3], "std": [1, 0, 1]}),
            ["'preprocessing.std[1]'", "above 0"],
        ),
        (
            json.dumps({"name": "x", "bgr": 1, "scale": 1.0, "mean": [1, 2, 3], "std": [1, 1, 1]}),
            ["'preprocessing.bgr'", "true or false"],
        ),
    ],
)
def test_bad_preprocessing_in_a_checkpoint_and_in_plain_weights(tmp_path, good_checkpoint, capsys, value, words):
    path = edited(tmp_path, good_checkpoint, "prep.safetensors", {"preprocessing": value})
    err = nst_error(["checkpoint", "info", str(path)], capsys)
    assert str(path) in err and all(w in err for w in words), err
    plain = tmp_path / "plain.safetensors"
    save_file(
        {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)},
        str(plain),
        metadata={"preprocessing": value},
    )
    err = nst_error(["prune", "--weights", str(plain), "--last-layer", "relu1_1", "--sparsity", "0.5"], capsys)
    assert str(plain) in err and all(w in err for w in words), err


def test_plain_weights_with_good_preprocessing_still_load(tmp_path):
    plain = tmp_path / "plain.safetensors"
    prep = {"name": "mine", "bgr": False, "scale": 0.5, "mean": [1, 2, 3], "std": [2, 2, 2]}
    save_file(
        {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)},
        str(plain),
        metadata={"preprocessing": json.dumps(prep)},
    )
    assert load_vgg(str(plain), last_layer="relu1_1").preprocessing.to_dict() == {
        **prep,
        "mean": [1, 2, 3],
        "std": [2, 2, 2],
    }


def test_empty_and_unsafe_weight_files(tmp_path, capsys):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    err = nst_error(["prune", "--weights", str(empty), "--last-layer", "relu1_1", "--sparsity", "0.5"], capsys)
    assert str(empty) in err and "empty" in err

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Evil()}, evil)
    err = nst_error(["prune", "--weights", str(evil), "--last-layer", "relu1_1", "--sparsity", "0.5"], capsys)
    assert str(evil) in err and "refused for safety" in err and "not plain tensors" in err
    assert "weights_only" not in err


def test_empty_or_mistyped_finetune_state(tmp_path):
    state = tmp_path / "state.pt"
    state.write_bytes(b"")
    with pytest.raises(UserError, match="empty.*delete it to start over"):
        load_state(state)
    torch.save({"version": 1, "fingerprint": 7}, state)
    with pytest.raises(UserError, match=r"state.pt: field 'fingerprint' must be a string"):
        load_state(state)
    torch.save({"version": torch.tensor([])}, state)  # found by the fuzz suite: a tensor has no truth value
    with pytest.raises(UserError, match="not a fine-tuning state file"):
        load_state(state)


@pytest.mark.parametrize(
    "profile, words",
    [
        ({"source": "scan"}, ["'source' must be an object"]),
        ({"source": 3}, ["'source' must be an object"]),
        ({"sparsity": {"conv1_1": True}}, ["sparsity of conv1_1", "not True"]),
        ({"sparsity": {"conv1_1": "0.5"}}, ["sparsity of conv1_1", "finite number"]),
        ({"method": ["fine"]}, ["'method' must be a string"]),
    ],
)
def test_bad_profiles(tmp_path, capsys, profile, words):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"format": "nst-profile/1", "method": "fine", "sparsity": {"conv1_1": 0.5}, **profile}))
    err = nst_error(["prune", "--weights", "random:0", "--last-layer", "relu1_2", "--profile", str(path)], capsys)
    assert str(path) in err and all(w in err for w in words), err


def test_scan_json_that_is_a_list(tmp_path, capsys):
    (tmp_path / "scan.json").write_text("[]")
    err = nst_error(["scan", "merge", str(tmp_path)], capsys)
    assert "scan.json" in err and "expected a JSON object" in err


def test_quantised_dtype_with_the_dense_encoding_is_refused_before_weights_load(tmp_path, capsys):
    out = tmp_path / "int8.safetensors"
    err = nst_error(
        [
            "prune",
            "--weights",
            str(tmp_path / "absent.pth"),
            "--sparsity",
            "0.5",
            "--save",
            str(out),
            "--encoding",
            "dense",
            "--dtype",
            "int8",
        ],
        capsys,
    )
    assert "int8 needs the packed encoding" in err and not out.exists()


def test_prune_saves_a_quantised_packed_checkpoint(tmp_path, capsys):
    out = tmp_path / "cb4.safetensors"
    assert (
        cli.main(
            [
                "prune",
                "--weights",
                "random:0",
                "--last-layer",
                "relu2_1",
                "--sparsity",
                "0.5",
                "--save",
                str(out),
                "--dtype",
                "codebook4",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli.main(["checkpoint", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["dtype"], info["encoding"]) == ("codebook4", "packed")


def test_bad_random_seed(capsys):
    err = nst_error(["prune", "--weights", "random:abc", "--last-layer", "relu1_1", "--sparsity", "0.5"], capsys)
    assert "random:abc" in err


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch, capsys, good_checkpoint):
    def broken(path):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli.hub, "read_checkpoint_info", broken)
    err = nst_error(["checkpoint", "info", str(good_checkpoint)], capsys, code=1)
    assert err == "nst: error: RuntimeError: boom (run with --debug for the traceback)"
    for argv in (
        ["--debug", "checkpoint", "info", str(good_checkpoint)],
        ["checkpoint", "info", str(good_checkpoint), "--debug"],
    ):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err

    def disk_error(path):
        raise IsADirectoryError(21, "Is a directory", str(path))

    monkeypatch.setattr(cli.hub, "read_checkpoint_info", disk_error)
    err = nst_error(["checkpoint", "info", str(good_checkpoint)], capsys)
    assert "Is a directory" in err


def run_nst(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NST_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "nst_core.cli", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


@pytest.mark.slow
def test_unknown_flag_gets_the_subcommands_usage_and_a_suggestion():
    proc = run_nst("stylize", "c.png", "s.png", "-o", "out.png", "--iters", "5")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: nst stylize "), proc.stderr
    assert "unrecognized arguments: --iters 5 (did you mean --iterations?)" in proc.stderr


@pytest.mark.slow
def test_one_line_errors_in_a_subprocess(tmp_path, good_checkpoint):
    path = edited(tmp_path, good_checkpoint, "bare.safetensors", keep_only={"format", "format_version"})
    proc = run_nst("checkpoint", "info", str(path))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nst: error: "), proc.stderr


@pytest.mark.slow
def test_a_closed_pipe_is_not_a_traceback(tmp_path, good_checkpoint):
    # A big provenance makes `checkpoint info --json` print far more than a pipe holds.
    path = edited(tmp_path, good_checkpoint, "big.safetensors", {"provenance": json.dumps({"note": "x" * 1_000_000})})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nst_core.cli", "checkpoint", "info", "--json", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(10)  # like `| head -c 10`: read a little, then go away
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == cli.EXIT_BROKEN_PIPE
    assert stderr == "", stderr


class RefusesEveryone(BaseHTTPRequestHandler):
    """A Hub endpoint that answers 401 to everything, as the real Hub does for a gated repo without a token."""

    def _refuse(self, body: bool = True) -> None:
        data = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self._refuse()

    def do_HEAD(self):
        self._refuse(body=False)

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_hub_weights_refused_with_401_are_one_line(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusesEveryone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE", "NST_OFFLINE")}
        env.update(
            PYTHONPATH=str(ROOT),
            HF_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}",
            HF_HOME=str(tmp_path / "hf"),
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "nst_core.cli",
                "prune",
                "--weights",
                "hf:me/gated-vgg",
                "--last-layer",
                "relu1_1",
                "--sparsity",
                "0.5",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nst: error: hf:me/gated-vgg"), proc.stderr
    assert "401" in proc.stderr
