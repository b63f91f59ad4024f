"""What a scan is: its configuration, its grid of cells, and how the grid is split into shards.

The configuration's identity (:meth:`ScanConfig.identity`) holds everything that decides a
cell's numbers, and its hash tags every record, so a folder never mixes two configurations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from nst_core import __version__
from nst_core.compress.importance import CRITERIA, criterion_for
from nst_core.compress.pruning import METHODS
from nst_core.compress.scan.folder import SCAN_FORMAT, SCAN_MODES, ScanError, cell_key
from nst_core.core.files import file_sha256
from nst_core.model.layers import DEFAULT_ARCH, PREPROCESSINGS, Architecture, get_architecture
from nst_core.nst.losses import LossPreset, get_preset
from nst_core.nst.stylize import StylizeConfig

MODES = SCAN_MODES  # defined beside the reader of scan.json, which checks it
DEFAULT_SPARSITIES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class Cell(NamedTuple):
    """One point of the grid: prune ``layer`` alone to ``sparsity``."""

    layer: str
    sparsity: float

    @property
    def key(self) -> str:
        """The cell's name in records and tables (see :func:`cell_key`)."""
        return cell_key(self.layer, self.sparsity)


def _file_sha256(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ScanError(f"image {path} does not exist (a scan needs local image files)")
    return file_sha256(p)


@dataclass
class ScanConfig:
    """What to scan and how each cell is stylized and judged."""

    content: str
    styles: list[str]
    weights: str = "caffe"
    method: str = "fine"  # "fine" | "structured"
    mode: str = "full"  # "full": stylize + judge (and proxy) | "proxy": proxy only
    layers: list[str] | None = None  # None: every conv the preset's losses need
    sparsities: list[float] = field(default_factory=lambda: list(DEFAULT_SPARSITIES))
    stylize: StylizeConfig = field(default_factory=StylizeConfig)
    pooling: str = "max"
    preprocessing: str | None = None
    importance: str | None = None  # structured: how filters are ranked, on the scan's own images (None: the default)
    # The network's architecture: random weights are VGG-19 unless told; run_scan sets it from the loaded
    # weights (a VGG-16 file has no conv3_4), so the grid holds only convs the network has.
    arch: str | None = None

    @property
    def criterion(self) -> str:
        """How structured cells rank filters: the importance named, else the default for the method."""
        return criterion_for(self.method, self.importance)

    def validate(self) -> None:
        """Raise :class:`ScanError` (or the stylize settings' own error) for anything unusable."""
        if self.method not in METHODS:
            raise ScanError(f"unknown pruning method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.mode not in MODES:
            raise ScanError(f"unknown scan mode {self.mode!r}; choose from {', '.join(MODES)}")
        if self.importance is not None and self.importance not in CRITERIA:
            raise ScanError(f"unknown importance {self.importance!r}; choose from {', '.join(CRITERIA)}")
        if self.importance not in (None, "l1") and self.method != "structured":
            raise ScanError(f"importance {self.importance!r} ranks filters: it needs the structured method")
        if not self.styles:
            raise ScanError("a scan needs at least one style image")
        if self.preprocessing is not None and self.preprocessing not in PREPROCESSINGS:
            raise ScanError(f"unknown preprocessing {self.preprocessing!r}")
        self.stylize.validate()
        if self.stylize.preview_every:
            raise ScanError("previews are not used in a scan; leave preview_every at 0")
        if not self.sparsities:
            raise ScanError("no sparsities to scan")
        upper = 1.0 if self.method == "fine" else 1.0 - 1e-9
        for s in self.sparsities:
            if not 0.0 <= s <= upper:
                raise ScanError(
                    f"sparsity {s} is out of range for {self.method} pruning "
                    f"(0 <= s {'<=' if self.method == 'fine' else '<'} 1)"
                )
        if len({round(s, 4) for s in self.sparsities}) != len(self.sparsities):
            raise ScanError(f"sparsities repeat (to 4 decimals): {self.sparsities}")
        available = self.available_layers()
        for name in self.layers or []:
            if name not in self.architecture.conv_names:
                raise ScanError(
                    f"unknown {self.architecture.title} conv layer {name!r}; "
                    f"valid names: {', '.join(self.architecture.conv_names)}"
                )
            if name not in available:
                raise ScanError(
                    f"layer {name} comes after {self.preset.last_layer}, the deepest layer preset "
                    f"{self.preset.name!r} uses; it is dropped from the network and cannot be scanned"
                )

    @property
    def preset(self) -> LossPreset:
        """The loss preset of the stylize settings."""
        return get_preset(self.stylize.preset)

    @property
    def architecture(self) -> Architecture:
        """The scanned network's layer table (VGG-19 until the weights or ``arch`` say otherwise)."""
        return get_architecture(self.arch or DEFAULT_ARCH)

    def available_layers(self) -> list[str]:
        """Convs the losses need; everything after the deepest loss layer is dropped."""
        return self.architecture.convs_up_to(self.preset.last_layer)

    def scanned_layers(self) -> list[str]:
        """The layers of the grid, in network order."""
        chosen = set(self.layers) if self.layers else set(self.available_layers())
        return [name for name in self.architecture.conv_names if name in chosen]

    def cells(self) -> list[Cell]:
        """The grid, layer-major in network order, sparsities ascending."""
        levels = sorted(round(float(s), 4) for s in self.sparsities)
        return [Cell(layer, s) for layer in self.scanned_layers() for s in levels]

    def identity(self) -> dict:
        """Everything that decides one cell's numbers (the grid itself is not part of it)."""
        stylize_settings = dataclasses.asdict(self.stylize)
        stylize_settings.pop("preview_every", None)
        identity = {
            "format": SCAN_FORMAT,
            "package_version": __version__,
            "content_sha256": _file_sha256(self.content),
            "styles_sha256": [_file_sha256(s) for s in self.styles],
            "weights": self.weights,
            "pooling": self.pooling,
            "preprocessing": self.preprocessing,
            "method": self.method,
            "mode": self.mode,
            "stylize": stylize_settings,
        }
        if self.criterion != "l1":
            # Only when not l1, so folders made before importance existed keep their hash.
            identity["importance"] = self.criterion
        if self.architecture.name != DEFAULT_ARCH:
            identity["arch"] = self.architecture.name  # random weights of either architecture hash apart
        return identity

    def config_hash(self) -> str:
        """The hash of :meth:`identity` that tags this configuration's records."""
        return config_hash(self.identity())

    def to_dict(self) -> dict:
        """The contents of the folder's ``scan.json``: identity, hash and the grid."""
        return {
            "format": SCAN_FORMAT,
            "config_hash": self.config_hash(),
            "identity": self.identity(),
            "content": self.content,
            "styles": list(self.styles),
            "weights": self.weights,
            "method": self.method,
            "mode": self.mode,
            "layers": self.scanned_layers(),
            "sparsities": sorted(round(float(s), 4) for s in self.sparsities),
            "stylize": dataclasses.asdict(self.stylize),
            "pooling": self.pooling,
            "preprocessing": self.preprocessing,
            "importance": self.criterion,
        }


def config_hash(identity: dict) -> str:
    """16 hex digits of the SHA-256 of ``identity`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_sparsities(text: str) -> list[float]:
    """'0.4,0.6,0.8' or 'START:STOP:STEP' (inclusive, e.g. '0.4:0.9:0.1') -> levels."""
    text = text.strip()
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise ScanError(f"sparsity step must be positive in {text!r}")
            count = int(round((stop - start) / step)) + 1
            return [round(start + i * step, 4) for i in range(max(0, count))]
        return [round(float(x), 4) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ScanError(f"bad sparsity list {text!r}: use 0.4,0.6,0.8 or START:STOP:STEP like 0.4:0.9:0.1") from None


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (0-based I) -> (I, N)."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ScanError(f"bad shard {text!r}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ScanError(f"bad shard {text!r}: need 0 <= I < N")
    return index, count


def shard_from_env() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) when launched by torchrun (or any launcher that sets them)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return parse_shard(f"{os.environ['RANK']}/{os.environ['WORLD_SIZE']}")
    return None


def shard_cells(cells: list[Cell], shard: tuple[int, int]) -> list[Cell]:
    """Every N-th cell starting at I: shards interleave, so each gets a mix of cheap and costly layers."""
    index, count = shard
    return [cell for i, cell in enumerate(cells) if i % count == index]
