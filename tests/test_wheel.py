"""The project as a user installs it: a wheel in a fresh virtual environment pushes and pulls.

`pip wheel . --no-deps` builds the wheel (from a copy of the project's pyproject.toml, setup.py,
README.md, nst_core/ and hub_cards/, so no build output lands in the checkout; offline, so with the build backend
already installed: --no-build-isolation). A fresh venv gets the wheel alone; its heavy
dependencies (torch, huggingface_hub, ...) come from this interpreter's site-packages through a
.pth line, which puts the folder on sys.path without running its .pth files, so the editable
install of the checkout there stays invisible. The push and pull go to the stand-in Hub
(tests/support/hub_server.py) with the real client, Xet off so LFS carries the checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from nst_core.compress.pruning import prune_fine
from nst_core.model.checkpoint import save_checkpoint
from nst_core.model.weights import load_vgg

from support.hub_server import HubServer

pytestmark = pytest.mark.slow  # builds a wheel and installs it into a fresh virtual environment

ROOT = Path(__file__).resolve().parent.parent
DUMMY_TOKEN = "hf_DummyTokenForTheLocalHub0123456789"
REPO = "tester/wheel-net"


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{cmd[:4]} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel built from this project; returns its bin/ folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    for folder in ("nst_core", "hub_cards"):  # setup.py ships the top-level hub_cards/ as nst_core.hub_cards
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp / "dist"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(dist),
        ]
    )
    (wheel,) = dist.glob("nst_core-*.whl")
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).strip()
    Path(purelib, "deps-from-test-interpreter.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    return env_dir / "bin"


def test_the_wheel_ships_the_card_template(installed):
    code = "import nst_core.model.hub.card as h; print(h.__file__); print(h.TEMPLATE_PATH.is_file())"
    where, exists = run([str(installed / "python"), "-c", code], env=_clean_env(), cwd=installed).split()
    assert Path(where).is_relative_to(installed.parent), f"imported {where}, not the wheel's copy"
    assert exists == "True"


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "PYTHON"))}
    return {**env, **extra}


def test_an_installed_wheel_pushes_and_pulls(installed, tmp_path):
    path = save_checkpoint(prune_fine(load_vgg("random:12", last_layer="relu2_1"), 0.5), tmp_path / "w.safetensors")
    with HubServer() as server:
        env = _clean_env(
            HF_ENDPOINT=server.endpoint,
            HF_TOKEN=DUMMY_TOKEN,
            HF_HOME=str(tmp_path / "hf_home"),
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        pushed = run([str(installed / "nst"), "push", REPO, str(path)], env=env, cwd=tmp_path)
        pulled = run([str(installed / "nst"), "pull", REPO, "--check"], env=env, cwd=tmp_path)
        code = (
            "import json\nfrom nst_core.model.vgg import VGGFeatures\n"
            f"m = VGGFeatures.from_pretrained({REPO!r})\n"
            "print(json.dumps([m.last_layer, sorted(m.masks)]))\n"
        )
        loaded = json.loads(run([str(installed / "python"), "-c", code], env=env, cwd=tmp_path).splitlines()[-1])
        files = server.hub.repos[("model", REPO)].resolve("main").files
        ops = {p: key for repo, p, key in server.hub.commit_ops if repo == REPO}
        config_requests = [
            p for _, p in server.hub.requests if p.startswith(f"/{REPO}/resolve/") and p.endswith("/config.json")
        ]
    assert "commit " in pushed
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "w.safetensors"]
    assert files["w.safetensors"] == path.read_bytes() and ops["w.safetensors"] == "lfsFile"
    card = ModelCard(files["README.md"].decode())
    assert card.data.pipeline_tag == "image-feature-extraction" and "| conv2_1 |" in card.text
    assert "loaded 3 convs up to relu2_1; masks: 3" in pulled
    assert loaded == ["relu2_1", ["conv1_1", "conv1_2", "conv2_1"]]
    assert len(config_requests) >= 2  # nst pull and from_pretrained each asked for it
