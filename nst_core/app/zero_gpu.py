"""ZeroGPU's glue: on a ZeroGPU Space CUDA exists only inside ``spaces.GPU`` functions, each call asking
for the seconds it needs; everywhere else the decorator does nothing.

What a request asks for is an estimate, not measured here (no GPU on the build machine): fixed costs
(copying the networks to the GPU, CUDA start, the judge) plus the conv MACs of both runs at an
assumed, deliberately low fp32 throughput of a ZeroGPU slice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from nst_core.app.limits import RunLimits
from nst_core.nst.cost import iteration_macs
from nst_core.workflows.compare import CompareSettings, DenseNetwork

#: Set by Hugging Face on a ZeroGPU Space: CUDA work is allowed only inside ``spaces.GPU`` functions.
ZERO_GPU_ENV = "SPACES_ZERO_GPU"
GPU_FIXED_S = 20
GPU_MACS_PER_S = 5e12


def zero_gpu(duration: Callable[..., int]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``spaces.GPU`` on a ZeroGPU Space; a no-op decorator everywhere else (package absent).

    ``duration`` is called with the decorated function's arguments and returns the seconds to
    ask for (spaces' dynamic duration), so a small job does not reserve a GPU for long.
    """
    try:
        import spaces  # only installed on Hugging Face Spaces, so imported here and optional
    except ImportError:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def on_zero_gpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (where CUDA exists only inside ``spaces.GPU``)."""
    return os.environ.get(ZERO_GPU_ENV, "").strip().lower() in ("1", "true", "yes")


def gpu_seconds(
    dense: DenseNetwork,
    content: str | None,
    styles: list[str] | None,
    settings: CompareSettings,
    spec: str,
    cancel: threading.Event | None,
    limits: RunLimits,
) -> int:
    """The seconds of GPU a comparison asks ZeroGPU for (``spaces.GPU``'s dynamic duration; it is called
    with ``comparison_updates``' arguments): the fixed costs plus both runs' conv MACs at a square
    ``size`` (the most an image of that longer side costs), never more than the time limit allows (the
    run is stopped then)."""
    if settings.time_budget:  # each run plans itself into its budget
        return int(min(GPU_FIXED_S + 2 * float(settings.time_budget), GPU_FIXED_S + limits.time_limit)) + 1
    side = int(settings.size)
    work = 2 * int(settings.iterations) * iteration_macs(dense.model.widths, side, side)  # dense + pruned (at most)
    return int(min(GPU_FIXED_S + work / GPU_MACS_PER_S, GPU_FIXED_S + limits.time_limit)) + 1
