"""What the server allows each comparison: its time, its size, its memory, how long files stay."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nst_core.workflows.settings import GPU_MAX_SIZE, SIZE_RANGE

#: How long uploads and results stay on the server: long enough to download a result, short
#: enough that a public Space's disk does not fill up.
KEEP_FILES_S = 3600
#: How long one comparison may run before it is stopped, so one huge job cannot hold the only
#: worker for hours (a 1024 px, 1000-iteration CPU run would). Gradio's own ``time_limit`` applies
#: only to streaming events (``.stream()``, Gradio 6.31), so the run's cancel flag enforces it.
TIME_LIMIT_S = 300


@dataclass(frozen=True)
class RunLimits:
    """How each comparison runs: plain data, so it crosses ZeroGPU's process boundary."""

    time_limit: float = TIME_LIMIT_S  # seconds, then the run is stopped
    device: str = "auto"  # resolved inside the GPU function: on ZeroGPU CUDA exists only there


def size_limits(
    device: torch.device, max_size: int | None = None, zero_gpu_space: bool = False
) -> tuple[int, int | None]:
    """The largest size a request may ask for and each run's memory budget on ``device``.

    On a GPU: up to ``GPU_MAX_SIZE`` (or ``max_size``), within 90% of its memory (what does not fit
    whole is tiled, as ``nst stylize --max-memory`` does); on ZeroGPU the same size, with no budget
    (the GPU is attached per run, so its memory is unknown here); elsewhere ``SIZE_RANGE``'s bound
    unless ``max_size`` says more, with no budget.
    """
    if device.type == "cuda":
        budget = int(0.9 * torch.cuda.get_device_properties(device).total_memory)
        return max_size or GPU_MAX_SIZE, budget
    if zero_gpu_space:
        return max_size or GPU_MAX_SIZE, None
    return max_size or SIZE_RANGE[1], None
