"""Hub push / download / offline load, model cards, weights hosting and the Space push.

The real Hub cannot be reached from CI, so the real huggingface_hub client (our code, and the
`hf` command) talks to ``tests/support/hub_server.py``, a Hub-compatible HTTP server on 127.0.0.1.
Every client step runs in a subprocess with HF_ENDPOINT, a dummy HF_TOKEN and a private HF_HOME:
huggingface_hub reads those when it is imported, and another test module may have imported it
into this process already. ``test_live_hub_round_trip`` runs the same round trip against the
real Hub when HF_TOKEN and NST_LIVE_HUB=1 are set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image

from nst_core.cli import main
from nst_core.compress.pruning import prune_fine, prune_structured
from nst_core.model.checkpoint import read_checkpoint_info, save_checkpoint
from nst_core.model.hub.card import render_model_card
from nst_core.model.vgg import load_checkpoint
from nst_core.model.weight_spec import WeightSpecError, parse_hub_spec
from nst_core.model.weights import WeightsError, load_vgg
from nst_core.nst.stylize import StylizeConfig, prepare, stylize

from support.hub_server import FakeHub, HubServer, Repo, validate_card_yaml
from support.tensor_digest import weights_digest

ROOT = Path(__file__).resolve().parent.parent
HF_BIN = str(Path(sys.executable).with_name("hf"))
NST = [sys.executable, "-c", "import sys; from nst_core.cli import main; sys.exit(main())"]
DUMMY_TOKEN = "hf_DummyTokenForTheLocalHub0123456789"
REPO = "tester/vgg19-seed-pruned"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubServer() as server:
        yield server


@pytest.fixture(scope="module")
def hub_env(hub, tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_TOKEN=DUMMY_TOKEN,
        HF_HOME=str(tmp_path_factory.mktemp("hf_home")),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        # The stand-in speaks LFS, not Xet: with Xet off the real client's LFS upload code runs.
        HF_HUB_DISABLE_XET="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH")])),
    )
    return env


def run(cmd: list[str], env: dict, check: bool = True, cwd: Path = ROOT, **changes) -> subprocess.CompletedProcess:
    env = {**env, **changes}
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{cmd[-6:]} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    assert DUMMY_TOKEN not in result.stdout + result.stderr, "the token was printed"
    return result


def python(code: str, env: dict, **changes) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", code], env, **changes)


# The client subprocesses import the same digest (tests/ is on their PYTHONPATH).
DIGEST_CODE = "import json\nfrom support.tensor_digest import weights_digest\n"


@pytest.fixture(scope="module")
def pushed(hub, hub_env, tmp_path_factory):
    """A fine-pruned checkpoint with metrics and a plot, pushed with `nst push`."""
    folder = tmp_path_factory.mktemp("push")
    model = prune_fine(load_vgg("random:7", last_layer="relu3_1"), "seed")
    model.provenance["scan"] = "scan-64px.json"
    metrics = {"content_ratio": 1.04, "style_ratio": 1.12, "ssim": 0.93}
    path = save_checkpoint(model, folder / "seed-fp16.safetensors", encoding="packed", dtype="fp16", metrics=metrics)
    plot = folder / "scan.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(plot)
    result = run(NST + ["push", REPO, str(path), "--plot", str(plot)], hub_env)
    commit = result.stdout.split("commit ")[1].split()[0]
    return {"path": path, "commit": commit, "stdout": result.stdout, "model": load_checkpoint(path)}


def test_push_commits_checkpoint_config_card_and_plot(hub, pushed):
    repo = hub.hub.repos[("model", REPO)]
    files = repo.resolve(pushed["commit"]).files
    assert sorted(files) == [".gitattributes", "README.md", "config.json", "seed-fp16.safetensors", "sensitivity.png"]
    assert files["seed-fp16.safetensors"] == pushed["path"].read_bytes()
    config = json.loads(files["config.json"])
    assert config["checkpoint"] == "seed-fp16.safetensors" and config["encoding"] == "packed"
    assert config["metrics"]["ssim"] == 0.93
    assert f"hf download {REPO} config.json seed-fp16.safetensors --revision {pushed['commit']}" in pushed["stdout"]
    # The token reached the server as a header and nowhere else.
    assert not any(DUMMY_TOKEN.encode() in data for data in hub.hub.all_file_bytes())


def test_model_card_parses_with_valid_metadata(hub, pushed):
    text = hub.hub.repos[("model", REPO)].resolve(pushed["commit"]).files["README.md"].decode()
    header = yaml.safe_load(text.split("---")[1])
    assert header["pipeline_tag"] == "image-feature-extraction"
    assert header["library_name"] == "pytorch" and header["license"] == "cc-by-4.0"
    assert "base_model" not in header  # random weights come from no Hub repo
    assert "neural-style-transfer" in header["tags"]
    # The client sent the card to validate-yaml before committing, and it passed.
    assert ("model", []) in hub.hub.validated
    card = ModelCard(text)
    assert card.data.pipeline_tag == "image-feature-extraction" and card.data.license == "cc-by-4.0"
    # model-index, read back by huggingface_hub's own parser into EvalResults
    judged = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert judged == {"content_ratio": 1.04, "style_ratio": 1.12, "ssim": 0.93}
    assert {r.task_type for r in card.data.eval_results} == {"image-feature-extraction"}
    body = card.text
    assert "| conv1_2 | 64 | 64 | 36,864 | 3,686 | 90.0% |" in body
    assert f"| `seed-fp16.safetensors` | {pushed['path'].stat().st_size:,} |" in body
    assert "| ssim | 0.93 |" in body
    assert f"hf download {REPO} config.json seed-fp16.safetensors" in body
    assert f'VGGFeatures.from_pretrained("{REPO}")' in body
    assert "![Per-layer sensitivity scan](sensitivity.png)" in body
    assert "seeded random weights" in body
    assert "scan-64px.json" in body


@pytest.mark.slow
def test_hf_download_then_load_is_identical_and_works_offline(hub, hub_env, pushed, tmp_path):
    """push -> `hf download REPO FILE --revision SHA --local-dir D` -> load; then from the cache offline."""
    local = tmp_path / "d"
    run(
        [HF_BIN, "download", REPO, "seed-fp16.safetensors", "--revision", pushed["commit"], "--local-dir", str(local)],
        hub_env,
    )
    downloaded = local / "seed-fp16.safetensors"
    assert downloaded.read_bytes() == pushed["path"].read_bytes()
    expected = weights_digest(pushed["model"])
    assert weights_digest(load_checkpoint(downloaded)) == expected

    # Fill the normal cache once (online, with `hf download` as a user would), then load with
    # the Hub unreachable by policy: pinned to the commit, and by branch via config.json.
    run([HF_BIN, "download", REPO, "seed-fp16.safetensors", "--revision", pushed["commit"]], hub_env)
    run([HF_BIN, "download", REPO, "config.json"], hub_env)
    seen = len(hub.hub.requests)
    code = DIGEST_CODE + (
        "from nst_core.model.hub.pull import load_from_hub, pull\nfrom nst_core.model.hub.errors import HubError\n"
        f"pinned = load_from_hub({REPO!r}, 'seed-fp16.safetensors', revision={pushed['commit']!r})\n"
        f"latest = load_from_hub({REPO!r})\n"
        "from nst_core.model.vgg import load_checkpoint\nfrom nst_core.model.weights import load_vgg, locate_weights\n"
        f"by_spec = load_checkpoint(locate_weights('hf:{REPO}@{pushed['commit']}'))\n"
        "assert weights_digest(by_spec) == weights_digest(pinned)\n"
        # The CLI's --weights reads the same spec as the same network, masks included.
        f"as_weights = load_vgg('hf:{REPO}@{pushed['commit']}', last_layer='relu3_1')\n"
        "assert weights_digest(as_weights) == weights_digest(pinned)\n"
        "assert as_weights.masks.keys() == pinned.masks.keys()\n"
        "try:\n"
        f"    pull({REPO!r}, 'other.safetensors')\n"
        "    missing = 'no error'\n"
        "except HubError as exc:\n"
        "    missing = str(exc)\n"
        "print(json.dumps([weights_digest(pinned), weights_digest(latest), missing]))\n"
    )
    pinned, latest, missing = json.loads(python(code, hub_env, HF_HUB_OFFLINE="1").stdout)
    assert pinned == expected and latest == expected
    assert len(hub.hub.requests) == seen, "offline load talked to the Hub"
    assert "not in the local Hugging Face cache" in missing and "other.safetensors" in missing


def test_push_to_a_new_branch_leaves_main_alone(hub, hub_env, pushed, tmp_path):
    ckpt = save_checkpoint(prune_fine(load_vgg("random:8", last_layer="relu1_2"), 0.3), tmp_path / "exp.safetensors")
    result = python(cli_calls([["push", REPO, str(ckpt), "--revision", "experiment"]]), hub_env)
    assert "exit 0" in result.stdout
    repo = hub.hub.repos[("model", REPO)]
    assert "exp.safetensors" in repo.resolve("experiment").files
    assert "exp.safetensors" not in repo.resolve("main").files
    assert "seed-fp16.safetensors" in repo.resolve("experiment").files  # branched from main


def test_push_deletes_stale_files_and_names_the_base_model(hub, hub_env, tmp_path):
    """`nst push --delete PATTERN` drops the stale checkpoint in the same commit; --base-model reaches the card."""
    first = save_checkpoint(load_vgg("random:13", last_layer="relu1_1"), tmp_path / "a.safetensors")
    second = save_checkpoint(load_vgg("random:14", last_layer="relu1_1"), tmp_path / "b.safetensors")
    repo_id = "tester/stale"
    result = python(
        cli_calls(
            [
                ["push", repo_id, str(first)],
                ["push", repo_id, str(second), "--delete", "*.safetensors", "--base-model", "tester/vgg19-caffe"],
                ["push", repo_id, str(second), "--base-model", "vgg19"],
            ]
        ),
        hub_env,
    )
    assert [line for line in result.stdout.splitlines() if line.startswith("exit")] == ["exit 0", "exit 0", "exit 2"]
    assert "bad repo id 'vgg19'" in result.stderr
    repo = hub.hub.repos[("model", repo_id)]
    assert len(repo.commits) == 3  # the initial commit and two pushes: the deletion rode in the second
    files = repo.resolve("main").files
    assert sorted(files) == sorted([".gitattributes", "README.md", "config.json", "b.safetensors"])
    assert ModelCard(files["README.md"].decode()).data.base_model == "tester/vgg19-caffe"


def cli_calls(calls: list[list[str]]) -> str:
    """Python code running several `nst` commands in one interpreter (one torch import), printing exit codes."""
    return (
        "import sys\nfrom nst_core.cli import main\n"
        f"for argv in {calls!r}:\n"
        "    code = main(argv)\n"
        "    print('exit', code, flush=True)\n"
        "    print('--- end of', argv[0], file=sys.stderr, flush=True)\n"
    )


def test_missing_repo_file_and_revision_errors(hub_env, pushed):
    code = (
        "import json\nfrom nst_core.model.hub.pull import pull\nfrom nst_core.core.errors import UserError\nout = []\n"
        "for args in [('tester/nope', 'x.safetensors', None), "
        f"({REPO!r}, 'nope.safetensors', None), ({REPO!r}, 'seed-fp16.safetensors', 'no-such-branch'), "
        f"({REPO!r}, 'seed-fp16.safetensors', '0' * 40), ('not-a-repo-id', 'x', None)]:\n"
        "    try:\n        pull(*args)\n        out.append('no error')\n"
        "    except UserError as exc:\n        out.append(str(exc))\n"
        "print(json.dumps(out))\n"
    ) + cli_calls([["pull", "tester/nope", "x.safetensors"]])
    result = python(code, hub_env)
    repo, file, branch, sha, bad = json.loads(result.stdout.splitlines()[0])
    assert "tester/nope" in repo and "repository not found" in repo
    assert "nope.safetensors" in file and "file not found" in file
    assert "no-such-branch" in branch and "revision not found" in branch
    assert "0" * 40 in sha and "revision not found" in sha
    assert "bad repo id" in bad
    assert result.stdout.splitlines()[1] == "exit 2"
    assert result.stderr.startswith("nst: error: tester/nope") and "Traceback" not in result.stderr


def test_push_refuses_foreign_files_and_missing_tokens_clearly(tmp_path, hub, hub_env):
    tiny = save_checkpoint(load_vgg("random:1", last_layer="relu1_1"), tmp_path / "tiny.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"not safetensors at all")
    env = {k: v for k, v in hub_env.items() if k != "HF_TOKEN"}
    seen = len(hub.hub.requests)
    result = python(cli_calls([["push", "tester/x", str(foreign)], ["push", "tester/tiny", str(tiny)]]), env)
    assert result.stdout.split() == ["exit", "2", "exit", "2"]
    foreign_err, token_err = result.stderr.split("--- end of push")[:2]
    assert "not a safetensors file" in foreign_err
    assert "nst: error: pushing to tester/tiny" in token_err and "hf auth login" in token_err
    assert ("model", "tester/x") not in hub.hub.repos and ("model", "tester/tiny") not in hub.hub.repos
    # The foreign file was refused before any request; the token-less push was refused by the Hub.
    paths = [path for _, path in hub.hub.requests[seen:]]
    assert paths[0] == "/api/repos/create" and not any("/commit/" in p or "/preupload/" in p for p in paths)


def _fake_caffe_pth(path: Path) -> dict[str, torch.Tensor]:
    """The Caffe VGG-19 .pth layout: features.N.* in the real shapes, plus classifier.* keys.

    The classifier tensors are small stand-ins (the real ones are 548 MB and are dropped anyway).
    """
    state = {k: v.clone() for k, v in load_vgg("random:11", last_layer="relu5_4").state_dict().items()}
    for i, shape in ((0, (16, 32)), (3, (16, 16)), (6, (10, 16))):
        state[f"classifier.{i}.weight"] = torch.randn(shape)
        state[f"classifier.{i}.bias"] = torch.randn(shape[0])
    torch.save(state, path)
    return state


def test_weights_convert_push_and_load_as_hf_spec(tmp_path, hub, hub_env, capsys):
    src = tmp_path / "vgg19-d01eb7cb.pth"
    state = _fake_caffe_pth(src)
    out = tmp_path / "vgg19-caffe.safetensors"
    assert main(["weights", "convert", str(src), str(out), "--dtype", "fp16"]) == 0
    info = read_checkpoint_info(out)
    assert info["preprocessing"]["name"] == "caffe" and info["provenance"]["converted_from"] == src.name
    assert not any(k.startswith("classifier") for k in info["tensors"])
    conv5_4 = state["features.34.weight"].half().float()
    local = load_vgg(str(out), last_layer="relu5_4")  # preprocessing comes from the metadata
    assert local.preprocessing.name == "caffe"
    assert torch.equal(local.conv("conv5_4").weight, conv5_4)

    code = (
        "import hashlib\nfrom nst_core.model.hub.push import push_checkpoint\n"
        "from nst_core.model.weights import load_vgg\n"
        f"commit = push_checkpoint('tester/vgg19-caffe', {str(out)!r}).commit\n"
        "m = load_vgg(f'hf:tester/vgg19-caffe:vgg19-caffe.safetensors@{commit}', last_layer='relu5_4')\n"
        "print(m.preprocessing.name, hashlib.sha256(m.conv('conv5_4').weight.numpy().tobytes()).hexdigest())\n"
    )
    prep, digest = python(code, hub_env).stdout.split()
    assert prep == "caffe"
    assert digest == hashlib.sha256(conv5_4.numpy().tobytes()).hexdigest()

    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    capsys.readouterr()
    assert main(["weights", "convert", str(bad), str(tmp_path / "o.safetensors")]) == 2
    assert "no 'features.N.weight' keys" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()


def test_push_space_pushes_what_there_is(tmp_path, hub, hub_env):
    root = tmp_path / "project"
    (root / "space").mkdir(parents=True)
    (root / "space" / "README.md").write_text("---\ntitle: t\nsdk: gradio\napp_file: app.py\n---\nhello\n")
    shutil.copytree(ROOT / "nst_core", root / "nst_core", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "requirements.txt").write_text("torch\n")
    (root / "examples" / "content").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "examples" / "content" / "tiny.png")
    argv = ["push-space", "tester/style-space", "--root", str(root)]
    # Push, then add app.py and push again, in one interpreter.
    code = cli_calls([argv]) + f"open({str(root / 'app.py')!r}, 'w').write(\"print('app')\\n\")\n" + cli_calls([argv])
    result = python(code, hub_env)
    assert [line for line in result.stdout.splitlines() if line.startswith("exit")] == ["exit 0", "exit 0"]
    assert "pushed" in result.stdout
    first_err, second_err = result.stderr.split("--- end of push-space")[:2]
    assert "app.py was not found" in first_err and "not found" not in second_err
    repo = hub.hub.repos[("space", "tester/style-space")]
    assert repo.sdk == "gradio"
    first, second = [c.files for c in list(repo.commits.values())[1:]]
    assert "app.py" not in first
    assert first["README.md"].startswith(b"---\ntitle: t")
    assert first["nst_core/model/hub/push.py"] == (ROOT / "nst_core" / "model" / "hub" / "push.py").read_bytes()
    assert "requirements.txt" in first and not any("__pycache__" in p for p in first)
    assert first["examples/content/tiny.png"] == (root / "examples" / "content" / "tiny.png").read_bytes()
    assert second["app.py"] == b"print('app')\n"


def test_structured_card_shows_widths(tmp_path):
    path = save_checkpoint(
        prune_structured(load_vgg("random:0", "relu2_1"), 0.5), tmp_path / "s.safetensors", encoding="dense"
    )
    card = render_model_card(
        read_checkpoint_info(path), "me/x", "s.safetensors", {"s.safetensors": path.stat().st_size}
    )
    assert card.data.pipeline_tag == "image-feature-extraction" and card.data.eval_results is None
    assert "| conv2_1 | 64 | 128 | 18,432 | 18,432 | 0.0% |" in card.text
    assert "| pruning | structured |" in card.text and "seeded random weights" in card.text
    assert "A VGG-19 feature extractor" in card.text and "vgg19" in card.data.tags


def test_a_vgg16_checkpoints_card_says_vgg16(tmp_path):
    path = save_checkpoint(load_vgg("random:0", "relu2_1", arch="vgg16"), tmp_path / "v.safetensors", encoding="dense")
    card = render_model_card(
        read_checkpoint_info(path), "me/v", "v.safetensors", {"v.safetensors": path.stat().st_size}
    )
    assert "A VGG-16 feature extractor" in card.text and "VGG-19 feature" not in card.text
    assert "vgg16" in card.data.tags and "vgg19" not in card.data.tags


def test_stand_in_rejects_bad_card_yaml():
    """The stand-in's YAML checks can fail, so a passing push means something."""
    assert (
        validate_card_yaml(
            "---\nlicense: mit\npipeline_tag: image-feature-extraction\nbase_model: a/b\n---\nbody", "model"
        )
        == []
    )
    assert validate_card_yaml("---\nbase_model: vgg19\n---\n", "model")
    assert validate_card_yaml(
        "---\nmodel-index:\n- name: x\n  results:\n  - task: {type: t}\n    metrics: []\n---\n", "model"
    )
    assert validate_card_yaml("---\npipeline_tag: painting\n---\n", "model")
    assert validate_card_yaml("---\ntags: [a, [b]]\n---\n", "model")
    assert validate_card_yaml("---\nlicense: [unclosed\n---\n", "model")
    assert validate_card_yaml("---\ntitle: t\n---\n", "space")  # a Space needs its sdk


def test_checkpoint_spec_parsing():
    def fields(spec):
        parsed = parse_hub_spec(spec)
        return parsed.repo, parsed.filename, parsed.revision

    assert fields("hf:me/net") == ("me/net", None, None)
    assert fields("hf:me/net:seed.safetensors@abc") == ("me/net", "seed.safetensors", "abc")
    for bad in ("me/net", "hf:net", "hf:me/net@", "hf:a/b/c"):
        with pytest.raises(WeightSpecError, match="expected|empty revision|bad repo id"):
            parse_hub_spec(bad)
    # huggingface_hub's hf:// URIs, read by its own parser: the same three fields
    assert fields("hf://me/net") == ("me/net", None, None)
    assert fields("hf://models/me/net@abc/seed.safetensors") == ("me/net", "seed.safetensors", "abc")
    assert fields("hf://me/net@refs/pr/3/sub/seed.safetensors") == ("me/net", "sub/seed.safetensors", "refs/pr/3")
    for bad, why in (
        ("hf://datasets/me/d", "not a dataset"),
        ("hf://spaces/me/s/app.py", "not a space"),
        ("hf://me", "namespace/name"),
        ("hf://me/net@/x", "revision"),
    ):
        with pytest.raises(WeightSpecError, match=why):
            parse_hub_spec(bad)


def test_nst_pull_takes_a_spec_once(capsys):
    """`nst pull` takes hf:/hf:// specs too.

    A file or revision given twice, differently, is refused before any request.
    """
    assert main(["pull", "hf:me/net:a.safetensors", "b.safetensors"]) == 2
    assert "names FILE 'a.safetensors', but 'b.safetensors' was given too" in capsys.readouterr().err
    assert main(["pull", "hf://me/net@v1", "--revision", "v2"]) == 2
    assert "names --revision 'v1', but 'v2' was given too" in capsys.readouterr().err
    assert main(["pull", "hf://datasets/me/d"]) == 2
    assert "not a dataset" in capsys.readouterr().err


def test_card_names_its_base_model_and_validates(tmp_path):
    """base_model comes from the weight source (or is given); the header passes huggingface_hub's
    ModelCardData round trip and the stand-in's copy of the Hub's YAML checks."""

    def card_for(source, **kwargs):
        model = prune_fine(load_vgg("random:4", last_layer="relu1_2"), 0.5)
        model.weight_source = source
        path = save_checkpoint(model, tmp_path / "b.safetensors", metrics={"ssim": 0.9, "note": "text is not a metric"})
        card = render_model_card(
            read_checkpoint_info(path), "me/b", path.name, {path.name: path.stat().st_size}, **kwargs
        )
        assert validate_card_yaml(str(card), "model") == []
        return ModelCard(str(card)).data

    assert card_for("hf:me/vgg19-caffe:vgg19-caffe.safetensors@abc").base_model == "me/vgg19-caffe"
    assert card_for("hf://me/vgg19-caffe@abc/vgg19-caffe.safetensors").base_model == "me/vgg19-caffe"
    assert card_for("torchvision").base_model == "timm/vgg19.tv_in1k"
    assert card_for("caffe:vgg19-d01eb7cb.pth").base_model is None  # a converted file names no Hub repo
    data = card_for("caffe", base_model="me/vgg19-caffe")
    assert data.base_model == "me/vgg19-caffe" and data.pipeline_tag == "image-feature-extraction"
    assert [(r.metric_type, r.metric_value) for r in data.eval_results] == [("ssim", 0.9)]
    assert data.model_name == "b" and data.library_name == "pytorch"


def test_binary_files_are_uploaded_through_lfs(hub, pushed):
    """The checkpoint and the plot went through the LFS batch API, upload and verify; text went inline."""
    ops = {path: key for repo, path, key in hub.hub.commit_ops if repo == REPO}
    assert ops["seed-fp16.safetensors"] == "lfsFile" and ops["sensitivity.png"] == "lfsFile"
    assert ops["config.json"] == "file" and ops["README.md"] == "file"
    paths = [path for _, path in hub.hub.requests]
    assert f"/{REPO}.git/info/lfs/objects/batch" in paths and f"/{REPO}.git/info/lfs/objects/verify" in paths
    sha = hashlib.sha256(pushed["path"].read_bytes()).hexdigest()
    assert any(p.startswith(f"/lfs-upload/{sha}/") for p in paths)


def test_stand_in_refuses_what_the_hub_refuses():
    """Binary bytes sent inline, and LFS pointers to objects never uploaded, are refused.

    So passing pushes mean something.
    """
    fake = FakeHub()
    fake.create("model", "t/r", False, None)
    repo: Repo = fake.repos[("model", "t/r")]
    inline = {"key": "file", "value": {"path": "w.safetensors", "encoding": "base64", "content": "AAEC"}}
    with pytest.raises(ValueError, match="through LFS"):
        fake.commit(repo, "main", [inline])
    png = {"key": "file", "value": {"path": "p.png", "encoding": "base64", "content": "iVBORw0KGgoAAAANSUhEUg=="}}
    with pytest.raises(ValueError, match="through LFS"):
        fake.commit(repo, "main", [png])  # binary (a NUL byte) whatever its name
    pointer = {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": "0" * 64, "size": 3}}
    with pytest.raises(ValueError, match="not uploaded and verified"):
        fake.commit(repo, "main", [pointer])
    text = {"key": "file", "value": {"path": "config.json", "encoding": "base64", "content": "e30="}}
    assert fake.commit(repo, "main", [text]).files["config.json"] == b"{}"


def test_a_client_using_xet_fails_fast(hub, hub_env, tmp_path):
    """The stand-in has no Xet storage: a client that tries it (HF_HUB_DISABLE_XET unset) is refused its
    Xet token at once (hf_xet's own error line names the route), instead of hanging; nothing is committed."""
    ckpt = save_checkpoint(load_vgg("random:15", last_layer="relu1_1"), tmp_path / "x.safetensors")
    env = {k: v for k, v in hub_env.items() if k != "HF_HUB_DISABLE_XET"}
    result = python(cli_calls([["push", "tester/xet", str(ckpt)]]), env)
    assert "exit 2" in result.stdout and "xet-write-token" in result.stderr
    assert len(hub.hub.repos[("model", "tester/xet")].commits) == 1  # the initial commit only


MARK = "/_marker/"
MARKER_CODE = (
    "import os, urllib.request, urllib.error\n"
    "def mark(name):\n"
    "    try:\n"
    f"        urllib.request.urlopen(os.environ['HF_ENDPOINT'] + {MARK!r} + name)\n"
    "    except urllib.error.HTTPError:\n"
    "        pass  # the stand-in answers 404; the request is logged, which is the point\n"
)


def requests_by_step(hub, since: int) -> dict[str, list[str]]:
    """The stand-in's request paths after ``since``, grouped under the marker the client sent before each step."""
    steps: dict[str, list[str]] = {}
    current = None
    for _, path in hub.hub.requests[since:]:
        if path.startswith(MARK):
            current = path[len(MARK) :]
            steps[current] = []
        elif current is not None:
            steps[current].append(path)
    return steps


def test_every_pull_path_requests_config_json(hub, hub_env, pushed, tmp_path):
    """The Hub counts downloads by config.json: each way of loading from the Hub asks for it.

    Each step gets a fresh cache (huggingface_hub's HF_HUB_CACHE, read at each call), so each
    one really downloads, and each must load the pushed network itself.
    """
    commit, name = pushed["commit"], "seed-fp16.safetensors"
    steps = {
        "nst-pull": f"assert main(['pull', {REPO!r}, {name!r}]) == 0",
        "nst-pull-uri": f"assert main(['pull', 'hf://{REPO}@{commit}/{name}']) == 0",
        "load_from_hub": f"got(load_from_hub({REPO!r}, {name!r}))",
        "from_pretrained": f"got(VGGFeatures.from_pretrained({REPO!r}))",
        "from_pretrained-pinned": f"got(VGGFeatures.from_pretrained({REPO!r}, revision={commit!r}))",
        "weights-spec": f"got(load_vgg('hf:{REPO}:{name}', last_layer='relu3_1'))",
        "weights-uri": f"got(load_vgg('hf://{REPO}@{commit}/{name}', last_layer='relu3_1'))",
        "weights-repo-only": f"got(load_checkpoint(locate_weights('hf:{REPO}')))",
    }
    code = (
        DIGEST_CODE
        + MARKER_CODE
        + (
            "import tempfile\nfrom huggingface_hub import constants\nfrom nst_core.cli import main\n"
            "from nst_core.model.vgg import VGGFeatures, load_checkpoint\n"
            "from nst_core.model.hub.pull import load_from_hub\n"
            "from nst_core.model.weights import load_vgg, locate_weights\ndigests = []\n"
            "def got(model):\n    digests.append(weights_digest(model))\n"
        )
    )
    for step, call in steps.items():
        code += f"constants.HF_HUB_CACHE = tempfile.mkdtemp()\nmark({step!r})\n{call}\n"
    code += "print(json.dumps(digests))\n"
    seen = len(hub.hub.requests)
    digests = json.loads(python(code, hub_env).stdout.splitlines()[-1])
    assert digests == [weights_digest(pushed["model"])] * 6
    # The card's own command, as printed there
    run([HF_BIN, "download", REPO, "config.json", name, "--local-dir", str(tmp_path / "d")], hub_env)
    by_step = requests_by_step(hub, seen)
    assert list(by_step) == list(steps)
    by_step["hf-download"] = [p for _, p in hub.hub.requests[seen:]][-4:]
    for step, paths in by_step.items():
        config = [p for p in paths if p.startswith(f"/{REPO}/resolve/") and p.endswith("/config.json")]
        checkpoint = [p for p in paths if p.endswith(f"/{name}")]
        assert config and checkpoint, f"{step}: {paths}"


def test_checkpoint_info_cli(tmp_path, capsys):
    path = save_checkpoint(prune_fine(load_vgg("random:3", last_layer="relu2_1"), 0.5), tmp_path / "c.safetensors")
    assert main(["checkpoint", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "packed fp16" in out and "conv2_1" in out and "50.0%" in out
    assert main(["checkpoint", "info", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.live_hub
@pytest.mark.skipif(
    not (os.environ.get("HF_TOKEN") and os.environ.get("NST_LIVE_HUB") == "1"),
    reason="talks to the real Hugging Face Hub: set HF_TOKEN and NST_LIVE_HUB=1",
)
def test_live_hub_round_trip(tmp_path):
    """The same push -> hf download -> load round trip against huggingface.co, in a private repo it deletes."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_HUB_OFFLINE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    model = prune_fine(load_vgg("random:5", last_layer="relu2_1"), 0.5)
    path = save_checkpoint(model, tmp_path / "live.safetensors")
    user = python("from huggingface_hub import whoami; print(whoami()['name'])", env).stdout.strip()
    repo = f"{user}/nst-live-test-{uuid.uuid4().hex[:8]}"
    try:
        commit = python(
            "from nst_core.model.hub.push import push_checkpoint; "
            f"print(push_checkpoint({repo!r}, {str(path)!r}, private=True).commit)",
            env,
        ).stdout.strip()
        run(
            [HF_BIN, "download", repo, "live.safetensors", "--revision", commit, "--local-dir", str(tmp_path / "d")],
            env,
        )
        assert weights_digest(load_checkpoint(tmp_path / "d" / "live.safetensors")) == weights_digest(
            load_checkpoint(path)
        )
    finally:
        python(f"from huggingface_hub import delete_repo; delete_repo({repo!r}, missing_ok=True)", env)


# ---------------------------------------------------------------------------------------------
# The Hub recipe of docs/hub.md ("Sharing on the Hugging Face Hub"), run as printed
# ---------------------------------------------------------------------------------------------

README_REPO = "me/vgg19-seed-pruned"  # the page's placeholders, and what stands in for them here
STAND_IN_REPO = "tester/readme-seed-pruned"


def readme_hub_lines() -> list[str]:
    """The commands of the first bash block of docs/hub.md ("Sharing on the Hugging Face Hub")."""
    section = (ROOT / "docs" / "hub.md").read_text(encoding="utf-8").split("# Sharing on the Hugging Face Hub", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_readme_line(line: str, env: dict, cwd: Path, commit: str | None) -> tuple[subprocess.CompletedProcess, dict]:
    """One README line as a subprocess: placeholders replaced, leading NAME=VALUE words as the environment."""
    line = line.replace(README_REPO, STAND_IN_REPO)
    if commit:
        line = line.replace("COMMIT", commit)
    words = shlex.split(line)
    changes = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        changes[name] = value
    program = {"nst": NST, "hf": [HF_BIN]}[words[0]]
    return run(program + words[1:], env, cwd=cwd, **changes), changes


def run_readme_recipe(lines: list[str], hub, env: dict, cwd: Path, seed: Path) -> None:
    """Each line must exit 0; downloads land where they say, offline lines send nothing and load the network."""
    commit = None
    for line in lines:
        seen = len(hub.hub.requests)
        result, changes = run_readme_line(line, env, cwd, commit)
        words = shlex.split(line)
        if "push" in words:
            commit = result.stdout.split("commit ")[1].split()[0]
        if "--local-dir" in words:
            folder = cwd / words[words.index("--local-dir") + 1]
            assert (folder / seed.name).read_bytes() == seed.read_bytes(), line
        if changes.get("HF_HUB_OFFLINE") == "1":
            assert len(hub.hub.requests) == seen, f"{line}: talked to the Hub"
        if "--check" in words:
            assert "loaded 3 convs up to relu2_1; masks: 3" in result.stdout, line
            where = cwd / words[words.index("--local-dir") + 1] if "--local-dir" in words else Path(env["HF_HOME"])
            assert Path(result.stdout.splitlines()[-1]).is_relative_to(where), line


@pytest.fixture
def recipe_folder(tmp_path):
    """A fresh working folder with the README's seed.safetensors and scan/curves.png, and its own HF_HOME."""
    folder = tmp_path / "work"
    (folder / "scan").mkdir(parents=True)
    save_checkpoint(prune_fine(load_vgg("random:9", last_layer="relu2_1"), 0.5), folder / "seed.safetensors")
    Image.new("RGB", (32, 24), (20, 90, 200)).save(folder / "scan" / "curves.png")
    return folder


@pytest.mark.slow
def test_readme_hub_recipe_runs_as_printed(hub, hub_env, recipe_folder, tmp_path):
    lines = readme_hub_lines()
    # The recipe keeps its offline steps: from a --local-dir folder and from the cache.
    offline = [line for line in lines if line.startswith("HF_HUB_OFFLINE=1 ")]
    assert any("--local-dir" in line for line in offline) and any("--local-dir" not in line for line in offline)
    env = {**hub_env, "HF_HOME": str(tmp_path / "hf_home")}
    run_readme_recipe(lines, hub, env, recipe_folder, recipe_folder / "seed.safetensors")


@pytest.mark.slow
def test_readme_hub_recipe_with_hf_download_alone(hub, hub_env, recipe_folder, tmp_path):
    """The README calls its two --local-dir downloads equivalent: `hf download` alone must do for the offline step."""
    lines = readme_hub_lines()
    push = next(line for line in lines if line.startswith("nst push "))
    download = next(line for line in lines if line.startswith("hf download ") and "--local-dir" in line)
    offline = next(line for line in lines if line.startswith("HF_HUB_OFFLINE=1 ") and "--local-dir" in line)
    env = {**hub_env, "HF_HOME": str(tmp_path / "hf_home")}
    run_readme_recipe([push, download, offline], hub, env, recipe_folder, recipe_folder / "seed.safetensors")


# ---------------------------------------------------------------------------------------------
# Pushing without the Hub
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("offline_mode", [False, True], ids=["dead-endpoint", "HF_HUB_OFFLINE"])
def test_push_without_the_hub_says_it_cannot_be_reached(hub, hub_env, tmp_path, offline_mode):
    ckpt = save_checkpoint(load_vgg("random:1", last_layer="relu1_1"), tmp_path / "tiny.safetensors")
    calls = [["push", "tester/unsent", str(ckpt)], ["push-space", "tester/unsent-space", "--root", str(ROOT)]]
    dead = f"http://127.0.0.1:{free_port()}"
    changes = {"HF_HUB_OFFLINE": "1"} if offline_mode else {"HF_ENDPOINT": dead}
    seen = len(hub.hub.requests)
    result = python(cli_calls(calls), hub_env, **changes)
    assert result.stdout.split() == ["exit", "2", "exit", "2"]
    lines = result.stderr.splitlines()
    # One line per command, then the marker cli_calls prints after it.
    assert lines[1::2] == ["--- end of push", "--- end of push-space"] and len(lines) == 4, result.stderr
    push_err, space_err = lines[0::2]
    assert push_err.startswith("nst: error: pushing to tester/unsent: the Hub cannot be reached")
    assert space_err.startswith("nst: error: pushing the Space tester/unsent-space: the Hub cannot be reached")
    for err in (push_err, space_err):
        assert "network" in err and "HF_ENDPOINT" in err and "HF_HUB_OFFLINE" in err
        assert "cache" not in err and "download it once" not in err
        assert ("offline mode is on" in err) == offline_mode and (dead in err) == (not offline_mode)
    assert len(hub.hub.requests) == seen


# ---------------------------------------------------------------------------------------------
# A checkpoint as --weights: the network itself, locally and on the Hub
# ---------------------------------------------------------------------------------------------

CONTENT = str(ROOT / "examples" / "content" / "lakeside.jpg")
STYLE = str(ROOT / "examples" / "style" / "swirls.jpg")
TINY_RUN = StylizeConfig(size=32, iterations=2)


def loss_history(model) -> list[dict]:
    return stylize(prepare(model, CONTENT, [STYLE], TINY_RUN)).history


def test_local_checkpoint_as_weights_is_that_network_cut_to_the_layers_needed(tmp_path):
    structured = prune_structured(load_vgg("random:21", last_layer="relu4_1"), 0.5)
    fine = prune_fine(load_vgg("random:22", last_layer="relu3_1"), 0.5)
    s_path = save_checkpoint(structured, tmp_path / "s.safetensors")
    f_path = save_checkpoint(fine, tmp_path / "f.safetensors", dtype="fp32")
    cut = load_vgg(str(s_path), last_layer="relu3_1")
    assert cut.last_layer == "relu3_1" and cut.widths == {n: structured.widths[n] for n in cut.conv_names}
    assert cut.widths["conv3_1"] == 128 and sorted(cut.kept_channels) == cut.conv_names
    assert cut.weight_source == "random:21" and cut.has_random_weights  # the source it was pruned from
    whole = load_vgg(str(f_path), last_layer="relu3_1")
    stored = load_checkpoint(f_path)
    assert weights_digest(whole) == weights_digest(stored) and whole.masks.keys() == fine.masks.keys()
    with pytest.raises(WeightsError, match="stops at relu3_1, but layers up to relu5_3 are needed"):
        load_vgg(str(f_path), last_layer="relu5_3")


@pytest.mark.slow
def test_stylize_with_pruned_checkpoints_from_the_hub_and_from_files(hub, hub_env, tmp_path):
    """`nst stylize --weights hf:OWNER/NAME` (and a checkpoint path) runs the pruned network itself.

    The CLI's loss history must match a run with ``load_checkpoint``'s network, and differ from
    the dense network it was pruned from.
    """
    dense = {
        "structured": load_vgg("random:21", last_layer="relu5_4"),
        "fine": load_vgg("random:22", last_layer="relu5_3"),
    }
    networks = {"structured": prune_structured(dense["structured"], 0.5), "fine": prune_fine(dense["fine"], "seed")}
    paths = {
        "structured": save_checkpoint(networks["structured"], tmp_path / "structured.safetensors", encoding="dense"),
        "fine": save_checkpoint(networks["fine"], tmp_path / "fine.safetensors"),
    }
    pushes = python(cli_calls([["push", f"tester/{kind}-net", str(path)] for kind, path in paths.items()]), hub_env)
    fine_commit = pushes.stdout.split("commit ")[2].split()[0]
    specs = {
        "hub-structured": ("structured", "hf:tester/structured-net"),
        "hub-fine": ("fine", f"hf:tester/fine-net@{fine_commit}"),
        "file-structured": ("structured", str(paths["structured"])),
        "file-fine": ("fine", str(paths["fine"])),
    }
    calls = [
        [
            "stylize",
            CONTENT,
            STYLE,
            "-o",
            str(tmp_path / f"{name}.png"),
            "--weights",
            spec,
            "--size",
            "32",
            "--iterations",
            "2",
            "--device",
            "cpu",
            "--log-json",
            str(tmp_path / f"{name}.json"),
        ]
        for name, (_, spec) in specs.items()
    ]
    result = python(cli_calls(calls), hub_env)
    assert result.stdout.count("exit 0") == len(calls), result.stderr
    expected = {kind: loss_history(load_checkpoint(path)) for kind, path in paths.items()}
    for kind in expected:  # the comparison can tell the pruned network from its dense parent
        assert [h["total"] for h in expected[kind]] != pytest.approx(
            [h["total"] for h in loss_history(dense[kind])], rel=1e-2
        )
    for name, (kind, _spec) in specs.items():
        log = json.loads((tmp_path / f"{name}.json").read_text())
        assert log["weights"] == networks[kind].weight_source, name  # random:N, so the run says so
        assert [h["total"] for h in log["history"]] == pytest.approx([h["total"] for h in expected[kind]], rel=1e-3), (
            name
        )
        assert [h["style"] for h in log["history"]] == pytest.approx([h["style"] for h in expected[kind]], rel=1e-3), (
            name
        )
    per_call = result.stderr.split("--- end of stylize")[: len(calls)]
    assert all("weights are random" in err for err in per_call), result.stderr


# ---------------------------------------------------------------------------------------------
# huggingface_hub's ModelHubMixin on VGGFeatures
# ---------------------------------------------------------------------------------------------

MIXIN_REPO = "tester/mixin-net"


def test_from_pretrained_and_push_to_hub_round_trip(hub, hub_env, tmp_path):
    """push_to_hub writes the packed checkpoint, config.json and the card; from_pretrained (from the
    Hub and from a save_pretrained folder) gives the same network back; delete_patterns drops a
    stale checkpoint in the same commit."""
    old = save_checkpoint(load_vgg("random:30", last_layer="relu1_1"), tmp_path / "old.safetensors")
    saved = tmp_path / "saved"
    code = (
        DIGEST_CODE
        + MARKER_CODE
        + (
            "from nst_core.model.vgg import VGGFeatures\nfrom nst_core.model.hub.push import push_checkpoint\n"
            "from nst_core.compress.pruning import prune_fine\n"
            "from nst_core.model.weights import load_vgg\n"
            f"push_checkpoint({MIXIN_REPO!r}, {str(old)!r})\n"
            "model = prune_fine(load_vgg('random:31', last_layer='relu2_1'), 0.5)\n"
            f"url = model.push_to_hub({MIXIN_REPO!r}, delete_patterns='*.safetensors')\n"
            "mark('from_pretrained')\n"
            f"back = VGGFeatures.from_pretrained({MIXIN_REPO!r})\n"
            f"model.save_pretrained({str(saved)!r})\n"
            f"local = VGGFeatures.from_pretrained({str(saved)!r})\n"
            # The reference: the network as a checkpoint file holds it (fp16, masked weights +0.0).
            "from nst_core.model.checkpoint import save_checkpoint\nfrom nst_core.model.vgg import load_checkpoint\n"
            f"ref = load_checkpoint(save_checkpoint(model, {str(tmp_path / 'ref.safetensors')!r}))\n"
            "print(json.dumps({'url': str(url), 'digests': [weights_digest(m) for m in (ref, back, local)],\n"
            "                  'masks': [sorted(m.masks) for m in (model, back, local)]}))\n"
        )
    )
    seen = len(hub.hub.requests)
    out = json.loads(python(code, hub_env).stdout.splitlines()[-1])
    assert out["digests"][0] == out["digests"][1] == out["digests"][2]
    assert out["masks"][0] == out["masks"][1] == out["masks"][2] == ["conv1_1", "conv1_2", "conv2_1"]
    repo = hub.hub.repos[("model", MIXIN_REPO)]
    head = repo.resolve("main")
    assert out["url"].endswith(head.oid)
    assert sorted(head.files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]  # old one deleted
    ckpt = tmp_path / "pushed.safetensors"
    ckpt.write_bytes(head.files["model.safetensors"])
    info = read_checkpoint_info(ckpt)
    assert info["encoding"] == "packed" and info["last_layer"] == "relu2_1"
    config = json.loads(head.files["config.json"])
    assert config["checkpoint"] == "model.safetensors" and config["format"] == info["format"]
    card = ModelCard(head.files["README.md"].decode())
    assert card.data.pipeline_tag == "image-feature-extraction" and card.data.library_name == "pytorch"
    assert f"# {MIXIN_REPO}" in card.text and f'from_pretrained("{MIXIN_REPO}")' in card.text
    assert ("model", []) in hub.hub.validated
    # The folder save_pretrained wrote is the same layout, its card naming no repo
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "# OWNER/NAME" in (saved / "README.md").read_text()
    # from_pretrained asked for config.json, then the checkpoint it names
    pulled = requests_by_step(hub, seen)["from_pretrained"]
    # (HEAD then GET for each file)
    assert list(dict.fromkeys(p.rsplit("/", 1)[-1] for p in pulled if "/resolve/" in p)) == [
        "config.json",
        "model.safetensors",
    ]
    assert ("tester/mixin-net", "model.safetensors", "lfsFile") in hub.hub.commit_ops


FRESH_NETWORK_CODE = """
import json, sys
import torch
from nst_core.model.vgg import VGGFeatures

model = VGGFeatures("relu2_1")
torch.manual_seed(0)
mask = torch.rand(model.conv("conv1_2").weight.shape) < 0.5
with torch.no_grad():
    for conv in model.convs().values():
        conv.weight.normal_()
        conv.bias.normal_()
    model.conv("conv1_2").weight[~mask] = 0
model.masks = {"conv1_2": mask}
saved, repo = sys.argv[1], sys.argv[2]
model.save_pretrained(saved)
local = VGGFeatures.from_pretrained(saved)
url = model.push_to_hub(repo)
back = VGGFeatures.from_pretrained(repo)

def same(loaded):  # save_pretrained stores fp16: compare with the network as fp16 holds it
    return all(
        torch.equal(loaded.conv(name).weight, model.conv(name).weight.half().float())
        and torch.equal(loaded.conv(name).bias, model.conv(name).bias.half().float())
        for name in model.conv_names
    ) and loaded.widths == model.widths and {n: m.tolist() for n, m in loaded.masks.items()} == {
        n: m.tolist() for n, m in model.masks.items()
    }

print(json.dumps({"local": same(local), "hub": same(back), "url": url}))
"""


def test_vgg_features_hub_methods_work_with_only_the_network_module_imported(hub, hub_env, tmp_path):
    """A fresh interpreter that imports nst_core.model.vgg and nothing else of nst_core: save_pretrained,
    from_pretrained (from the folder and from the Hub) and push_to_hub work, and give the same weights back."""
    repo = "tester/fresh-net"
    saved = tmp_path / "saved"
    result = run([sys.executable, "-c", FRESH_NETWORK_CODE, str(saved), repo], hub_env)
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["local"] is True and out["hub"] is True
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    head = hub.hub.repos[("model", repo)].resolve("main")
    assert out["url"].endswith(head.oid)
    assert sorted(head.files) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
