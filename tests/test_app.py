"""The app against a real server: `python app.py` in a subprocess, driven by gradio_client.

Random VGG-19 weights (`--weights random`), 64 px and a few iterations keep every job to
seconds on a CPU. The real Caffe weights cannot be downloaded here; what the tests check
(both images, the table, errors, the queue, cancel) does not depend on which weights run.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio.utils import get_function_description  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError, ValidationError  # noqa: E402
from gradio_client.utils import QueueError, Status  # noqa: E402

from nst_core.app.handler import RunHandler  # noqa: E402
from nst_core.model.layers import DENSE_WIDTHS  # noqa: E402
from nst_core.nst.cost import iteration_macs  # noqa: E402
from nst_core.workflows.compare import CPU_SECONDS_PER_PICTURE, HUB_SPEC_LIMIT, MESSAGE_LIMIT  # noqa: E402

from support.app_server import ROOT, free_port, start_server, stop_server, wait_until_serving  # noqa: E402
from support.hub_server import HubServer  # noqa: E402

pytestmark = pytest.mark.slow  # a real `python app.py` server per module, driven over HTTP

QUEUE_SIZE = 2
HUB_REPO = "tester/vgg19-seed-app"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The seed profile pruned from the same random weights the server uses, saved packed fp16."""
    from nst_core.compress.pruning import prune
    from nst_core.model.checkpoint import save_checkpoint
    from nst_core.model.weights import load_vgg

    model = prune(load_vgg("random:0", last_layer="relu5_3"), "seed")
    return save_checkpoint(
        model, tmp_path_factory.mktemp("ckpt") / "seed-fp16.safetensors", encoding="packed", dtype="fp16"
    )


@pytest.fixture(scope="module")
def hub(checkpoint, tmp_path_factory):
    """A Hub stand-in on 127.0.0.1 (tests/support/hub_server.py) holding ``checkpoint``, pushed with `nst push`.

    The real Hub cannot be reached here; the app's server downloads from this one through the
    real huggingface_hub client (HF_ENDPOINT), as it would from huggingface.co.
    """
    with HubServer() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(
            HF_ENDPOINT=server.endpoint,
            HF_HOME=str(tmp_path_factory.mktemp("hf_home")),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_UPDATE_CHECK="1",
            HF_HUB_DISABLE_XET="1",  # the stand-in takes binary files through LFS, not Xet
        )
        push = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from nst_core.cli import main; sys.exit(main())",
                "push",
                HUB_REPO,
                str(checkpoint),
            ],
            env={**env, "HF_TOKEN": "hf_DummyTokenForTheLocalHub0123456789"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert push.returncode == 0, push.stderr
        commit = push.stdout.split("commit ")[1].split()[0]
        yield {"env": env, "commit": commit}


@pytest.fixture(scope="module")
def examples_cache(tmp_path_factory) -> Path:
    """Where the server caches the bundled examples' results (Gradio's GRADIO_EXAMPLES_CACHE), empty at start."""
    return tmp_path_factory.mktemp("examples-cache")


@pytest.fixture(scope="module")
def server(checkpoint, hub, examples_cache):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_server(
        port,
        "--weights",
        "random",
        "--queue-size",
        str(QUEUE_SIZE),
        "--concurrency",
        "1",
        "--pruned",
        str(checkpoint),
        env={**hub["env"], "GRADIO_EXAMPLES_CACHE": str(examples_cache)},
        inherit_hf=False,
    )
    try:
        wait_until_serving(proc, url)
        yield url
    finally:
        log = stop_server(proc)
    # Every error the tests provoke is the user's; none may have ended as an internal error.
    assert "comparison failed" not in log, log


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    content = np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)  # smooth gradients
    style = (rng.random((80, 80, 3)) * 255).astype(np.uint8)  # noise texture
    paths = {
        "content": d / "content.png",
        "style": d / "style.jpg",
        "style2": d / "style2.png",
        "text": d / "notes.png",
    }
    Image.fromarray(content).save(paths["content"])
    Image.fromarray(style).save(paths["style"])
    Image.fromarray(255 - style).save(paths["style2"])
    paths["text"].write_text("this is not an image\n")
    return paths


def job_args(
    images, content=None, styles=None, size=64, iterations=3, tv=1e-3, choice="profile:seed", hub="", upload=None
):
    content = content or images["content"]
    styles = styles or [images["style"]]
    return (
        handle_file(str(content)),
        [handle_file(str(s)) for s in styles],
        size,
        iterations,
        "adam",
        1.0,
        tv,
        0,
        False,
        choice,
        handle_file(str(upload)) if upload else None,
        hub,
        1.0,  # style scale
        None,  # style weights
        "none",  # colour
        None,  # mask
        None,  # style masks
        0,  # no time budget: the iterations decide (a parameter left out takes the page's CPU default, 20 s)
    )


def table(value: dict) -> dict[str, list]:
    return {row[0]: row[1:] for row in value["data"]}


def test_tiny_job_returns_both_images_and_the_table(server, images):
    client = Client(server, verbose=False)
    status, _preview, slider, dense, pruned, summary, layers = client.predict(
        *job_args(images, styles=[images["style"], images["style2"]]), api_name="/compare"
    )
    assert "done" in status
    dense_img, pruned_img = Image.open(dense), Image.open(pruned)
    assert dense_img.format == pruned_img.format == "PNG"
    assert dense_img.size == pruned_img.size == (64, 48)  # longer side 64, aspect of the 128x96 content kept
    assert [Image.open(p).size for p in slider] == [(64, 48), (64, 48)]
    # Same seed and init but a different network: the outputs differ.
    assert np.abs(np.asarray(dense_img, float) - np.asarray(pruned_img, float)).mean() > 0.1

    rows = table(summary)
    assert rows["iterations run"] == ["3 (done)", "3 (done)"]
    assert float(rows["time (s)"][0]) > 0 and float(rows["time (s)"][1]) > 0
    assert rows["speedup vs dense"][1].endswith("x")
    ssim = float(rows["judge: SSIM vs dense output"][1])
    assert 0.0 < ssim < 1.0
    assert float(rows["judge: content loss ratio vs dense"][1]) > 0
    assert float(rows["judge: style loss ratio vs dense"][1]) > 0
    assert rows["compression vs dense (conv weights)"][1] == "6.64x"  # the seed profile, to relu5_3
    assert "pruned on the fly" in rows["checkpoint file size"][1]

    per_layer = {row[0]: row for row in layers["data"]}
    assert list(per_layer) == [
        f"conv{b}_{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 3)) for i in range(1, n + 1)
    ]
    assert per_layer["conv1_1"][4] == 0.0 and per_layer["conv1_2"][4] == 0.9


def test_random_weights_banner_is_shown(server):
    config = httpx.get(server + "config", timeout=10).json()
    banners = [c["props"] for c in config["components"] if c.get("props", {}).get("elem_id") == "weights-banner"]
    assert banners and banners[0]["visible"] is True
    assert "results are not meaningful" in banners[0]["value"]
    assert "--weights" in banners[0]["value"]


def test_structured_choice_does_a_quarter_of_the_work_and_is_smaller(server, images):
    """Work is counted in conv MACs per stylization step, not timed: on a shared CPU the
    wall-time ratio says more about the neighbours than about the network."""
    client = Client(server, verbose=False)
    _, _, _, dense, _, summary, layers = client.predict(*job_args(images, choice="structured:0.5"), api_name="/compare")
    rows = table(summary)
    assert int(rows["parameters (conv weights + biases)"][1].replace(",", "")) < int(
        rows["parameters (conv weights + biases)"][0].replace(",", "")
    )
    assert {row[1] for row in layers["data"]} >= {"32 / 64", "256 / 512"}

    # The widths the app's pruned network ran with, read from its table ("pruned / dense" channels).
    pruned_widths = {row[0]: int(row[1].split(" / ")[0]) for row in layers["data"]}
    dense_widths = {name: DENSE_WIDTHS[name] for name in pruned_widths}
    width, height = Image.open(dense).size
    dense_macs, pruned_macs = iteration_macs(dense_widths, height, width), iteration_macs(pruned_widths, height, width)
    # Halving both channel counts quarters a conv's MACs; conv1_1 (3 input channels) only halves,
    # so four pruned steps cost one dense step plus conv1_1's dense share (forward and backward) once more.
    conv1_1 = 2 * DENSE_WIDTHS["conv1_1"] * 3 * 9 * height * width
    assert 4 * pruned_macs == dense_macs + conv1_1
    assert 3.9 < dense_macs / pruned_macs < 4.0


# What needs the file itself is found by the run (AppError); bad settings and specs by the validator,
# before the request is queued (ValidationError, naming the input: tests/test_space.py has more).
@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"content": "text"}, AppError, "content image 'notes.png': not an image"),
        ({"styles": ["text"]}, AppError, "style image 1 'notes.png': not an image"),
        ({"size": 4096}, ValidationError, "- size: size must be between 64 and 1024, not 4096"),
        ({"iterations": 0}, ValidationError, "- iterations: iterations must be between 1 and 1000, not 0"),
        ({"tv": -1.0}, ValidationError, "- tv_weight: TV weight must be between 0.0 and 1.0, not -1.0"),
        (
            {"choice": "profile:nope"},
            ValidationError,
            "pruned_choice 'profile:nope' is not one of the offered networks",
        ),
        ({"hub": "not a repo id"}, ValidationError, "- hub_repo: 'not a repo id' is not a Hub repo id"),
    ],
)
def test_bad_input_is_a_readable_error_and_the_server_keeps_serving(server, images, overrides, error, message):
    client = Client(server, verbose=False)
    kwargs = dict(overrides)
    if "content" in kwargs:
        kwargs["content"] = images[kwargs["content"]]
    if "styles" in kwargs:
        kwargs["styles"] = [images[s] for s in kwargs["styles"]]
    with pytest.raises(error) as info:
        client.predict(*job_args(images, **kwargs), api_name="/compare")
    text = str(info.value)
    assert message in text
    assert "Traceback" not in text and 'File "' not in text
    status, *_ = client.predict(*job_args(images, iterations=1), api_name="/compare")
    assert "done" in status


def wait_for_progress(job, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not any("iteration" in str(out[0]) for out in job.outputs()):
        assert time.time() < deadline, f"no progress update within {timeout} s"
        assert not job.done(), "the long job ended before it was cancelled"
        time.sleep(0.2)


def test_many_clients_at_once_finish_or_hear_the_queue_is_full(server, images):
    # Occupy the one worker with a long job, so the queue fills deterministically.
    blocker_client = Client(server, verbose=False)
    blocker = blocker_client.submit(*job_args(images, iterations=1000), api_name="/compare")
    wait_for_progress(blocker)
    # One after the other, each once the server has answered its request to join: Gradio 6.31
    # checks the queue's size before it awaits the validator (validator=), so requests arriving at
    # the same instant can all pass the check and overfill the queue by a few.
    jobs = []
    for client in [Client(server, verbose=False) for _ in range(QUEUE_SIZE + 2)]:
        jobs.append(client.submit(*job_args(images, iterations=2), api_name="/compare"))
        deadline = time.time() + 60
        while jobs[-1].status().code in (Status.STARTING, Status.JOINING_QUEUE) and not jobs[-1].done():
            assert time.time() < deadline, "the server did not answer a request to join the queue"
            time.sleep(0.1)
    # Cancel is not queued (queue=False), so it works while the queue is full; gradio_client
    # always goes through the queue, so call the direct route as the browser does.
    response = httpx.post(
        server + "gradio_api/run/cancel", json={"data": [], "session_hash": blocker_client.session_hash}, timeout=30
    )
    assert response.status_code == 200 and "cancelled" in response.json()["data"][0]
    finished, rejected = 0, 0
    for job in jobs:
        try:
            status = job.result(timeout=300)[0]
            assert "done" in status
            finished += 1
        except QueueError as exc:
            assert "queue is full" in str(exc).lower()
            rejected += 1
    # QUEUE_SIZE jobs could wait behind the blocker; the rest were told the queue is full.
    assert (finished, rejected) == (QUEUE_SIZE, 2)


def test_cancel_stops_a_long_run(server, images):
    client = Client(server, verbose=False)
    job = client.submit(*job_args(images, iterations=1000), api_name="/compare")
    wait_for_progress(job)
    assert "cancelled" in client.predict(api_name="/cancel")
    try:
        job.result(timeout=300)
    except concurrent.futures.CancelledError:
        pass
    # Counted in iterations, not seconds: the dense run stopped short of its 1000 and the pruned one never ran.
    reported = [re.search(r"(dense|pruned): iteration (\d+)/1000", str(out[0])) for out in job.outputs()]
    reported = [(m[1], int(m[2])) for m in reported if m]
    assert reported and {phase for phase, _ in reported} == {"dense"} and max(i for _, i in reported) < 1000, reported
    # The worker stopped: a new job is served right away, not after 1000 iterations.
    status, *_ = client.predict(*job_args(images, iterations=1), api_name="/compare")
    assert "done" in status


def test_fallback_to_random_weights_when_real_ones_cannot_load(tmp_path):
    """A weights file that does not exist stands in for 'offline with nothing cached':
    both end in a WeightsError, and the app must still start, with the banner."""
    port = free_port()
    proc = start_server(port, "--weights", str(tmp_path / "missing-vgg19.pth"), env={"NST_HOST": "127.0.0.1"})
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{port}/")
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).json()
        banner = next(c["props"] for c in config["components"] if c.get("props", {}).get("elem_id") == "weights-banner")
        assert banner["visible"] is True
        assert "missing-vgg19.pth" in banner["value"] and "results are not meaningful" in banner["value"]
    finally:
        stop_server(proc)


@pytest.mark.parametrize("how", ["server file", "upload", "hub"])
def test_pruned_checkpoint_from_a_file_an_upload_or_the_hub(server, images, checkpoint, hub, how):
    client = Client(server, verbose=False)
    kwargs = {
        "server file": {"choice": str(checkpoint)},
        "upload": {"upload": checkpoint},
        "hub": {"hub": f"{HUB_REPO}:{checkpoint.name}@{hub['commit']}"},
    }[how]
    status, *_, summary, layers = client.predict(*job_args(images, **kwargs), api_name="/compare")
    assert "done" in status and "Note" not in status  # same weight source as the dense network
    rows = table(summary)
    assert rows["checkpoint file size"][1] == f"{checkpoint.stat().st_size / 2**20:.2f} MiB"
    assert rows["compression vs dense (conv weights)"][1] == "6.64x"
    assert ("Hub checkpoint" in rows["network"][1]) == (how == "hub")
    assert {row[0]: row[4] for row in layers["data"]}["conv1_2"] == 0.9


def test_missing_hub_repo_is_a_readable_error(server, images):
    client = Client(server, verbose=False)
    with pytest.raises(AppError) as info:
        client.predict(*job_args(images, hub="tester/no-such-repo"), api_name="/compare")
    assert "tester/no-such-repo" in str(info.value) and "Traceback" not in str(info.value)


def test_uploads_over_the_size_limit_are_refused(server, images, tmp_path):
    big = tmp_path / "huge.png"
    big.write_bytes(os.urandom(11 * 2**20))  # over the default 10mb limit
    # The server itself refuses it (not only the client's check)...
    response = httpx.post(
        server + "gradio_api/upload", files={"files": ("huge.png", big.read_bytes(), "image/png")}, timeout=60
    )
    assert response.status_code == 413 and "maximum allowed size" in response.text
    # ...gradio_client says so before sending it...
    client = Client(server, verbose=False)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):
        client.predict(*job_args(images, content=big), api_name="/compare")
    # ...and small uploads still work.
    status, *_ = client.predict(*job_args(images, iterations=1), api_name="/compare")
    assert "done" in status


# --- the API as gradio_client and an MCP client see it -----------------------------------------

COMPARE_PARAMETERS = [
    "content",
    "styles",
    "size",
    "iterations",
    "optimizer",
    "style_strength",
    "tv_weight",
    "seed",
    "preserve_color",
    "pruned_choice",
    "pruned_upload",
    "hub_repo",
    "style_scale",
    "style_weights",
    "color",
    "mask",
    "style_masks",
    "time_budget",
]
COMPARE_RETURNS = [
    "Status",
    "Live preview",
    "Dense (left) vs pruned (right)",
    "Dense result",
    "Pruned result",
    "Timing, size and judged quality",
    "Per-layer sparsity of the pruned network",
]


def test_the_api_names_and_describes_every_parameter_and_output(server, images):
    client = Client(server, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/compare", "/cancel"} and not api["unnamed_endpoints"]
    compare_api = api["named_endpoints"]["/compare"]

    # The endpoint says what it does for its user, not how the handler is wired.
    assert compare_api["description"].startswith("Stylize a content image twice")
    assert "Gradio" not in compare_api["description"] and "RunValues" not in compare_api["description"]

    parameters = {p["parameter_name"]: p for p in compare_api["parameters"]}
    assert list(parameters) == COMPARE_PARAMETERS
    # The content and the styles are required; the upload and the Hub id are optional and default to
    # nothing, so a client can leave them out; the settings default to the page's values.
    required = {name for name, p in parameters.items() if not p["parameter_has_default"]}
    assert required == {"content", "styles"}
    assert (
        parameters["pruned_upload"]["parameter_default"] is None and parameters["hub_repo"]["parameter_default"] is None
    )
    assert parameters["pruned_choice"]["parameter_default"] == "fast:2"
    # Every parameter has a description, the same one an MCP client reads from the handler's docstring.
    _, mcp_descriptions, mcp_returns = get_function_description(RunHandler.run)
    for name, p in parameters.items():
        assert len(p["python_type"]["description"]) > 10, name
        assert p["python_type"]["description"] == mcp_descriptions[name], name
        assert not p["label"].startswith(("...", "value_", "parameter_", "param_")), p["label"]
    assert parameters["pruned_upload"]["python_type"]["description"].startswith("Optional.")
    assert parameters["hub_repo"]["python_type"]["description"].startswith("Optional.")

    returns = compare_api["returns"]
    assert [r["label"] for r in returns] == COMPARE_RETURNS
    assert all(len(r["python_type"]["description"]) > 10 for r in returns)
    assert len(mcp_returns) == len(returns)
    assert [r["label"] for r in api["named_endpoints"]["/cancel"]["returns"]] == ["Status"]

    # What gradio_client prints for a person: the call with its names, no internal ones.
    text = client.view_api(print_info=False, return_format="str")
    assert (
        "predict(content, styles, size, iterations, optimizer, style_strength, tv_weight, seed, preserve_color," in text
    )
    assert "pruned_upload: filepath | None (not required" in text
    assert "value_" not in text and "param_" not in text
    # ...and a call may leave the optional inputs out, by name.
    status, *_ = client.predict(
        content=handle_file(str(images["content"])),
        styles=[handle_file(str(images["style"]))],
        size=64,
        iterations=1,
        time_budget=0,
        api_name="/compare",
    )
    assert "done" in status


def test_a_bundled_example_is_computed_on_its_first_click_then_served_from_the_cache(server, examples_cache):
    """Lazy example caching: nothing is computed at start-up; the first click on an example (the
    browser calls /load_example with its index) runs the comparison at the page's default settings,
    later clicks get the same stored result without running it again."""
    assert not list(examples_cache.rglob("log.csv"))  # not at start-up
    client = Client(server, verbose=False)
    first = client.predict(0, api_name="/load_example")
    status, _preview, slider, dense, pruned, summary, _layers = first
    assert "done" in status and Image.open(dense).size == Image.open(pruned).size
    assert max(Image.open(dense).size) == 256  # the CPU default size
    # The CPU default is a time per picture, not a count: both runs are planned to fill it (at least half of it
    # used on any machine; a run planned by iterations would take a fixed count whatever the time).
    assert all(int(cell.split()[0]) > 1 for cell in table(summary)["iterations run"])
    assert all(float(s) >= CPU_SECONDS_PER_PICTURE / 2 for s in table(summary)["time (s)"])
    [indices] = examples_cache.rglob("indices.csv")
    assert indices.read_text().split() == ["0"]
    second = client.predict(0, api_name="/load_example")
    assert second[0] == status  # the same run's timings: read back, not run again
    assert indices.read_text().split() == ["0"]


# --- what errors repeat back, and what the server keeps -----------------------------------------


@pytest.mark.parametrize("name, data", [("evil.safetensors", b"\x00" * 64), ("evil.json", b"{not json")])
def test_a_bad_upload_is_named_by_its_own_file_name_never_a_server_path(server, images, tmp_path, name, data):
    bad = tmp_path / name
    bad.write_bytes(data)
    client = Client(server, verbose=False)
    with pytest.raises(AppError) as info:
        client.predict(*job_args(images, upload=bad), api_name="/compare")
    text = str(info.value)
    assert name in text
    # The server saved the upload under its temp folder; none of that path comes back.
    assert tempfile.gettempdir() not in text and "/gradio/" not in text and str(tmp_path) not in text
    assert "Traceback" not in text


def test_a_huge_repo_id_is_refused_and_not_echoed_whole(server, images):
    client = Client(server, verbose=False)
    huge = "me/" + "x" * 100_000
    with pytest.raises(ValidationError) as info:  # refused by the validator, before queueing
        client.predict(*job_args(images, hub=huge), api_name="/compare")
    text = str(info.value)
    assert "100,003 characters long" in text and f"at most {HUB_SPEC_LIMIT} characters" in text
    assert len(text) < MESSAGE_LIMIT
    # A long id within the limit reaches the Hub lookup and is refused there, still readably.
    with pytest.raises(AppError) as info:
        client.predict(*job_args(images, hub="me/" + "y" * 200), api_name="/compare")
    assert len(str(info.value)) <= MESSAGE_LIMIT + 30 and "Traceback" not in str(info.value)


def test_uploads_and_results_are_deleted_once_they_are_old(images, tmp_path):
    """`--keep-files` sets Gradio's delete_cache: files the app received or wrote go once they are
    that old, and the bundled examples, served from examples/ itself, keep working."""
    cache = tmp_path / "gradio-cache"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_server(port, "--weights", "random", "--keep-files", "3", env={"GRADIO_TEMP_DIR": str(cache)})
    try:
        wait_until_serving(proc, url)
        before = {p for p in cache.rglob("*") if p.is_file()}
        assert not {p.name for p in before} & {p.name for p in (ROOT / "examples").rglob("*.jpg")}  # never copied
        status, *_ = Client(url, verbose=False).predict(*job_args(images, iterations=1), api_name="/compare")
        assert "done" in status
        made = {p for p in cache.rglob("*") if p.is_file()} - before
        assert {"content.png", "style.jpg"} <= {p.name for p in made}  # the uploads...
        assert any(p.suffix == ".png" and p.name != "content.png" for p in made)  # ...and the results
        deadline = time.time() + 60
        while any(p.exists() for p in made):
            assert time.time() < deadline, f"still there after 60 s: {sorted(str(p) for p in made if p.exists())}"
            time.sleep(1)
        for example in (ROOT / "examples" / "content" / "lakeside.jpg", ROOT / "examples" / "style" / "swirls.jpg"):
            response = httpx.get(f"{url}gradio_api/file={example}", timeout=10)
            assert response.status_code == 200 and response.content == example.read_bytes()
    finally:
        stop_server(proc)


def test_a_released_checkpoint_is_the_default_comparison(checkpoint):
    """`--release` puts the checkpoint first in the dropdown and selects it (the real server's config)."""
    port = free_port()
    proc = start_server(port, "--weights", "random", "--release", str(checkpoint), env={"NST_HOST": "127.0.0.1"})
    try:
        wait_until_serving(proc, f"http://127.0.0.1:{port}/")
        config = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).json()
        dropdown = next(
            c["props"] for c in config["components"] if c.get("props", {}).get("elem_id") == "pruned-choice"
        )
        assert dropdown["value"] == str(checkpoint)
        assert dropdown["choices"][0][1] == str(checkpoint) and dropdown["choices"][0][0].endswith("[release]")
        assert any(spec == "fast:3" for _, spec in dropdown["choices"])
    finally:
        stop_server(proc)
    bad = subprocess.run(
        [sys.executable, "app.py", "--weights", "random", "--release", "/nonexistent.safetensors"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "--release /nonexistent.safetensors" in bad.stderr and "does not exist" in bad.stderr
