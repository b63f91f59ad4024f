"""`nst scan plot|select` on a finished scan, and the profile they hand to `nst prune`."""

from __future__ import annotations

import pytest
from PIL import Image

from nst_core.cli import main
from nst_core.compress.pruning import load_profile


@pytest.mark.slow
def test_cli_plot_and_select_on_a_finished_scan(tmp_path, reference, capsys):
    plots = tmp_path / "plots"
    assert main(["scan", "plot", str(reference), "--out", str(plots)]) == 0
    for name in ("curves.png", "heatmap.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(plots / name) as img:
            img.verify()
        with Image.open(plots / name) as img:
            assert img.format == "PNG" and min(img.size) > 200
    profile_path = tmp_path / "profile.json"
    assert main(["scan", "select", str(reference), "--tolerance", "100", "-o", str(profile_path)]) == 0
    profile = load_profile(profile_path)
    assert profile.method == "fine"
    assert profile.sparsity == {"conv1_2": 0.9, "conv3_1": 0.9}  # a huge tolerance accepts every level
    assert main(["prune", "--weights", "random", "--profile", str(profile_path)]) == 0
    assert "conv3_1" in capsys.readouterr().out


def test_a_scan_that_cannot_start_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """Offline with default weights the scan fails at once, and no scan.json litters the folder."""
    from support.tiny_scan import CONTENT, STYLE

    monkeypatch.setenv("NST_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "scan"
    code = main(
        ["scan", "run", "--content", CONTENT, "--style", STYLE, "--out", str(out), "--size", "64", "--iterations", "1"]
    )
    assert code == 2 and "offline" in capsys.readouterr().err
    assert not out.exists()
    # A folder that already held something keeps it.
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert (
        main(
            [
                "scan",
                "run",
                "--content",
                CONTENT,
                "--style",
                STYLE,
                "--out",
                str(out),
                "--size",
                "64",
                "--iterations",
                "1",
            ]
        )
        == 2
    )
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
