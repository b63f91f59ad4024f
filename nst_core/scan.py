"""The sensitivity scan: how much does pruning one layer to one sparsity hurt style transfer?

A scan is a grid of layers x sparsities for one pruning method. Each cell prunes only that
layer of the dense network and then, in ``full`` mode, runs style transfer with the pruned
network from the same seed and init as a dense baseline run, and judges the output with the
dense judge (:class:`nst_core.quality.Judge`): content-loss ratio, style-loss ratio, and SSIM
against the dense output. Every cell also gets the cheap proxy of :mod:`nst_core.scan_proxy`;
``proxy`` mode computes only that (no optimisation at all).

Long scans are safe to interrupt and to spread out:

- one JSONL record per finished cell, appended durably (:mod:`nst_core.scan_records`);
- records carry a hash of everything that decides a cell's numbers (inputs' bytes, weights,
  method, stylization settings, mode), and a folder holds exactly one configuration;
  rerunning resumes and skips finished cells; growing the grid reuses the cells already done;
- ``shard=(I, N)`` (or ``RANK``/``WORLD_SIZE`` under torchrun) runs every N-th cell, so shards
  on many machines or GPUs cover the grid between them; :func:`nst_core.scan_table.merge_scan`
  builds the same table whatever the sharding.

Folder layout: ``scan.json`` (config), ``records/shard-I-of-N.jsonl``, ``dense.png`` and
``dense.json`` (the baseline), ``table.csv``/``table.json`` (after merge), ``plots/``.

>>> config = ScanConfig("examples/content/lakeside.jpg", ["examples/style/swirls.jpg"],
...                     weights="random:0", layers=["conv1_2", "conv3_1"], sparsities=[0.5, 0.9],
...                     stylize=StylizeConfig(size=64, iterations=3))   # doctest: +SKIP
>>> run_scan(config, "runs/scan")                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from . import __version__
from .errors import UserError
from .files import atomic_save_image, atomic_write_text
from .images import pil_to_tensor
from .losses import get_preset
from .pruning import METHODS, prune_fine, prune_structured
from .scan_records import append_record, read_folder, shard_file
from .stylize import StylizeConfig, prepare_inputs, stylize
from .vgg import CONV_NAMES, PREPROCESSINGS, convs_up_to

SCAN_FORMAT = "nst-scan/1"
RECORD_FORMAT = "nst-scan-record/1"
MODES = ("full", "proxy")
DEFAULT_SPARSITIES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class ScanError(UserError):
    """A scan's configuration, folder or records are not usable."""


class Cell(NamedTuple):
    layer: str
    sparsity: float

    @property
    def key(self) -> str:
        return cell_key(self.layer, self.sparsity)


def cell_key(layer: str, sparsity: float) -> str:
    return f"{layer}@{sparsity:.4f}"


def _file_sha256(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ScanError(f"image {path} does not exist (a scan needs local image files)")
    return hashlib.sha256(p.read_bytes()).hexdigest()


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

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ScanError(f"unknown pruning method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.mode not in MODES:
            raise ScanError(f"unknown scan mode {self.mode!r}; choose from {', '.join(MODES)}")
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
                raise ScanError(f"sparsity {s} is out of range for {self.method} pruning (0 <= s {'<=' if self.method == 'fine' else '<'} 1)")
        if len({round(s, 4) for s in self.sparsities}) != len(self.sparsities):
            raise ScanError(f"sparsities repeat (to 4 decimals): {self.sparsities}")
        available = self.available_layers()
        for name in self.layers or []:
            if name not in CONV_NAMES:
                raise ScanError(f"unknown conv layer {name!r}; valid names: {', '.join(CONV_NAMES)}")
            if name not in available:
                raise ScanError(
                    f"layer {name} comes after {self.preset.last_layer}, the deepest layer preset "
                    f"{self.preset.name!r} uses; it is dropped from the network and cannot be scanned"
                )

    @property
    def preset(self):
        return get_preset(self.stylize.preset)

    def available_layers(self) -> list[str]:
        """Convs the losses need; everything after the deepest loss layer is dropped."""
        return convs_up_to(self.preset.last_layer)

    def scanned_layers(self) -> list[str]:
        chosen = set(self.layers) if self.layers else set(self.available_layers())
        return [name for name in CONV_NAMES if name in chosen]

    def cells(self) -> list[Cell]:
        """The grid, layer-major in network order, sparsities ascending."""
        levels = sorted(round(float(s), 4) for s in self.sparsities)
        return [Cell(layer, s) for layer in self.scanned_layers() for s in levels]

    def identity(self) -> dict:
        """Everything that decides one cell's numbers (the grid itself is not part of it)."""
        stylize_settings = dataclasses.asdict(self.stylize)
        stylize_settings.pop("preview_every", None)
        return {
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

    def config_hash(self) -> str:
        return config_hash(self.identity())

    def to_dict(self) -> dict:
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
        }


def config_hash(identity: dict) -> str:
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


# --------------------------------------------------------------------------------------------
# The scan folder
# --------------------------------------------------------------------------------------------


def load_scan_json(folder: str | os.PathLike) -> dict:
    path = Path(folder) / "scan.json"
    if not path.is_file():
        raise ScanError(f"{folder} is not a scan folder (no scan.json); run `nst scan run --out {folder}` first")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ScanError(f"{path}: unreadable ({exc})") from None
    if data.get("format") != SCAN_FORMAT:
        raise ScanError(f"{path}: format {data.get('format')!r}, expected {SCAN_FORMAT!r}")
    return data


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def prepare_folder(config: ScanConfig, folder: str | os.PathLike) -> dict:
    """Create or reopen a scan folder for ``config``; a different configuration is refused, never mixed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = config.to_dict()
    path = folder / "scan.json"
    if path.exists():
        existing = load_scan_json(folder)
        if existing["config_hash"] != wanted["config_hash"]:
            changes = "; ".join(_differences(existing.get("identity", {}), wanted["identity"])[:4])
            raise ScanError(
                f"{folder} holds a scan with another configuration (hash {existing['config_hash']}, "
                f"this one is {wanted['config_hash']}: {changes}); use another --out folder"
            )
        if existing == wanted:
            return wanted
    # Same configuration (perhaps a bigger grid): record the grid this run asks for.
    atomic_write_text(path, json.dumps(wanted, indent=2) + "\n")
    return wanted


def finished_records(folder: str | os.PathLike, config_hash_: str) -> dict[str, dict]:
    """Finished cells of this configuration, by cell key (first record wins if a cell was run twice)."""
    out: dict[str, dict] = {}
    for record in read_folder(Path(folder) / "records"):
        if record.get("config_hash") == config_hash_ and record.get("cell") and record["cell"] not in out:
            out[record["cell"]] = record
    return out


@contextmanager
def _folder_lock(path: Path):
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Running cells
# --------------------------------------------------------------------------------------------


class CellEvaluator:
    """Holds the dense network, the judge, the dense baseline and the proxy probe for one scan."""

    def __init__(self, config: ScanConfig, folder: Path, device: str = "cpu"):
        from .quality import Judge
        from .scan_proxy import ProxyProbe
        from .weights import load_vgg

        self.config = config
        self.folder = folder
        preset = config.preset
        self.dense = load_vgg(config.weights, last_layer=preset.last_layer, pooling=config.pooling,
                              preprocessing=config.preprocessing, device=device)
        s = config.stylize
        prepared = prepare_inputs(config.content, config.styles, s.size, s.preserve_color)
        to_t = lambda img: pil_to_tensor(img).to(device)  # noqa: E731
        self.probe = ProxyProbe(self.dense, preset, to_t(prepared.content_seen), [to_t(x) for x in prepared.styles_seen], s.style_blend)
        self.judge = None
        self.dense_image = None
        if config.mode == "full":
            self.judge = Judge(self.dense, preset, config.content, config.styles, s.size, blend=s.style_blend,
                               preserve_color=s.preserve_color)
            self.dense_image, self.baseline = self._dense_baseline()

    def _dense_baseline(self) -> tuple[Image.Image, dict]:
        """The dense run every cell is compared with: computed once per folder, shared by all shards.

        Under a lock, so concurrent shards wait for one baseline instead of each writing its
        own (their floating-point results could differ in the last bit with thread counts).
        """
        image_path, info_path = self.folder / "dense.png", self.folder / "dense.json"
        config_hash_ = self.config.config_hash()
        with _folder_lock(self.folder / ".dense.lock"):
            if image_path.exists() and info_path.exists():
                info = json.loads(info_path.read_text())
                if info.get("config_hash") == config_hash_:
                    with Image.open(image_path) as img:
                        return img.convert("RGB"), info
            started = time.perf_counter()
            result = stylize(self.dense, self.config.content, self.config.styles, self.config.stylize)
            info = {
                "config_hash": config_hash_,
                "losses": self.judge.losses(result.image),
                "seconds": time.perf_counter() - started,
                "per_iteration": result.timings.get("per_iteration"),
            }
            atomic_save_image(result.image, image_path)
            atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
        # Reload: every shard judges against the exact bytes on disk.
        with Image.open(image_path) as img:
            return img.convert("RGB"), info

    def prune(self, cell: Cell):
        if self.config.method == "structured":
            return prune_structured(self.dense, {cell.layer: cell.sparsity})
        return prune_fine(self.dense, {cell.layer: cell.sparsity})

    def evaluate(self, cell: Cell) -> tuple[dict, Image.Image | None]:
        started = time.perf_counter()
        pruned = self.prune(cell)
        metrics = self.probe.measure(pruned)
        image = None
        per_iteration = None
        error = None
        if self.config.mode == "full":
            try:
                result = stylize(pruned, self.config.content, self.config.styles, self.config.stylize)
            except UserError as exc:
                # The dense baseline ran with these settings, so the pruning broke it (e.g. divergence):
                # that is a result (as bad as it gets), not a reason to stop the scan or retry forever.
                error = str(exc)
                metrics.update({"content_ratio": math.inf, "style_ratio": math.inf, "ssim": 0.0,
                                "judged_content": math.inf, "judged_style": math.inf})
            else:
                image = result.image
                metrics.update(self.judge.compare(image, self.dense_image))
                metrics.update({f"judged_{k}": v for k, v in self.judge.losses(image).items()})
                per_iteration = result.timings.get("per_iteration")
        record = {
            "format": RECORD_FORMAT,
            "config_hash": self.config.config_hash(),
            "cell": cell.key,
            "layer": cell.layer,
            "sparsity": cell.sparsity,
            "method": self.config.method,
            "mode": self.config.mode,
            "metrics": metrics,
            "widths": {cell.layer: pruned.widths[cell.layer]},
            "seconds": time.perf_counter() - started,
            "per_iteration": per_iteration,
            "error": error,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return record, image


@dataclass
class RunSummary:
    config_hash: str
    shard: tuple[int, int]
    grid_cells: int
    shard_cells: int
    skipped: int  # already finished before this run
    ran: int
    complete: bool  # every cell of the grid has a record (over all shards)


def run_scan(
    config: ScanConfig,
    folder: str | os.PathLike,
    shard: tuple[int, int] = (0, 1),
    save_images: bool = False,
    progress: bool = True,
    device: str = "cpu",
) -> RunSummary:
    """Run this shard's unfinished cells of the grid, appending one record per finished cell."""
    config.validate()
    folder = Path(folder)
    scan = prepare_folder(config, folder)
    hash_ = scan["config_hash"]
    cells = config.cells()
    mine = shard_cells(cells, shard)
    done = finished_records(folder, hash_)
    todo = [cell for cell in mine if cell.key not in done]
    records_path = shard_file(folder / "records", *shard)
    if todo:
        from tqdm import tqdm

        evaluator = CellEvaluator(config, folder, device=device)
        label = f"scan {config.method}/{config.mode}" + (f" shard {shard[0]}/{shard[1]}" if shard[1] > 1 else "")
        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="cell", desc=label, file=sys.stderr,
                   disable=None if progress else True, dynamic_ncols=True)
        try:
            for cell in todo:
                bar.set_postfix_str(cell.key)
                record, image = evaluator.evaluate(cell)
                if save_images and image is not None:
                    (folder / "images").mkdir(exist_ok=True)
                    atomic_save_image(image, folder / "images" / f"{cell.key}.png")
                append_record(records_path, record)
                bar.update(1)
        finally:
            bar.close()
    finished = finished_records(folder, hash_)
    complete = all(cell.key in finished for cell in cells)
    return RunSummary(hash_, shard, len(cells), len(mine), len(mine) - len(todo), len(todo), complete)
