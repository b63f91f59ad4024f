"""The app as a Hugging Face Space runs it: a real `python app.py` subprocess with a Space's
environment, driven over HTTP (httpx, gradio_client and an MCP client).

- ``SPACE_ID`` set (every Space sets it): random weights are refused with an error page, unless
  ``NST_ALLOW_RANDOM=1``.
- ZeroGPU (``SPACES_ZERO_GPU``): the real ``spaces`` package cannot run here (it needs a ZeroGPU
  Space, and this machine has no GPU), so tests/support/spaces_standin/spaces stands in for it on the
  server's path and records what the app does with it: which functions are decorated, the GPU
  seconds each call asks for, and on which device every forward pass ran, inside a call or not.
- The time limit, the validator that runs before a request takes a queue slot, and the MCP
  tool list served by the real server (``--mcp``).

Random weights keep every job to seconds on a CPU (NST_ALLOW_RANDOM=1 where the app must serve).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError, ValidationError  # noqa: E402

from nst_core.app.limits import RunLimits  # noqa: E402
from nst_core.app.zero_gpu import GPU_FIXED_S, GPU_MACS_PER_S, gpu_seconds  # noqa: E402
from nst_core.model.weight_spec import parse_hub_spec  # noqa: E402
from nst_core.nst.cost import iteration_macs  # noqa: E402
from nst_core.workflows import compare  # noqa: E402

from support.app_server import ROOT, free_port, start_server, stop_server, wait_until_serving  # noqa: E402

pytestmark = pytest.mark.slow  # real app servers started as a Space would start them

STANDIN = Path(__file__).resolve().parent / "support" / "spaces_standin"
SPACE_ID = "tester/nst-space"
TIME_LIMIT = 12
CONTENT, STYLE = ROOT / "examples" / "content" / "lakeside.jpg", ROOT / "examples" / "style" / "swirls.jpg"


def space_env(**extra: str) -> dict[str, str]:
    return {"SPACE_ID": SPACE_ID, "NST_HOST": "127.0.0.1", **extra}


def components(url: str) -> dict[str, dict]:
    """The page's components with an elem_id, by elem_id (their props)."""
    config = httpx.get(url + "config", timeout=10).json()
    return {c["props"]["elem_id"]: c["props"] for c in config["components"] if c.get("props", {}).get("elem_id")}


def job(size: int = 64, iterations: int = 2, **overrides) -> dict:
    values = dict(
        content=handle_file(str(CONTENT)),
        styles=[handle_file(str(STYLE))],
        size=size,
        iterations=iterations,
        optimizer="adam",
        style_strength=1.0,
        tv_weight=1e-3,
        seed=0,
        preserve_color=False,
        pruned_choice="profile:seed",
    )
    return values | overrides


# --- random weights on a Space --------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["missing", "random"])
def test_a_space_refuses_random_weights_with_an_error_page(tmp_path, weights):
    """Weights that cannot be loaded (a missing file stands in for an unreachable URL) or asked-for
    random ones: under SPACE_ID the page says why and how to fix it, and nothing can be computed."""
    spec = str(tmp_path / "vgg19-missing.pth") if weights == "missing" else "random"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_server(port, "--weights", spec, env=space_env())
    try:
        wait_until_serving(proc, url)
        page = components(url)
        assert set(page) == {"refusal"}  # no inputs, no results, no banner-and-run
        text = page["refusal"]["value"]
        assert "has no VGG-19 weights" in text and "serves no results" in text
        assert "NST_WEIGHTS" in text and "preload_from_hub" in text and "NST_ALLOW_RANDOM=1" in text
        if weights == "missing":
            assert "vgg19-missing.pth" in text
        api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
        assert not api["named_endpoints"] and not api["unnamed_endpoints"]
        response = httpx.post(url + "gradio_api/call/compare", json={"data": []}, timeout=10)
        assert (
            response.status_code >= 400 and "event_id" not in response.text
        )  # Gradio 6.31 answers 500: no such endpoint
    finally:
        log = stop_server(proc)
    assert "refusing to serve random weights" in log


def test_the_space_readme_preloads_the_file_that_nst_weights_names():
    """space/README.md's YAML (read by huggingface_hub, as the Hub reads it) preloads the weights
    repo it lists under models, and the NST_WEIGHTS its steps set names a file of that preload."""
    from huggingface_hub import metadata_load

    readme = ROOT / "space" / "README.md"
    meta = metadata_load(readme)
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    repo, files = meta["preload_from_hub"][0].split()[:2]
    assert meta["models"] == [repo] and "timm/vgg19.tv_in1k" not in readme.read_text()
    specs = set(re.findall(r"`NST_WEIGHTS` = `(hf:[^`]+)`", readme.read_text()))
    assert len(specs) == 1
    spec = parse_hub_spec(specs.pop())
    assert spec.repo == repo and spec.filename in files.split(",") and "config.json" in files.split(",")


@pytest.fixture(scope="module")
def record_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spaces") / "record.jsonl"


@pytest.fixture(scope="module")
def space(record_path):
    """A ZeroGPU Space's app with NST_ALLOW_RANDOM=1: the stand-in `spaces` on its path, a time
    limit, a queue of one and the MCP server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    path = os.pathsep.join(p for p in (str(STANDIN), os.environ.get("PYTHONPATH", ""), str(ROOT)) if p)
    env = space_env(
        NST_ALLOW_RANDOM="1",
        SPACES_ZERO_GPU="true",
        NST_SPACES_RECORD=str(record_path),
        PYTHONPATH=path,
    )
    proc = start_server(
        port,
        "--weights",
        "random",
        "--time-limit",
        str(TIME_LIMIT),
        "--queue-size",
        "1",
        "--mcp",
        env=env,
    )
    try:
        wait_until_serving(proc, url)
        yield {"url": url, "proc": proc}
    finally:
        log = stop_server(proc)
    assert "comparison failed" not in log, log


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_with_allow_random_a_space_serves_and_every_page_says_random(space):
    page = components(space["url"])
    assert page["weights-banner"]["visible"] is True and "results are not meaningful" in page["weights-banner"]["value"]
    status, *_ = Client(space["url"], verbose=False).predict(**job(), api_name="/compare")
    assert "done" in status


# --- ZeroGPU ----------------------------------------------------------------------------------------


def test_zero_gpu_start_up_stays_on_the_cpu_and_runs_inside_spaces_gpu(space, record_path):
    log_text = Path(space["proc"].log_path).read_text()
    assert "start-up work on cpu (ZeroGPU" in log_text
    before = records(record_path)
    # One function is decorated, with a duration computed per call, not a fixed number.
    assert [r for r in before if r["event"] == "decorate"] == [
        {"event": "decorate", "function": "comparison_updates", "duration": "dynamic"}
    ]
    # Start-up ran forward passes (the warm-up), all on the CPU and none inside a GPU call.
    first_call = next((i for i, r in enumerate(before) if r["event"] == "call"), len(before))
    startup = [r for r in before[:first_call] if r["event"] == "forward"]
    assert startup and {(r["device"], r["inside"]) for r in startup} == {("cpu", False)}

    status, *_ = Client(space["url"], verbose=False).predict(**job(size=96, iterations=3), api_name="/compare")
    assert "done" in status
    new = records(record_path)[len(before) :]
    calls = [r for r in new if r["event"] == "call"]
    assert [c["function"] for c in calls] == ["comparison_updates"]
    dense = compare.load_dense("random", device="cpu")
    settings = compare.CompareSettings(size=96, iterations=3)
    assert calls[0]["duration"] == gpu_seconds(dense, None, None, settings, "profile:seed", None, RunLimits(TIME_LIMIT))
    # Every forward pass of the run (both stylizations and the judge) happened inside the GPU call.
    forwards = [r for r in new if r["event"] == "forward"]
    assert forwards and all(r["inside"] for r in forwards)


def test_on_zero_gpu_the_device_is_chosen_inside_the_gpu_function(tmp_path):
    """`--device cuda` on this GPU-less machine: a plain app refuses to start, a ZeroGPU one starts
    (start-up needs no CUDA: it loads, prunes and warms up on the CPU) and only the run, inside
    spaces.GPU, asks for CUDA, which is the one place ZeroGPU provides it (here: a readable error)."""
    record = tmp_path / "record.jsonl"
    path = os.pathsep.join(p for p in (str(STANDIN), os.environ.get("PYTHONPATH", ""), str(ROOT)) if p)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = space_env(NST_ALLOW_RANDOM="1", SPACES_ZERO_GPU="1", NST_SPACES_RECORD=str(record), PYTHONPATH=path)
    proc = start_server(port, "--weights", "random", "--device", "cuda", env=env)
    try:
        wait_until_serving(proc, url)
        startup = records(record)
        assert {(r["device"], r["inside"]) for r in startup if r["event"] == "forward"} == {("cpu", False)}
        with pytest.raises(AppError) as info:
            Client(url, verbose=False).predict(**job(iterations=1), api_name="/compare")
        assert "device 'cuda': no CUDA GPU is available" in str(info.value)
        assert [r["function"] for r in records(record) if r["event"] == "call"] == ["comparison_updates"]
    finally:
        stop_server(proc)
    plain = start_server(free_port(), "--weights", "random", "--device", "cuda", env={"NST_HOST": "127.0.0.1"})
    assert plain.wait(timeout=120) != 0
    assert "no CUDA GPU is available" in stop_server(plain)


def test_gpu_seconds_grow_with_size_and_iterations_and_stop_at_the_time_limit():
    dense = compare.load_dense("random", device="cpu")
    limits = RunLimits(time_limit=3600)

    def seconds(size: int, iterations: int, limits: RunLimits = limits) -> int:
        return gpu_seconds(
            dense, None, None, compare.CompareSettings(size=size, iterations=iterations), "", None, limits
        )

    # Both runs' conv MACs at a square `size`, at the assumed throughput, plus the fixed costs.
    macs = iteration_macs(dense.model.widths, 512, 512)
    assert seconds(512, 300) == int(GPU_FIXED_S + 2 * 300 * macs / GPU_MACS_PER_S) + 1
    assert seconds(64, 1) == GPU_FIXED_S + 1  # a tiny job asks for little more than the fixed costs
    assert seconds(512, 300) < seconds(512, 600) < seconds(1024, 600)
    variable = {size: seconds(size, 1000) - GPU_FIXED_S for size in (256, 512)}
    assert 3.5 < variable[512] / variable[256] < 4.5  # four times the pixels, about four times the work
    # Never more than the run may take: it is stopped at the time limit.
    assert seconds(1024, 1000, RunLimits(time_limit=30)) == GPU_FIXED_S + 30 + 1


# --- Gradio: time limit, validator ------------------------------------------------------------------


def wait_for_progress(submitted, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not any("iteration" in str(out[0]) for out in submitted.outputs()):
        assert time.time() < deadline and not submitted.done(), "no progress update"
        time.sleep(0.2)


def test_the_time_limit_stops_a_long_run_and_the_page_says_so(space):
    page = components(space["url"])
    assert f"stopped after **{TIME_LIMIT} s**" in page["time-limit"]["value"]
    client = Client(space["url"], verbose=False)
    started = time.time()
    status, *_ = client.predict(**job(size=128, iterations=1000), api_name="/compare")
    assert f"stopped: the time limit of {TIME_LIMIT} s per comparison was reached" in status
    assert time.time() - started < TIME_LIMIT + 60  # 1000 iterations at 128 px take minutes on this CPU
    status, *_ = client.predict(**job(iterations=1), api_name="/compare")  # the worker is free again
    assert "done" in status


def test_the_validator_refuses_bad_input_before_it_takes_a_queue_slot(space):
    """The queue holds one waiting request. With the worker busy, a bad request is refused at once,
    every bad input named, and the one slot is still free for a good request afterwards."""
    blocker = Client(space["url"], verbose=False).submit(**job(size=128, iterations=1000), api_name="/compare")
    wait_for_progress(blocker)
    with pytest.raises(ValidationError) as info:
        Client(space["url"], verbose=False).predict(
            **job(tv_weight=-1.0, size=4096, styles=[], pruned_choice="/etc/passwd.safetensors"), api_name="/compare"
        )
    assert not blocker.done()  # refused while the worker was still busy, without waiting for it
    text = str(info.value)
    assert "4 parameter(s) failed validation" in text
    # A ZeroGPU Space runs on a GPU, so it offers the GPU's sizes (compare.GPU_MAX_SIZE), not the CPU's 1024.
    assert f"- size: size must be between 64 and {compare.GPU_MAX_SIZE}, not 4096" in text
    assert "- tv_weight: TV weight must be between 0.0 and 1.0, not -1.0" in text
    assert "- styles: upload one to 4 style images, not 0" in text
    assert "- pruned_choice: pruned_choice '/etc/passwd.safetensors' is not one of the offered networks" in text
    # The bad request took no slot: a good one still gets the only one, and runs after the blocker.
    waiting = Client(space["url"], verbose=False).submit(**job(iterations=1), api_name="/compare")
    assert "done" in waiting.result(timeout=TIME_LIMIT + 120)[0]
    assert "stopped: the time limit" in blocker.result(timeout=60)[0]


# --- MCP --------------------------------------------------------------------------------------------


def test_mcp_serves_the_comparison_as_a_described_tool(space):
    mcp = pytest.importorskip("mcp", reason="the MCP client comes with gradio[mcp] (requirements.txt)")
    from mcp.client.streamable_http import streamable_http_client

    async def list_tools():
        async with streamable_http_client(space["url"] + "gradio_api/mcp/") as (read, write, _):
            async with mcp.ClientSession(read, write) as session:
                await session.initialize()
                return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in asyncio.run(list_tools())}
    # Named after the handlers (on a real Space Gradio prefixes the Space's name; it knows it is on
    # one from the Spaces system variables, not from SPACE_ID alone).
    assert set(tools) == {"run", "cancel_run"}
    tool = tools["run"]
    assert tool.description.startswith("Stylize a content image twice")
    assert "VGG-19 weights: random:0 (random: results are not meaningful)" in tool.description
    assert f"stopped after {TIME_LIMIT} s" in tool.description
    properties = tool.inputSchema["properties"]
    assert list(properties)[:3] == ["content", "styles", "size"] and "hub_repo" in properties
    assert all(len(p.get("description", "")) > 10 for p in properties.values())
