"""`nst release`: dense weights to a judged, documented, optionally published fast network, in resumable stages.

Each stage writes into its own folder under OUT_DIR and ends by writing ``done.json`` (the
settings' hash and the SHA-256 of every file it made). A run skips the stages that are done
and whose files are intact, and redoes the others; the two long stages continue where they
stopped (the scan from its records, fine-tuning from its state file). Every stage reads its
inputs from the previous stages' files, never from memory, so a run killed anywhere (kill -9
included) and run again ends with the same files as a run never interrupted.

1-scan        structured sensitivity scan of every conv (proxy by default, full on request):
              ``table.csv``, ``table.json``, ``curves.png``, ``heatmap.png`` (``scan/`` is the scan folder)
2-prune       budgeted structured pruning for the target speedup, curves from the scan, filters
              ranked by the chosen importance: ``pruned.safetensors``, ``plan.json``; and the
              uniform L1 network of the same budget's old recipe, ``uniform.safetensors``
3-finetune    distillation from the dense network: ``finetuned.safetensors``, ``finetune.json``
4-judge       held-out images (never scanned, ranked or trained on): distortion and the judged
              style transfer of every candidate, ``judge.json``, ``pareto.png``
5-checkpoint  the release file in the chosen dtype, judged again as decoded: ``model.safetensors``, ``final.json``
6-card        ``card/``: the model card (``README.md``, from ``nst_core.model.hub.card``), its plots, config and report
7-push        optional: the card folder to a Hub repo, ``push.json``

``report.md`` and ``report.json`` in OUT_DIR summarise every stage with the settings. Wall-clock
numbers (the measured speedup, training seconds, where a run resumed) differ from run to run,
so they go to ``timings.json`` and the scan's own records (``1-scan/scan/records``), and nowhere else.

>>> settings = ReleaseSettings(weights="random:0", target_speedup=3.0, steps=20)   # doctest: +SKIP
>>> run_release("out/release", settings)                                            # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from huggingface_hub import HfApi

from nst_core.compress.budget import PROXY_LEVELS, budgeted_prune, measure_speedup
from nst_core.compress.calibration import DEFAULT_IMAGE_DIR, CalibrationImage, load_folder, split_heldout
from nst_core.compress.finetune import FinetuneConfig, RecoveryConfig, RecoveryMeter, finetune, recovery_table
from nst_core.compress.importance import CRITERIA, calibration_pairs
from nst_core.compress.pruning import prune_structured
from nst_core.compress.scan.config import ScanConfig
from nst_core.compress.scan.plots import plot_scan
from nst_core.compress.scan.run import run_scan
from nst_core.compress.scan.table import merge_scan, write_tables
from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text, file_sha256
from nst_core.model.checkpoint import STORED_DTYPES, check_storage, read_checkpoint_info, save_checkpoint
from nst_core.model.hub.card import PLOT_NAME, render_model_card
from nst_core.model.hub.config import config_from_info
from nst_core.model.hub.errors import hub_error
from nst_core.model.hub.push import push_checkpoint
from nst_core.model.vgg import VGGFeatures, load_checkpoint
from nst_core.model.weight_spec import check_repo_id, is_random_source
from nst_core.model.weights import load_vgg
from nst_core.nst.cost import CostModel, iteration_macs
from nst_core.nst.losses import get_preset
from nst_core.nst.stylize import StylizeConfig

RELEASE_FORMAT = "nst-release/1"
CHECKPOINT_NAME = "model.safetensors"
STAGES = ("1-scan", "2-prune", "3-finetune", "4-judge", "5-checkpoint", "6-card")
#: Files that record wall-clock time; everything else a release writes is reproduced exactly by a rerun.
TIMING_FILES = ("timings.json", "1-scan/scan/records")


@dataclass
class ReleaseSettings:
    """Everything that decides a release's files (the device and the push target do not)."""

    weights: str
    target_speedup: float
    images: str | None = None  # calibration folder; None: the bundled examples
    preset: str = "seed"
    pooling: str = "max"
    preprocessing: str | None = None
    full_scan: bool = False  # stylize and judge every scan cell instead of the proxy
    scan_size: int = 128
    scan_iterations: int = 50  # full scan only
    levels: list[float] = field(default_factory=lambda: list(PROXY_LEVELS))
    importance: str = "taylor"
    cost_size: int = 512  # the image size the budget's MACs are counted at
    calibration_size: int = 128
    uniform_fraction: float = 0.5  # the uniform L1 baseline: this fraction of every conv's filters removed
    steps: int = 200
    batch_size: int = 4
    crop_size: int = 128
    lr: float = 1e-4
    layers: list[str] | None = None  # distilled layers; None: the preset's
    checkpoint_every: int = 25
    heldout: int = 2
    eval_size: int = 256
    judge_size: int = 128
    judge_iterations: int = 50
    dtype: str = "fp16"
    seed: int = 0
    max_side: int = 512  # calibration images are loaded at most this large
    measure_iterations: int = 2  # 0: do not measure the speedup

    def validate(self) -> None:
        """A UserError naming the first unusable setting (before any work)."""
        if not self.target_speedup > 1:
            raise UserError(f"--target-speedup must be above 1, not {self.target_speedup}")
        if self.importance not in CRITERIA:
            raise UserError(f"--importance must be one of {', '.join(CRITERIA)}, not {self.importance!r}")
        if self.dtype not in STORED_DTYPES:
            raise UserError(f"--dtype must be one of {', '.join(STORED_DTYPES)}, not {self.dtype!r}")
        check_storage("packed", self.dtype)
        if not 0 < self.uniform_fraction < 1:
            raise UserError(f"--uniform-fraction must be between 0 and 1, not {self.uniform_fraction}")
        for name, value, low in (
            ("--scan-size", self.scan_size, 16),
            ("--cost-size", self.cost_size, 16),
            ("--calibration-size", self.calibration_size, 16),
            ("--measure-iterations", self.measure_iterations, 0),
            ("--scan-iterations", self.scan_iterations, 1),
        ):
            if value < low:
                raise UserError(f"{name} must be at least {low}, not {value}")
        if not self.levels or any(not 0 < level < 1 for level in self.levels):
            raise UserError(f"--levels must be fractions between 0 and 1, not {self.levels}")
        get_preset(self.preset)
        self.finetune_config().validate()
        self.scan_config(["content.png"], ["style.png"]).stylize.validate()

    def finetune_config(self) -> FinetuneConfig:
        """The fine-tuning stage's settings."""
        return FinetuneConfig(
            preset=self.preset,
            layers=self.layers,
            steps=self.steps,
            batch_size=self.batch_size,
            crop_size=self.crop_size,
            lr=self.lr,
            seed=self.seed,
            checkpoint_every=self.checkpoint_every,
        )

    def recovery_config(self) -> RecoveryConfig:
        """How candidates are measured on the held-out images."""
        return RecoveryConfig(
            preset=self.preset,
            distortion_size=self.eval_size,
            stylize_size=self.judge_size,
            stylize_iterations=self.judge_iterations,
            seed=self.seed,
        )

    def scan_config(self, content: list[str], styles: list[str]) -> ScanConfig:
        """The scan stage's grid: every conv the preset needs, structured, at ``levels``, filters ranked as the budget ranks them."""
        return ScanConfig(
            content=content[0],
            styles=styles,
            weights=self.weights,
            method="structured",
            mode="full" if self.full_scan else "proxy",
            sparsities=list(self.levels),
            importance=self.importance,
            stylize=StylizeConfig(
                preset=self.preset, size=self.scan_size, iterations=self.scan_iterations, seed=self.seed
            ),
            pooling=self.pooling,
            preprocessing=self.preprocessing,
        )

    def to_dict(self) -> dict:
        """JSON-ready settings."""
        return asdict(self)


def _json(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=float, allow_nan=True) + "\n"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); delete it to redo its stage") from None


class Release:
    """One release folder: its settings, its stages and what they left behind."""

    def __init__(
        self,
        out_dir: str | Path,
        settings: ReleaseSettings,
        device: str = "cpu",
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    ):
        settings.validate()
        self.out = Path(out_dir)
        self.settings = settings
        self.device = device
        self.log = log
        self.settings_hash = hashlib.sha256(_json(settings.to_dict()).encode()).hexdigest()
        self._teacher: VGGFeatures | None = None
        self._images: tuple[list[CalibrationImage], list[CalibrationImage]] | None = None

    # -- bookkeeping ---------------------------------------------------------------------

    def claim_folder(self) -> None:
        """Create OUT_DIR with ``settings.json``, or check that an existing one was made with these settings."""
        path = self.out / "settings.json"
        if path.exists():
            stored = _read_json(path)
            if stored.get("settings") != json.loads(_json(self.settings.to_dict())):
                changed = sorted(
                    k
                    for k in self.settings.to_dict()
                    if stored.get("settings", {}).get(k) != self.settings.to_dict()[k]
                )
                raise UserError(
                    f"{self.out} holds a release made with other settings ({', '.join(changed) or 'format'}); "
                    "use another OUT_DIR or the same settings"
                )
            return
        if self.out.exists() and any(self.out.iterdir()):
            raise UserError(
                f"{self.out} exists and is not a release folder (no settings.json); choose an empty or new folder"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, _json({"format": RELEASE_FORMAT, "settings": self.settings.to_dict()}))

    def stage_dir(self, stage: str) -> Path:
        """The folder of one stage's files."""
        return self.out / stage

    def is_done(self, stage: str, extra: dict | None = None) -> bool:
        """The stage finished under these settings (and ``extra`` facts) and its files are intact."""
        marker = self.stage_dir(stage) / "done.json"
        if not marker.exists():
            return False
        done = _read_json(marker)
        files = done.get("files", {})
        return (
            done.get("settings_sha256") == self.settings_hash
            and done.get("extra", {}) == (extra or {})
            and all(
                (self.stage_dir(stage) / name).is_file() and file_sha256(self.stage_dir(stage) / name) == digest
                for name, digest in files.items()
            )
        )

    def mark_done(self, stage: str, files: list[str], extra: dict | None = None) -> None:
        """Record that ``stage`` finished, with the digest of each of its ``files`` (paths inside its folder)."""
        folder = self.stage_dir(stage)
        digests = {name: file_sha256(folder / name) for name in sorted(files)}
        atomic_write_text(
            folder / "done.json",
            _json({"stage": stage, "settings_sha256": self.settings_hash, "files": digests, "extra": extra or {}}),
        )

    def record_timing(self, key: str, value: dict) -> None:
        """Wall-clock facts of this run (kept apart: they differ between runs)."""
        path = self.out / "timings.json"
        timings = _read_json(path) if path.exists() else {}
        timings[key] = value
        atomic_write_text(path, _json(timings))

    # -- shared inputs -------------------------------------------------------------------

    @property
    def teacher(self) -> VGGFeatures:
        """The dense network up to the preset's deepest layer (loaded once per run)."""
        if self._teacher is None:
            s = self.settings
            self._teacher = load_vgg(
                s.weights,
                last_layer=get_preset(s.preset).last_layer,
                pooling=s.pooling,
                preprocessing=s.preprocessing,
                device=self.device,
            )
        return self._teacher

    @property
    def images(self) -> tuple[list[CalibrationImage], list[CalibrationImage]]:
        """(training images, held-out images): the held-out ones are never scanned, ranked or trained on."""
        if self._images is None:
            self._images = split_heldout(
                load_folder(self.settings.images, max_side=self.settings.max_side),
                self.settings.heldout,
                self.settings.seed,
            )
        return self._images

    def image_folder(self) -> Path:
        """The calibration folder the images come from."""
        return Path(self.settings.images) if self.settings.images else DEFAULT_IMAGE_DIR

    def calibration_images(self) -> list[CalibrationImage]:
        """The training images again, loaded at the calibration size (importance ranking works there)."""
        train = {im.name for im in self.images[0]}
        return [
            im for im in load_folder(self.settings.images, max_side=self.settings.calibration_size) if im.name in train
        ]

    def meter(self) -> RecoveryMeter:
        """Measures a candidate on the held-out images against the dense network (as fine-tuning does)."""
        return RecoveryMeter(
            self.teacher,
            self.images[1],
            self.settings.recovery_config(),
            self.settings.finetune_config().distilled_layers,
        )

    # -- stages --------------------------------------------------------------------------

    def scan(self) -> None:
        """1-scan: the structured sensitivity of every conv, then its tables and plots."""
        folder = self.stage_dir("1-scan")
        pairs = calibration_pairs(self.images[0])
        root = self.image_folder()
        content = [str(root / pairs[0][0].name)]
        styles = list(dict.fromkeys(str(root / style.name) for _, style in pairs))[:2]
        config = self.settings.scan_config(content, styles)
        run_scan(config, folder / "scan", progress=False, device=self.device)
        table = merge_scan(folder / "scan")
        if table.missing:
            raise UserError(f"the scan in {folder / 'scan'} left {len(table.missing)} cells unfinished; run again")
        written = write_tables(table, folder) + plot_scan(table, folder)
        self.mark_done("1-scan", [p.name for p in written])

    def prune(self) -> None:
        """2-prune: widths for the budget from the scan's curves; the uniform L1 baseline beside it."""
        s, folder = self.settings, self.stage_dir("2-prune")
        folder.mkdir(parents=True, exist_ok=True)
        result = budgeted_prune(
            self.teacher,
            target_speedup=s.target_speedup,
            importance=s.importance,
            images=self.calibration_images(),
            scan=self.stage_dir("1-scan") / "scan",
            size=s.cost_size,
            calibration_size=s.calibration_size,
            preset=s.preset,
            levels=tuple(s.levels),
        )
        # The scan is named relative to OUT_DIR: a release's files must not depend on where OUT_DIR lies.
        for source in (result.curves.source, result.plan.curves_source, result.pruned.provenance["budget"]["curves"]):
            source["scan"] = "1-scan/scan"
        save_checkpoint(result.pruned, folder / "pruned.safetensors", encoding="packed", dtype="fp32")
        uniform = prune_structured(self.teacher, s.uniform_fraction)
        save_checkpoint(uniform, folder / "uniform.safetensors", encoding="packed", dtype="fp32")
        plan = {"plan": result.plan.to_dict(), "importance": result.importance, "curves": result.curves.to_dict()}
        atomic_write_text(folder / "plan.json", _json(plan))
        if s.measure_iterations:
            speed = measure_speedup(
                self.teacher,
                load_checkpoint(folder / "pruned.safetensors", device=self.device),
                size=s.cost_size,
                iterations=s.measure_iterations,
                preset=s.preset,
            )
            self.record_timing(
                "speed",
                {
                    **speed.to_dict(),
                    "predicted_speedup": result.plan.predicted_speedup,
                    "device": str(resolve_device(self.device)),
                },
            )
        self.mark_done("2-prune", ["pruned.safetensors", "uniform.safetensors", "plan.json"])

    def finetune(self) -> None:
        """3-finetune: distil the dense network into the budgeted one (resumes from ``state.pt``)."""
        s, folder = self.settings, self.stage_dir("3-finetune")
        folder.mkdir(parents=True, exist_ok=True)
        student = load_checkpoint(self.stage_dir("2-prune") / "pruned.safetensors", device=self.device)
        train, heldout = self.images
        state = folder / "state.pt"
        result = finetune(
            self.teacher,
            student,
            train,
            heldout,
            s.finetune_config(),
            s.recovery_config(),
            state_path=state,
            progress=None,
        )
        record = student.provenance["finetune"]
        # Wall-clock facts differ between an interrupted and an uninterrupted run: timings.json only.
        self.record_timing(
            "finetune",
            {key: record.pop(key) for key in ("train_seconds", "wall_seconds_this_run", "resumed_from_step")},
        )
        save_checkpoint(
            student, folder / "finetuned.safetensors", encoding="packed", dtype="fp32", metrics=_metrics(result.after)
        )
        atomic_write_text(
            folder / "finetune.json",
            _json(
                {"before": result.before, "after": result.after, "table": result.table, "history": result.train.history}
            ),
        )
        state.unlink(missing_ok=True)
        self.mark_done("3-finetune", ["finetuned.safetensors", "finetune.json"])

    def judge(self) -> None:
        """4-judge: every candidate on the held-out images, and the Pareto plot of cost against judged quality."""
        s, folder = self.settings, self.stage_dir("4-judge")
        folder.mkdir(parents=True, exist_ok=True)
        candidates = {
            "dense": self.teacher,
            f"uniform L1 {s.uniform_fraction:.0%}": load_checkpoint(
                self.stage_dir("2-prune") / "uniform.safetensors", device=self.device
            ),
            f"budgeted {s.importance}": load_checkpoint(
                self.stage_dir("2-prune") / "pruned.safetensors", device=self.device
            ),
            f"budgeted {s.importance} + fine-tune": load_checkpoint(
                self.stage_dir("3-finetune") / "finetuned.safetensors", device=self.device
            ),
        }
        meter = self.meter()
        cost = CostModel.macs_only()
        rows = []
        for name, model in candidates.items():
            rows.append(
                {
                    "name": name,
                    "widths": model.widths,
                    "predicted_speedup": cost.speedup(model.widths, s.cost_size, s.cost_size),
                    "macs": iteration_macs(model.widths, s.cost_size, s.cost_size),
                    **meter.measure(model),
                }
            )
        judge = {
            "heldout_images": [im.name for im in self.images[1]],
            "cost_size": s.cost_size,
            "candidates": rows,
            "random_weights": is_random_source(s.weights),
        }
        atomic_write_text(folder / "judge.json", _json(judge))
        plot_pareto(rows, folder / "pareto.png", s.cost_size, is_random_source(s.weights))
        self.mark_done("4-judge", ["judge.json", "pareto.png"])

    def checkpoint(self) -> None:
        """5-checkpoint: the fine-tuned network in the release dtype, judged again as it decodes."""
        s, folder = self.settings, self.stage_dir("5-checkpoint")
        folder.mkdir(parents=True, exist_ok=True)
        tuned = load_checkpoint(self.stage_dir("3-finetune") / "finetuned.safetensors", device="cpu")
        after = _read_json(self.stage_dir("3-finetune") / "finetune.json")["after"]
        save_checkpoint(tuned, folder / CHECKPOINT_NAME, encoding="packed", dtype=s.dtype, metrics=_metrics(after))
        decoded = self.meter().measure(load_checkpoint(folder / CHECKPOINT_NAME, device=self.device))
        info = read_checkpoint_info(folder / CHECKPOINT_NAME)
        atomic_write_text(
            folder / "final.json",
            _json(
                {
                    "dtype": s.dtype,
                    "bytes": info["file_bytes"],
                    "decoded": decoded,
                    "fp32": after,
                    "quantisation": info.get("quantisation"),
                }
            ),
        )
        self.mark_done("5-checkpoint", [CHECKPOINT_NAME, "final.json"])

    def card(self, repo_id: str | None) -> None:
        """6-card: report.json and report.md, and the card folder (model card, plots, config, checkpoint)."""
        folder = self.stage_dir("6-card")
        card = folder / "card"
        card.mkdir(parents=True, exist_ok=True)
        report = self.report()
        markdown = report_markdown(report)
        atomic_write_text(self.out / "report.json", _json(report))
        atomic_write_text(self.out / "report.md", markdown)
        checkpoint = self.stage_dir("5-checkpoint") / CHECKPOINT_NAME
        shutil.copyfile(checkpoint, card / CHECKPOINT_NAME)
        shutil.copyfile(self.stage_dir("1-scan") / "curves.png", card / PLOT_NAME)
        shutil.copyfile(self.stage_dir("1-scan") / "heatmap.png", card / "heatmap.png")
        shutil.copyfile(self.stage_dir("4-judge") / "pareto.png", card / "pareto.png")
        info = read_checkpoint_info(checkpoint)
        atomic_write_text(card / "config.json", json.dumps(config_from_info(info, CHECKPOINT_NAME), indent=2) + "\n")
        atomic_write_text(card / "report.json", _json(report))
        atomic_write_text(card / "report.md", markdown)
        sizes = {p.name: p.stat().st_size for p in sorted(card.iterdir()) if p.name != "README.md"}
        model_card = render_model_card(
            info, repo_id or f"local/{self.out.resolve().name}", CHECKPOINT_NAME, sizes, has_plot=True
        )
        body = (
            str(model_card)
            + "\n\n## Release report\n\n![Pareto plot](pareto.png)\n\n![Sensitivity heatmap](heatmap.png)\n\n"
            + markdown.split("\n", 1)[1]
        )
        atomic_write_text(card / "README.md", body)
        self.mark_done("6-card", [f"card/{p.name}" for p in sorted(card.iterdir())], {"repo_id": repo_id})

    def push(self, repo_id: str, private: bool | None = None) -> dict:
        """7-push: the checkpoint with its card (``nst_core.model.hub.push.push_checkpoint``), then the release's report and plots."""
        card = self.stage_dir("6-card") / "card"
        first = push_checkpoint(
            repo_id,
            card / CHECKPOINT_NAME,
            plot=card / PLOT_NAME,
            private=private,
            commit_message=f"nst release: {CHECKPOINT_NAME} ({self.settings.target_speedup}x budget)",
        )
        try:  # push_checkpoint writes the plain card; the release's card adds the report and its plots
            commit = HfApi().upload_folder(
                repo_id=repo_id,
                folder_path=card,
                allow_patterns=["README.md", "pareto.png", "heatmap.png", "report.*"],
                commit_message="nst release: report, Pareto plot and sensitivity heatmap",
            )
        except Exception as exc:
            raise hub_error(exc, f"pushing the release report to {repo_id}") from None
        pushed = {
            "repo_id": repo_id,
            "repo_url": first.repo_url,
            "checkpoint_commit": first.commit,
            "report_commit": commit.oid,
            "commit_url": commit.commit_url,
        }
        atomic_write_text(self.out / "7-push" / "push.json", _json(pushed))
        return pushed

    # -- the report ----------------------------------------------------------------------

    def report(self) -> dict:
        """Everything the stages found, with the settings (no wall-clock numbers: those are in timings.json)."""
        read = _read_json
        scan_table = read(self.stage_dir("1-scan") / "table.json")
        return {
            "format": RELEASE_FORMAT,
            "settings": self.settings.to_dict(),
            "random_weights": is_random_source(self.settings.weights),
            "heldout_images": [im.name for im in self.images[1]],
            "scan": {
                "mode": "full" if self.settings.full_scan else "proxy",
                "cells": len(scan_table.get("rows", [])),
                "rank_agreement": scan_table.get("agreement"),
                "plots": ["1-scan/curves.png", "1-scan/heatmap.png"],
            },
            "plan": read(self.stage_dir("2-prune") / "plan.json")["plan"],
            "finetune": {
                k: v for k, v in read(self.stage_dir("3-finetune") / "finetune.json").items() if k != "history"
            },
            "judge": read(self.stage_dir("4-judge") / "judge.json"),
            "checkpoint": read(self.stage_dir("5-checkpoint") / "final.json"),
            "files": {
                "checkpoint": f"5-checkpoint/{CHECKPOINT_NAME}",
                "card": "6-card/card/README.md",
                "pareto": "4-judge/pareto.png",
                "timings": "timings.json",
            },
        }


def _metrics(measured: dict) -> dict:
    """The judged numbers a checkpoint header keeps."""
    return {
        "content_ratio": measured["content_ratio"],
        "style_ratio": measured["style_ratio"],
        "ssim": measured["ssim"],
        "feature_distortion": measured["feature"],
        "gram_distortion": measured["gram"],
    }


def plot_pareto(rows: list[dict], path: Path, cost_size: int, random_weights: bool) -> Path:
    """Predicted speedup (x) against judged style-loss ratio and SSIM on held-out images (y), one point per candidate."""
    import matplotlib  # optional heavy dependency, only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in (
        (axes[0], "style_ratio", "judged style-loss ratio vs dense output (1 = dense)"),
        (axes[1], "ssim", "SSIM vs dense output (1 = identical)"),
    ):
        for row in rows:
            ax.scatter(row["predicted_speedup"], row[key], s=40)
            ax.annotate(
                row["name"], (row["predicted_speedup"], row[key]), fontsize=7, xytext=(4, 4), textcoords="offset points"
            )
        ax.set_xlabel(f"predicted speedup per iteration at {cost_size} px (MACs)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    note = " (random weights: mechanical numbers)" if random_weights else ""
    fig.suptitle(f"Cost against judged quality on held-out images{note}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def report_markdown(report: dict) -> str:
    """report.md: the release in a page (the same facts as report.json)."""
    s, plan = report["settings"], report["plan"]
    lines = ["# Release report", ""]
    if report["random_weights"]:
        lines += [
            "**Made with random weights (`%s`): every number below is mechanically right and visually meaningless.**"
            % s["weights"],
            "",
        ]
    lines += [
        f"Target: {s['target_speedup']}x fewer MACs per stylization iteration at {s['cost_size']} px; "
        f"filters ranked by `{s['importance']}` importance; {report['scan']['mode']} scan of {report['scan']['cells']} cells; "
        f"held-out images: {', '.join(report['heldout_images'])}.",
        "",
        "## Widths chosen",
        "",
        f"Predicted speedup {plan['predicted_speedup']:.2f}x "
        f"({plan['predicted_macs']:,} of {plan['dense_macs']:,} MACs).",
        "",
        "| conv | width | dense |",
        "|---|---:|---:|",
    ]
    for candidate in report["judge"]["candidates"]:
        if candidate["name"] == "dense":
            dense_widths = candidate["widths"]
    lines += [f"| {name} | {width} | {dense_widths.get(name, '')} |" for name, width in plan["widths"].items()]
    lines += [
        "",
        "## Judged on held-out images",
        "",
        "| network | predicted speedup | style ratio | content ratio | SSIM | feature distortion |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in report["judge"]["candidates"]:
        lines.append(
            f"| {c['name']} | {c['predicted_speedup']:.2f}x | {c['style_ratio']:.4f} | {c['content_ratio']:.4f} | "
            f"{c['ssim']:.4f} | {c['feature']:.4f} |"
        )
    ft = report["finetune"]
    lines += [
        "",
        "## Fine-tuning",
        "",
        f"{s['steps']} steps of batch {s['batch_size']} at {s['crop_size']} px, lr {s['lr']}.",
        "",
        "```",
        recovery_table(ft["before"], ft["after"]),
        "```",
        "",
    ]
    ck = report["checkpoint"]
    lines += [
        "## Checkpoint",
        "",
        f"`{report['files']['checkpoint']}`: {ck['bytes']:,} bytes ({ck['bytes'] / 2**20:.2f} MiB), "
        f"packed, {ck['dtype']}. Judged as decoded: style ratio {ck['decoded']['style_ratio']:.4f}, "
        f"SSIM {ck['decoded']['ssim']:.4f} (fp32: {ck['fp32']['style_ratio']:.4f}, {ck['fp32']['ssim']:.4f}).",
    ]
    if ck.get("quantisation"):
        errors = ck["quantisation"]["relative_error"]
        lines.append(
            f"Quantisation error per conv: mean {sum(errors.values()) / len(errors):.4f}, max {max(errors.values()):.4f}."
        )
    lines += [
        "",
        "Plots: `1-scan/curves.png`, `1-scan/heatmap.png`, `4-judge/pareto.png`. Model card: `6-card/card/README.md`. "
        "Measured speedup and training time: `timings.json` (wall-clock numbers, which differ from run to run).",
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(s, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)


def run_release(
    out_dir: str | Path,
    settings: ReleaseSettings,
    push: str | None = None,
    private: bool | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
) -> Release:
    """Run every stage that is not done yet (see the module docstring); returns the release.

    ``push`` (a Hub repo id) adds the push stage; it is checked before any work.
    """
    if push:
        check_repo_id(push)
    release = Release(out_dir, settings, device, log or (lambda line: print(line, file=sys.stderr)))
    release.claim_folder()
    steps = (
        ("1-scan", release.scan),
        ("2-prune", release.prune),
        ("3-finetune", release.finetune),
        ("4-judge", release.judge),
        ("5-checkpoint", release.checkpoint),
        ("6-card", lambda: release.card(push)),
    )
    for stage, run in steps:
        if release.is_done(stage, {"repo_id": push} if stage == "6-card" else None):
            release.log(f"{stage}: done (kept)")
            continue
        release.log(f"{stage}: running")
        started = time.perf_counter()
        run()
        release.record_timing(f"stage {stage}", {"seconds": round(time.perf_counter() - started, 2)})
    if push:
        pushed = release.push(push, private)
        release.log(
            f"pushed to {pushed['repo_url']} (commits {pushed['checkpoint_commit'][:10]}, {pushed['report_commit'][:10]})"
        )
    return release


__all__ = [
    "RELEASE_FORMAT",
    "STAGES",
    "TIMING_FILES",
    "Release",
    "ReleaseSettings",
    "plot_pareto",
    "report_markdown",
    "run_release",
]
