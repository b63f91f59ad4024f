"""One comparison as plain data, so it can cross ZeroGPU's process boundary (``spaces.GPU`` runs it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from nst_core.app.limits import RunLimits
from nst_core.app.zero_gpu import gpu_seconds, zero_gpu
from nst_core.core.devices import resolve_device
from nst_core.image.io import ImageSource
from nst_core.workflows import compare


@zero_gpu(duration=gpu_seconds)
def comparison_updates(
    dense: compare.DenseNetwork,
    content: ImageSource | None,
    styles: list[ImageSource | None] | None,
    settings: compare.CompareSettings,
    spec: str,
    cancel: threading.Event,
    limits: RunLimits,
) -> Iterator[tuple]:
    """``("progress", message, preview or None)`` per step, then
    ``("done", headline, dense image, pruned image, summary rows, layer rows)``, or
    ``("stopped", message, None)`` when ``limits.time_limit`` ran out first."""
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        cancel.set()

    timer = threading.Timer(limits.time_limit, stop)
    timer.daemon = True
    timer.start()
    try:
        net = compare.resolve_pruned(spec, dense.model)  # where start-up put it (on ZeroGPU the CPU), cached
        model, net = compare.placed(dense.model, net, resolve_device(limits.device))
        for event in compare.run_comparison(model, net, content, styles, settings, cancel=cancel):
            if isinstance(event, compare.Comparison):
                results = (event.dense.image, event.pruned.image, event.summary_rows(), event.sparsity_rows())
                yield ("done", _headline(event, net.notes), *results)
            else:
                yield ("progress", event.message, event.progress.preview if event.progress else None)
    except compare.Cancelled:
        if not timed_out.is_set():
            raise
        yield (
            "stopped",
            f"stopped: the time limit of {limits.time_limit:g} s per comparison was reached. Try a smaller size"
            " or fewer iterations.",
            None,
        )
    finally:
        timer.cancel()


def _headline(result: compare.Comparison, notes: list[str]) -> str:
    """The status line of a finished comparison: timings, speedup, SSIM, and the pruned network's notes."""
    return (
        f"done: dense {result.dense_seconds:.1f} s, pruned {result.pruned_seconds:.1f} s "
        f"({result.speedup:.2f}x), SSIM {result.judged['ssim']:.3f}." + "".join(f"<br>Note: {n}" for n in notes)
    )
