"""Dense vs pruned, side by side: the orchestration behind the app (importable without Gradio).

One comparison runs the dense VGG-19 and a pruned one on the same inputs with the same
``StylizeConfig`` (so the same seed and the same init), then scores both outputs with the
dense judge (DESIGN.md: a pruned network is never judged by its own loss). The app only
turns the events of :func:`run_comparison` into widgets.

The comparison's parts, each in its own module and importable from here:
:mod:`~nst_core.workflows.compare_settings` (what a person sets, from the settings table),
:mod:`~nst_core.workflows.dense` (the dense network) and :mod:`~nst_core.workflows.pruned`
(which pruned network: a spec string such as ``profile:seed``).

>>> s = default_settings(gpu=False)
>>> validate_settings(s)
>>> describe_pruned_spec("profile:seed")
'seed profile (fine-grained, pruned on the fly)'
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from nst_core.compress.pruning import sparsity_report
from nst_core.core.errors import UserError
from nst_core.core.validation import cut
from nst_core.image.io import ImageSource, input_label, load_image
from nst_core.model.layers import DENSE_WIDTHS, min_input_side
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.losses import get_preset
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import (
    OPTIMIZERS,
    Progress,
    RunInputs,
    StylizeConfig,
    StylizeResult,
    load_run_inputs,
    prepare,
    prepare_run,
    style_load_side,
    stylize,
)
from nst_core.workflows.compare_settings import (
    CPU_SECONDS_PER_PICTURE,
    CompareSettings,
    default_settings,
    validate_settings,
)
from nst_core.workflows.dense import DEFAULT_WEIGHTS, RANDOM_WEIGHTS, DenseNetwork, load_dense
from nst_core.workflows.pruned import (
    DEFAULT_PRUNED,
    HUB_SPEC_LIMIT,
    PrunedNetwork,
    default_pruned,
    describe_pruned_spec,
    named_choices,
    placed,
    pruned_spec_from_ui,
    resolve_pruned,
)
from nst_core.workflows.settings import GPU_MAX_SIZE, MAX_STYLES, PRESET, SIZE_RANGE

# What callers use from here (each defined in the module it is imported from).
__all__ = [
    "CPU_SECONDS_PER_PICTURE",
    "DEFAULT_PRUNED",
    "DEFAULT_WEIGHTS",
    "GPU_MAX_SIZE",
    "HUB_SPEC_LIMIT",
    "MAX_STYLES",
    "MESSAGE_LIMIT",
    "PRESET",
    "RANDOM_WEIGHTS",
    "SIZE_RANGE",
    "Cancelled",
    "CompareSettings",
    "Comparison",
    "DenseNetwork",
    "PrunedNetwork",
    "RunProgress",
    "default_pruned",
    "default_settings",
    "describe_pruned_spec",
    "load_dense",
    "load_inputs",
    "named_choices",
    "placed",
    "public_message",
    "pruned_spec_from_ui",
    "resolve_pruned",
    "run_comparison",
    "validate_settings",
    "warm_up",
]

#: Error messages go back to whoever sent the request, so they stay one readable line of at most this many characters.
MESSAGE_LIMIT = 500


def public_message(message: str, uploads: Iterable[str | None] = ()) -> str:
    """An error message as the app shows it: each uploaded file named by its own file name,
    never by the server's temporary path, and the whole cut to ``MESSAGE_LIMIT`` characters.

    >>> public_message("/tmp/gradio/3f/evil.safetensors: not a safetensors file", ["/tmp/gradio/3f/evil.safetensors"])
    'evil.safetensors: not a safetensors file'
    """
    for path in uploads:
        if path:
            message = message.replace(str(path), Path(path).name)
    return cut(message, MESSAGE_LIMIT)


def warm_up(model: VGGFeatures) -> None:
    """Two tiny stylizations (one per optimizer), so the first person's timings do not include
    one-time start-up costs (lazy imports inside torch.optim, thread pools, allocator) that
    land on whichever run goes first, the dense one, and would flatter the pruned one."""
    img = Image.new("RGB", (64, 64), (120, 130, 140))
    for optimizer in OPTIMIZERS:
        stylize(prepare(model, img, [img], StylizeConfig(preset=PRESET, size=64, iterations=2, optimizer=optimizer)))


# --- running both ------------------------------------------------------------------------------


@dataclass
class RunProgress:
    """One step of either run, for live status and previews."""

    phase: str  # "dense" | "pruned" | "judge"
    progress: Progress | None
    message: str


@dataclass
class Comparison:
    """Both runs' results, their timings and the dense judge's verdict: the end of a comparison."""

    dense: StylizeResult
    pruned: StylizeResult
    dense_seconds: float
    pruned_seconds: float
    judged: dict[str, float]  # content_ratio, style_ratio, ssim, perceptual (pruned vs dense; see Judge.compare)
    dense_losses: dict[str, float]
    pruned_losses: dict[str, float]
    dense_network: VGGFeatures
    pruned_network: PrunedNetwork
    settings: CompareSettings

    @property
    def speedup(self) -> float:
        """Dense wall time over pruned wall time (NaN when the pruned run took no measurable time)."""
        return self.dense_seconds / self.pruned_seconds if self.pruned_seconds > 0 else float("nan")

    def summary_rows(self) -> list[list[str]]:
        """[metric, dense, pruned] rows for the results table."""
        d_rep, p_rep = sparsity_report(self.dense_network), sparsity_report(self.pruned_network.model)
        d_params = d_rep.total_weights + d_rep.total_biases
        p_params = p_rep.total_weights + p_rep.total_biases
        size = self.pruned_network.file_bytes
        j = self.judged
        it_d, it_p = len(self.dense.history), len(self.pruned.history)
        return [
            [
                "network",
                f"dense {self.dense_network.architecture.title} ({self.dense_network.weight_source})",
                self.pruned_network.label,
            ],
            ["time (s)", f"{self.dense_seconds:.2f}", f"{self.pruned_seconds:.2f}"],
            ["speedup vs dense", "1.00x", f"{self.speedup:.2f}x"],
            [
                "ms per iteration",
                f"{1000 * self.dense.timings.get('per_iteration', 0):.0f}",
                f"{1000 * self.pruned.timings.get('per_iteration', 0):.0f}",
            ],
            ["iterations run", f"{it_d} ({self.dense.stopped})", f"{it_p} ({self.pruned.stopped})"],
            ["parameters (conv weights + biases)", f"{d_params:,}", f"{p_params:,}"],
            ["nonzero parameters", f"{d_rep.total_kept_parameters:,}", f"{p_rep.total_kept_parameters:,}"],
            ["compression vs dense (conv weights)", "1.00x", f"{p_rep.compression:.2f}x"],
            ["checkpoint file size", "-", _mib(size) if size is not None else "- (pruned on the fly, no file)"],
            ["judge: SSIM vs dense output", "1.000", f"{j['ssim']:.3f}"],
            [
                "judge: content loss (dense network)",
                f"{self.dense_losses['content']:.4g}",
                f"{self.pruned_losses['content']:.4g}",
            ],
            [
                "judge: style loss (dense network)",
                f"{self.dense_losses['style']:.4g}",
                f"{self.pruned_losses['style']:.4g}",
            ],
            ["judge: content loss ratio vs dense", "1.000", f"{j['content_ratio']:.3f}"],
            ["judge: style loss ratio vs dense", "1.000", f"{j['style_ratio']:.3f}"],
        ] + (
            [["judge: perceptual distance to dense output (LPIPS, unlearned)", "0.000", f"{j['perceptual']:.3f}"]]
            if "perceptual" in j
            else []
        )

    def sparsity_rows(self) -> list[list]:
        """[layer, channels, weights, nonzeros, sparsity vs dense] per conv of the pruned network."""
        rows = []
        for r in sparsity_report(self.pruned_network.model).rows:
            width = self.pruned_network.model.widths[r.name]
            channels = f"{width}" if width == DENSE_WIDTHS[r.name] else f"{width} / {DENSE_WIDTHS[r.name]}"
            rows.append([r.name, channels, r.weights, r.nonzeros, round(1.0 - r.nonzeros / r.dense_weights, 4)])
        return rows


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


def load_inputs(
    content: ImageSource | None, styles: list[ImageSource | None] | None, size: int, style_side: int | None = None
) -> tuple[Image.Image, list[Image.Image]]:
    """Uploads -> RGB images at most ``size`` px (styles at most ``style_side``, when given), with errors
    that name the file."""
    if content is None:
        raise UserError("upload a content image")
    given = [s for s in (styles or []) if s is not None]
    if not given:
        raise UserError("upload at least one style image")
    if len(given) > MAX_STYLES:
        raise UserError(f"at most {MAX_STYLES} style images, not {len(given)}")
    need = min_input_side(get_preset(PRESET).last_layer)
    content_img = load_image(
        content, max_side=size, name=input_label("content image", content, full_path=False), min_side=need
    )
    style_imgs = [
        load_image(
            s, max_side=style_side or size, name=input_label(f"style image {i + 1}", s, full_path=False), min_side=need
        )
        for i, s in enumerate(given)
    ]
    return content_img, style_imgs


class Cancelled(UserError):
    """The person pressed cancel."""


def run_comparison(
    dense: VGGFeatures,
    pruned: PrunedNetwork,
    content: ImageSource | None,
    styles: list[ImageSource | None] | None,
    settings: CompareSettings,
    cancel: threading.Event | None = None,
    previews: int = 8,
) -> Iterator[RunProgress | Comparison]:
    """Run dense then pruned with one config (same seed, same init), judge, and yield as it goes.

    Yields :class:`RunProgress` events (about ``previews`` of them per run carry a preview
    image) and finally one :class:`Comparison`. The work runs in a thread so events stream
    while it computes; closing the generator early (the app's cancel) sets ``cancel`` and the
    runs stop at their next iteration. Raises :class:`Cancelled` when cancelled, and the
    UserError of any bad input.
    """
    validate_settings(settings)
    config = settings.to_config(preview_every=max(1, int(settings.iterations) // max(1, previews)))
    content_img, style_imgs = load_inputs(
        content, styles, int(settings.size), style_load_side(config.size, config.style_scale)
    )
    inputs = load_run_inputs(content_img, style_imgs, config)  # validated once; both networks run on these
    cancel = cancel or threading.Event()
    # Built after both runs, in the worker: the judge's own forward passes wait their turn.
    make_judge = functools.partial(
        Judge,
        dense,
        PRESET,
        content_img,
        style_imgs,
        int(settings.size),
        blend=config.style_blend,
        preserve_color=settings.preserve_color,
    )

    def work(emit: Callable[[object], None]) -> None:
        _run_both_and_judge(dense, pruned, inputs, settings, make_judge, cancel, emit)

    yield from _streamed(work, cancel)


def _run_both_and_judge(
    dense: VGGFeatures,
    pruned: PrunedNetwork,
    inputs: RunInputs,
    settings: CompareSettings,
    make_judge: Callable[[], Judge],
    cancel: threading.Event,
    emit: Callable[[object], None],
) -> None:
    """Stylize with the dense network, then the pruned one, on the same inputs; emit progress, then the Comparison."""
    results = {}
    for phase, model in (("dense", dense), ("pruned", pruned.model)):

        def report(p: Progress, phase=phase) -> None:
            emit(
                RunProgress(
                    phase, p, f"{phase}: iteration {p.iteration}/{p.total}, loss {p.losses.get('total', 0):.4g}"
                )
            )

        emit(RunProgress(phase, None, f"{phase}: starting"))
        started = time.perf_counter()
        # Planned just before its run: a memory budget counts what the run before it left held.
        result = stylize(prepare_run(model, inputs), callback=report, cancel=cancel)
        results[phase] = (result, time.perf_counter() - started)
        if result.stopped == "cancelled":
            raise Cancelled("cancelled")
    emit(RunProgress("judge", None, "judging both outputs with the dense network"))
    judge = make_judge()
    (d_res, d_s), (p_res, p_s) = results["dense"], results["pruned"]
    judged = judge.compare(p_res.image, d_res.image)
    emit(
        Comparison(
            d_res,
            p_res,
            d_s,
            p_s,
            judged,
            judge.losses(d_res.image),
            judge.losses(p_res.image),
            dense,
            pruned,
            settings,
        )
    )


def _streamed(work: Callable[[Callable[[object], None]], None], cancel: threading.Event) -> Iterator[Any]:
    """Run ``work(emit)`` in a thread and yield what it emits as it comes; its exception is raised here.

    Closing the generator early (the app's cancel) sets ``cancel`` so the work stops at its next iteration.
    """
    events: queue.Queue = queue.Queue()
    done = object()

    def target() -> None:
        try:
            work(events.put)
        except BaseException as exc:  # handed to the consumer, who re-raises it in its own thread
            events.put(exc)
        finally:
            events.put(done)

    worker = threading.Thread(target=target, name="nst-compare", daemon=True)
    worker.start()
    try:
        while True:
            item = events.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Reached on normal end, on error, and when the consumer closes us (cancel): stop the work.
        cancel.set()
        worker.join(timeout=30)
