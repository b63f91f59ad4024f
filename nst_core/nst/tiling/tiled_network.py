"""The network applied tile by tile: features in a run's precision and layout, statistics summed over cores."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import cast

import torch

from nst_core.model.layers import convs_up_to
from nst_core.nst.cost import iteration_macs
from nst_core.nst.losses import LossPreset, Moments, Targets, at_least_fp32, style_moments, targets_from_stats
from nst_core.nst.network import FeatureNetwork, WrappedNetwork, device_of
from nst_core.nst.tiling.grid import Tile, halo_for, stride_of, tile_grid, whole_pixels


class EvaluationCancelled(Exception):
    """Raised between tiles when the run's cancel event is set (the step is abandoned, the image unchanged)."""


class TiledNetwork(WrappedNetwork):
    """The network applied tile by tile: features of a window in the run's precision and layout, and
    the additive style statistics of a whole image summed over tile cores. A :class:`FeatureNetwork`
    itself: calling it gives fp32 features of one window."""

    def __init__(
        self,
        model: FeatureNetwork,
        preset: LossPreset,
        tile: int,
        precision: str = "fp32",
        channels_last: bool = True,
        cancel: threading.Event | None = None,
        halo: int | None = None,
    ):
        self.model, self.preset, self.tile, self.precision = model, preset, tile, precision
        self.stride = stride_of(preset.last_layer, model.arch)
        self.halo = halo_for(tile, preset.last_layer, model.arch) if halo is None else halo
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.cancel = cancel

    def __call__(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """The network's features of ``x`` in fp32 (computed in the run's precision and layout)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return {n: at_least_fp32(f) for n, f in self.model(x.contiguous(memory_format=self.layout), layers).items()}

    def grid(self, height: int, width: int, generator: torch.Generator | None = None) -> list[Tile]:
        """The tiles of an image this size (shifted at random when a generator is given)."""
        return tile_grid(height, width, self.tile, self.stride, self.halo, generator)

    def check_cancel(self) -> None:
        """Raise :class:`EvaluationCancelled` once the cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise EvaluationCancelled

    def tile_moments(
        self,
        feats: dict[str, torch.Tensor],
        tile: Tile,
        guides: Sequence[torch.Tensor | None],
        height: int,
        width: int,
    ) -> list[dict[str, Moments]]:
        """Style statistics of one tile's core, per region, on the common scale of the whole image.

        The core enters as a 0/1 pixel guide over the window (times the region's own guide): core
        edges lie on the stride, so every layer's pooled guide is exactly 0 or 1.
        """
        core = torch.zeros(
            (1, 1, tile.bottom - tile.top, tile.right - tile.left), device=next(iter(feats.values())).device
        )
        core[
            ...,
            tile.core_top - tile.top : tile.core_bottom - tile.top,
            tile.core_left - tile.left : tile.core_right - tile.left,
        ] = 1
        windows = [core if g is None else core * tile.window(g) for g in guides]
        scale = {n: 1.0 / whole_pixels(height, width, n) for n in self.preset.style_layers}
        return style_moments(feats, self.preset, windows, scale)

    @torch.no_grad()
    def moments(
        self, image: torch.Tensor, tiles: list[Tile], guides: Sequence[torch.Tensor | None]
    ) -> list[dict[str, Moments]]:
        """The whole ``image``'s style statistics per region, summed over the cores of ``tiles``."""
        height, width = image.shape[-2:]
        total: list[dict[str, Moments]] = [{} for _ in guides]
        for t in tiles:
            self.check_cancel()
            feats = self(t.window(image), list(self.preset.style_layers))
            for summed, part in zip(total, self.tile_moments(feats, t, guides, height, width)):
                for n, m in part.items():
                    summed[n] = summed[n] + m if n in summed else m
        return total


def tiled_targets(
    net: TiledNetwork,
    styles: list[torch.Tensor],
    blend: Sequence[float] | None = None,
    guides: list[torch.Tensor] | None = None,
) -> Targets:
    """Style targets from style images of any size, computed tile by tile (a fixed grid); no content
    features: a :class:`~nst_core.nst.tiling.TiledEvaluator` takes its content targets window by window."""
    stats = [net.moments(style, net.grid(*style.shape[-2:]), [None])[0] for style in styles]
    return targets_from_stats({}, stats, blend, guides)


def measure_macs_per_second(
    model: FeatureNetwork, preset: LossPreset, precision: str = "fp32", side: int = 128
) -> float:
    """Conv MACs per second of a step on ``model``'s device: one timed forward and backward of a ``side`` px image."""
    device = device_of(model)
    net = TiledNetwork(model, preset, side, precision)
    image = (
        torch.rand((1, 3, side, side), generator=torch.Generator().manual_seed(0))
        .mul(255)
        .to(device)
        .requires_grad_(True)
    )
    net(image[..., :32, :32], preset.layers)  # warm-up: first-call overheads are not throughput
    started = time.perf_counter()
    feats = net(image, preset.layers)
    cast(torch.Tensor, sum(f.square().mean() for f in feats.values())).backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = max(time.perf_counter() - started, 1e-6)
    widths = {n: model.widths[n] for n in convs_up_to(preset.last_layer, model.arch)}
    return iteration_macs(widths, side, side, model.arch) / elapsed
