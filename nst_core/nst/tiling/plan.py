"""The plan of a run: which coarse-to-fine scales to tile, with which tile side, within a memory budget."""

from __future__ import annotations

from dataclasses import dataclass

from nst_core.core.errors import UserError
from nst_core.model.layers import DEFAULT_ARCH, ArchLike, widths_architecture
from nst_core.nst.cost import conv_macs, iteration_macs
from nst_core.nst.losses import LossPreset
from nst_core.nst.memory import format_bytes, largest_tile, min_tile, predict_step_peak
from nst_core.nst.tiling.grid import halo_for, stride_of, tile_grid

#: At most this many coarse-to-fine scales (as ``StylizeConfig.scales`` allows).
MAX_SCALES = 6


@dataclass(frozen=True)
class TilePlan:
    """What a run does at each scale: ``tiles[k]`` is the tile side at scale k, or None to run it whole."""

    sizes: list[tuple[int, int]]  # (w, h) per scale, coarse to fine
    tiles: list[int | None]
    predicted_peak: int  # bytes the run adds to what the process (or device) holds, at its largest step
    budget: int | None  # bytes the run may add (the budget less what is already held), None: no budget
    added_scales: int = 0  # coarser scales added so the composition is set untiled
    arch: str = DEFAULT_ARCH  # the network's architecture: its receptive fields set the halos

    @property
    def tiled(self) -> bool:
        """Whether any scale runs in tiles."""
        return any(t is not None for t in self.tiles)

    def describe(self, last_layer: str) -> str:
        """One line per scale: its size and whole, or its tile side, halo and tile count.

        >>> TilePlan([(32, 24), (64, 48)], [None, 32], 0, None).describe("relu2_2")
        '32x24 whole, 64x48 in 12 tiles of 32 px (halo 8 px)'
        """
        lines = []
        for (w, h), tile in zip(self.sizes, self.tiles):
            if tile is None:
                lines.append(f"{w}x{h} whole")
            else:
                halo = halo_for(tile, last_layer, self.arch)
                count = len(tile_grid(h, w, tile, stride_of(last_layer, self.arch), halo))
                lines.append(f"{w}x{h} in {count} tiles of {tile} px (halo {halo} px)")
        return ", ".join(lines)


def plan_tiles(
    widths: dict[str, int],
    layers: list[str],
    sizes: list[tuple[int, int]],
    precision: str,
    budget: int | None = None,
    tile: int | None = None,
    arch: ArchLike | None = None,
) -> TilePlan:
    """Which scales to tile and with which tile side, so each step fits ``budget`` bytes (or uses ``tile``).

    With a budget, coarser scales (each half the next) are added until the coarsest fits whole, so
    the composition is set untiled and tiles only refine it. A scale runs whole when it fits; otherwise
    with the largest tile that fits. A forced ``tile`` applies to every scale larger than it. A UserError
    when even the smallest tile does not fit. ``arch``: the network's (default: what the widths say).
    """
    architecture = widths_architecture(widths, arch)
    last = architecture.deepest_layer(layers)
    stride = stride_of(last, architecture)
    asked = len(sizes)
    if budget is not None and tile is None:
        sizes = _with_coarse_scales(widths, layers, sizes, precision, budget, stride, architecture.name)
    tiles: list[int | None] = []
    peak = 0
    for w, h in sizes:
        chosen: int | None = None
        if tile is not None:
            chosen = tile if max(w, h) > tile else None
        elif budget is not None and predict_step_peak(widths, layers, h, w, precision, None, architecture) > budget:
            chosen = largest_tile(widths, layers, h, w, precision, budget, stride, architecture)
            if chosen is None:
                need = predict_step_peak(widths, layers, h, w, precision, min_tile(last, architecture), architecture)
                raise UserError(
                    f"--max-memory: {w}x{h} px needs {format_bytes(need)} more than is already in use even in the "
                    f"smallest tiles, but the budget leaves {format_bytes(max(budget, 0))}; "
                    "raise --max-memory or lower --size"
                )
        tiles.append(chosen)
        peak = max(peak, predict_step_peak(widths, layers, h, w, precision, chosen, architecture))
    return TilePlan(list(sizes), tiles, peak, budget, len(sizes) - asked, architecture.name)


def _with_coarse_scales(
    widths: dict[str, int],
    layers: list[str],
    sizes: list[tuple[int, int]],
    precision: str,
    budget: int,
    stride: int,
    arch: str,
) -> list[tuple[int, int]]:
    """``sizes`` after coarser scales (each half the next) until the coarsest fits ``budget`` whole, at most
    :data:`MAX_SCALES` in all and none smaller than the ``stride``."""
    sizes = list(sizes)
    while (
        predict_step_peak(widths, layers, sizes[0][1], sizes[0][0], precision, None, arch) > budget
        and len(sizes) < MAX_SCALES
    ):
        w, h = sizes[0]
        half = (max(1, round(w / 2)), max(1, round(h / 2)))
        if min(half) < stride:
            break
        sizes.insert(0, half)
    return sizes


def iteration_macs_tiled(
    widths: dict[str, int], preset: LossPreset, width: int, height: int, tile: int | None, arch: ArchLike | None = None
) -> int:
    """Conv MACs of one step at this size: whole, or tiled (per tile: a statistics forward, a forward and
    backward, and the content image's forward up to the content layers; halos included)."""
    architecture = widths_architecture(widths, arch)
    last = preset.last_layer
    widths = {n: widths[n] for n in architecture.convs_up_to(last)}
    if tile is None:
        return iteration_macs(widths, height, width, architecture)
    content_widths = {n: widths[n] for n in architecture.convs_up_to(architecture.deepest_layer(preset.content_layers))}
    total = 0
    for t in tile_grid(height, width, tile, stride_of(last, architecture), halo_for(tile, last, architecture)):
        h, w = t.bottom - t.top, t.right - t.left
        total += (
            sum(conv_macs(widths, h, w, architecture).values())
            + iteration_macs(widths, h, w, architecture)
            + sum(conv_macs(content_widths, h, w, architecture).values())
        )
    return total
