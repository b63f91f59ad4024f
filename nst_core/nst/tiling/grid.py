"""Tile geometry: windows and cores on the pooling stride, halos from receptive fields, and the moving grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nst_core.core.errors import UserError
from nst_core.model.layers import DEFAULT_ARCH, ArchLike, get_architecture, min_input_side
from nst_core.nst.memory import min_tile


@dataclass(frozen=True)
class Tile:
    """One tile: its window ``[top, bottom) x [left, right)`` and core ``[core_top, core_bottom) x ...`` in image px."""

    top: int
    bottom: int
    left: int
    right: int
    core_top: int
    core_bottom: int
    core_left: int
    core_right: int

    def window(self, image: torch.Tensor) -> torch.Tensor:
        """The tile's window of an (N, C, H, W) image (a view)."""
        return image[..., self.top : self.bottom, self.left : self.right]

    def core_slices(self, factor: int, height: int, width: int) -> tuple[slice, slice]:
        """Rows and columns of the core in a layer with downsampling ``factor`` whose tile features are
        ``height`` x ``width``.

        Exact because core edges inside the image and the window origin are multiples of every
        factor up to the stride; at the image's bottom/right edge the core runs to the end of the
        features (the pixels that pooling drops there are dropped for the whole image too).
        """
        rows = slice((self.core_top - self.top) // factor, min((self.core_bottom - self.top) // factor, height))
        cols = slice((self.core_left - self.left) // factor, min((self.core_right - self.left) // factor, width))
        return rows, cols


def receptive_field(layer: str, arch: ArchLike = DEFAULT_ARCH) -> int:
    """Side in image px of the input region one feature pixel of ``layer`` depends on (220 for relu5_3).

    >>> receptive_field("relu1_2"), receptive_field("relu3_3"), receptive_field("relu5_3", "vgg16")
    (5, 40, 196)
    """
    side, jump = 1, 1
    for _, kind in get_architecture(arch).layers_up_to(layer):
        if kind == "conv":
            side += 2 * jump  # 3x3: one more input pixel each side, at the current spacing
        elif kind == "pool":
            side += jump  # 2x2, stride 2
            jump *= 2
    return side


def stride_of(last_layer: str, arch: ArchLike = DEFAULT_ARCH) -> int:
    """The downsampling of the deepest pooling before ``last_layer`` (16 for relu5_x)."""
    return min_input_side(last_layer, arch)


def exact_halo(last_layer: str, arch: ArchLike = DEFAULT_ARCH) -> int:
    """The halo that makes tiling exact: half the deepest layer's receptive field, rounded up to the stride.

    With it every core feature's receptive field lies inside its window (or is cut by the image's
    own border, as for the whole image), so core features equal the whole image's features.

    >>> exact_halo("relu5_3"), exact_halo("relu2_2")
    (112, 8)
    """
    stride = stride_of(last_layer, arch)
    return -(-receptive_field(last_layer, arch) // 2 // stride) * stride


def halo_for(tile: int, last_layer: str, arch: ArchLike = DEFAULT_ARCH) -> int:
    """Context margin on each inner side of a tile: :func:`exact_halo`, or a quarter of the tile if that is less.

    A quarter keeps at least half the tile's side for its core; tiles smaller than
    ``2 * exact_halo(last_layer)`` pixels then trade exactness at the deepest layers for memory.
    """
    stride = stride_of(last_layer, arch)
    return min(exact_halo(last_layer, arch), tile // 4 // stride * stride)


def _cuts(length: int, core: int, offset: int) -> list[int]:
    """Core boundaries along one axis: 0, offset + k*core inside (0, length), length."""
    inner = list(range(offset if offset > 0 else core, length, core))
    return [0, *inner, length]


def _start(core_start: int, core_end: int, halo: int, stride: int) -> int:
    """Where a window starts: ``halo`` before its core, and at least ``stride`` before its end.

    The second rule is for a core at the image's far edge that is thinner than the stride: the
    network needs one stride of input, and the extra rows are context, not core.
    """
    return max(0, min(core_start - halo, (core_end - stride) // stride * stride))


def tile_grid(
    height: int, width: int, tile: int, stride: int, halo: int, generator: torch.Generator | None = None
) -> list[Tile]:
    """Overlapping tiles of side at most ``tile`` covering an image; cores partition it.

    ``tile`` is rounded down to a multiple of ``stride``. With a ``generator`` the grid is shifted
    by a random multiple of ``stride`` (fresh each call: one draw per iteration); without one it
    starts at the top-left corner. An image no larger than one tile is one tile, never shifted.
    ``halo``: the context margin (a multiple of ``stride``; see :func:`halo_for`).

    >>> [(t.core_top, t.core_left) for t in tile_grid(100, 70, 48, 16, 0)]
    [(0, 0), (0, 48), (48, 0), (48, 48), (96, 0), (96, 48)]
    """
    tile = tile // stride * stride
    if tile < stride:
        raise ValueError(f"tile {tile} is smaller than the stride {stride}")
    if height <= tile and width <= tile:
        return [Tile(0, height, 0, width, 0, height, 0, width)]
    core = tile - 2 * halo
    steps = core // stride
    if generator is None:
        dy = dx = 0
    else:
        dy, dx = (int(v) * stride for v in torch.randint(0, steps, (2,), generator=generator))
    rows, cols = _cuts(height, core, dy), _cuts(width, core, dx)
    tiles = []
    for top, bottom in zip(rows, rows[1:]):
        for left, right in zip(cols, cols[1:]):
            tiles.append(
                Tile(
                    _start(top, bottom, halo, stride),
                    min(height, bottom + halo),
                    _start(left, right, halo, stride),
                    min(width, right + halo),
                    top,
                    bottom,
                    left,
                    right,
                )
            )
    return tiles


def check_tile(tile: int, last_layer: str) -> int:
    """``tile`` if the network's deepest layer can work in tiles of that side, else a one-line UserError."""
    need = min_tile(last_layer)
    if tile < need:
        raise UserError(
            f"tile {tile} px is too small: layer {last_layer} needs tiles of at least {need} px "
            "(one pixel after every pooling)"
        )
    return tile


def layer_factor(layer: str) -> int:
    """How much ``layer``'s feature map is downsampled relative to the image (1, 2, 4, 8 or 16)."""
    return min_input_side(layer)


def whole_pixels(height: int, width: int, layer: str) -> int:
    """Feature pixels of ``layer`` for a whole ``height`` x ``width`` image."""
    factor = layer_factor(layer)
    return (height // factor) * (width // factor)


def crop_core(features: torch.Tensor, tile: Tile, layer: str) -> torch.Tensor:
    """The core of a tile's ``layer`` features (a view)."""
    rows, cols = tile.core_slices(layer_factor(layer), features.shape[-2], features.shape[-1])
    return features[..., rows, cols]
