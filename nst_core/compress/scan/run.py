"""Running a scan: prepare the folder, then evaluate this shard's unfinished cells one by one.

Each cell prunes only its layer of the dense network and then, in ``full`` mode, runs style
transfer with the pruned network from the same seed and init as a dense baseline run, and
judges the output with the dense judge (:class:`nst_core.nst.quality.Judge`). Every cell also gets
the cheap proxy of :mod:`nst_core.compress.scan.proxy`. One record per finished cell is appended to
this shard's file before the next cell starts, so a killed run loses at most one cell.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from nst_core.compress.calibration import CalibrationImage
from nst_core.compress.importance import filter_importance
from nst_core.compress.pruning import Profile, prune
from nst_core.compress.scan.config import Cell, ScanConfig, shard_cells
from nst_core.compress.scan.folder import (
    RECORD_FORMAT,
    ScanError,
    append_record,
    finished_records,
    folder_lock,
    load_scan_json,
    read_dense_info,
    shard_file,
)
from nst_core.compress.scan.proxy import ProxyProbe
from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_save_image, atomic_write_text
from nst_core.image.io import pil_to_tensor
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_vgg
from nst_core.nst.quality import Judge
from nst_core.nst.stylize import prepare, prepare_inputs, stylize


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


class CellEvaluator:
    """Holds the dense network, the judge, the dense baseline and the proxy probe for one scan."""

    def __init__(
        self, config: ScanConfig, folder: Path, device: str | torch.device = "cpu", dense: VGGFeatures | None = None
    ):
        device = resolve_device(device)
        self.config = config
        self.folder = folder
        preset = config.preset
        self.dense = dense if dense is not None else load_scan_network(config, device)
        s = config.stylize
        prepared = prepare_inputs(config.content, config.styles, s.size, s.preserve_color)
        to_t = lambda img: pil_to_tensor(img).to(device)  # noqa: E731
        self.probe = ProxyProbe(
            self.dense, preset, to_t(prepared.content_seen), [to_t(x) for x in prepared.styles_seen], s.style_blend
        )
        # Filter ranking for structured cells, from the scan's own content and style images (None: L1).
        self.scores = None
        if config.criterion != "l1":
            images = [CalibrationImage("content/" + Path(config.content).name, pil_to_tensor(prepared.content_seen)[0])]
            images += [
                CalibrationImage(f"style/{i}-{Path(path).name}", pil_to_tensor(img)[0])
                for i, (path, img) in enumerate(zip(config.styles, prepared.styles_seen))
            ]
            self.scores = filter_importance(self.dense, config.criterion, images, preset)
        self.judge = None
        self.dense_image = None
        if config.mode == "full":
            self.judge = Judge(
                self.dense,
                preset,
                config.content,
                config.styles,
                s.size,
                blend=s.style_blend,
                preserve_color=s.preserve_color,
            )
            self.dense_image, self.baseline = self._dense_baseline()

    def _dense_baseline(self) -> tuple[Image.Image, dict]:
        """The dense run every cell is compared with: computed once per folder, shared by all shards.

        Under a lock, so concurrent shards wait for one baseline instead of each writing its
        own (their floating-point results could differ in the last bit with thread counts).
        """
        image_path, info_path = self.folder / "dense.png", self.folder / "dense.json"
        config_hash = self.config.config_hash()
        with folder_lock(self.folder / ".dense.lock"):
            info = read_dense_info(self.folder, config_hash)
            if info is not None and image_path.exists():
                with Image.open(image_path) as img:
                    return img.convert("RGB"), info
            started = time.perf_counter()
            result = stylize(prepare(self.dense, self.config.content, self.config.styles, self.config.stylize))
            assert self.judge is not None  # the baseline is made in full mode, which has a judge
            info = {
                "config_hash": config_hash,
                "losses": self.judge.losses(result.image),
                "seconds": time.perf_counter() - started,
                "per_iteration": result.timings.get("per_iteration"),
            }
            atomic_save_image(result.image, image_path)
            atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
        # Reload: every shard judges against the exact bytes on disk.
        with Image.open(image_path) as img:
            return img.convert("RGB"), info

    def prune(self, cell: Cell) -> VGGFeatures:
        """The dense network with only ``cell.layer`` pruned to ``cell.sparsity``."""
        return prune(self.dense, Profile(self.config.method, {cell.layer: cell.sparsity}), self.scores)

    def evaluate(self, cell: Cell) -> tuple[dict, Image.Image | None]:
        """The cell's record (metrics, widths, timing, host) and, in full mode, its stylized image."""
        started = time.perf_counter()
        pruned = self.prune(cell)
        metrics = self.probe.measure(pruned)
        image = None
        per_iteration = None
        error = None
        if self.config.mode == "full":
            try:
                result = stylize(prepare(pruned, self.config.content, self.config.styles, self.config.stylize))
            except UserError as exc:
                # The dense baseline ran with these settings, so the pruning broke it (e.g. divergence):
                # that is a result (as bad as it gets), not a reason to stop the scan or retry forever.
                error = str(exc)
                metrics.update(
                    {
                        "content_ratio": math.inf,
                        "style_ratio": math.inf,
                        "ssim": 0.0,
                        "judged_content": math.inf,
                        "judged_style": math.inf,
                    }
                )
            else:
                assert self.judge is not None and self.dense_image is not None  # full mode has both
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
    """What one :func:`run_scan` call did, and whether the whole grid is now finished."""

    config_hash: str
    shard: tuple[int, int]
    grid_cells: int
    shard_cells: int
    skipped: int  # already finished before this run
    ran: int
    complete: bool  # every cell of the grid has a record (over all shards)


def _forget_folder(folder: Path) -> None:
    """Undo what a scan that never started left: its scan.json, and the folder if nothing else is in it."""
    if not any((folder / "records").glob("*.jsonl")):
        (folder / "scan.json").unlink(missing_ok=True)
        for empty in (folder / "records", folder):
            try:
                empty.rmdir()
            except OSError:  # not empty (or not there): keep it
                pass


def load_scan_network(config: ScanConfig, device: str | torch.device = "cpu") -> VGGFeatures:
    """The dense network a scan prunes: its weights, up to the deepest layer the preset's losses read."""
    return load_vgg(
        config.weights,
        last_layer=config.preset.last_layer,
        pooling=config.pooling,
        preprocessing=config.preprocessing,
        device=resolve_device(device),
        arch=config.arch,
    )


def run_scan(
    config: ScanConfig,
    folder: str | os.PathLike,
    shard: tuple[int, int] = (0, 1),
    save_images: bool = False,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> RunSummary:
    """Run this shard's unfinished cells of the grid, appending one record per finished cell.

    >>> run_scan(config, "runs/scan", shard=(0, 4), device="cuda")   # doctest: +SKIP
    """
    config.validate()
    dense = load_scan_network(config, device)
    config = dataclasses.replace(config, arch=dense.arch)  # the grid is the loaded network's convs
    config.validate()
    folder = Path(folder)
    fresh = not (folder / "scan.json").exists()
    scan = prepare_folder(config, folder)
    hash_ = scan["config_hash"]
    cells = config.cells()
    mine = shard_cells(cells, shard)
    done = finished_records(folder, hash_)
    todo = [cell for cell in mine if cell.key not in done]
    records_path = shard_file(folder / "records", *shard)
    if todo:
        try:
            evaluator = CellEvaluator(config, folder, device=device, dense=dense)
        except BaseException:
            if fresh:
                _forget_folder(folder)
            raise
        label = f"scan {config.method}/{config.mode}" + (f" shard {shard[0]}/{shard[1]}" if shard[1] > 1 else "")
        bar = tqdm(
            total=len(mine),
            initial=len(mine) - len(todo),
            unit="cell",
            desc=label,
            file=sys.stderr,
            disable=None if progress else True,
            dynamic_ncols=True,
        )
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
