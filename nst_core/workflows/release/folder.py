"""One release folder: its settings, the record of which stages are done, and the inputs they share.

Each stage ends by writing ``done.json`` in its folder (the settings' hash and the SHA-256 of every
file it made); a stage is done when that record matches these settings and its files are intact.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from nst_core.compress.calibration import DEFAULT_IMAGE_DIR, CalibrationImage, load_folder, split_heldout
from nst_core.compress.finetune import RecoveryMeter
from nst_core.core.errors import UserError
from nst_core.core.files import atomic_write_text, file_sha256
from nst_core.model.vgg import VGGFeatures
from nst_core.model.weights import load_vgg
from nst_core.nst.losses import get_preset
from nst_core.workflows.release.settings import ReleaseSettings

RELEASE_FORMAT = "nst-release/1"
CHECKPOINT_NAME = "model.safetensors"
STAGES = ("1-scan", "2-prune", "3-finetune", "4-judge", "5-checkpoint", "6-card")
#: Files that record wall-clock time; everything else a release writes is reproduced exactly by a rerun.
TIMING_FILES = ("timings.json", "1-scan/scan/records")


def to_json(data: object) -> str:
    """The canonical JSON a release writes (sorted keys, so a rerun writes the same bytes)."""
    return json.dumps(data, indent=2, sort_keys=True, default=float, allow_nan=True) + "\n"


def read_json(path: Path) -> dict:
    """A release file's JSON; an unreadable one is a one-line error that says how to redo its stage."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} cannot be read ({exc}); delete it to redo its stage") from None


class Release:
    """One release folder: its settings, which of its stages are done, and the inputs they share."""

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
        self.settings_hash = hashlib.sha256(to_json(settings.to_dict()).encode()).hexdigest()
        self._teacher: VGGFeatures | None = None
        self._images: tuple[list[CalibrationImage], list[CalibrationImage]] | None = None

    def claim_folder(self) -> None:
        """Create OUT_DIR with ``settings.json``, or check that an existing one was made with these settings."""
        path = self.out / "settings.json"
        if path.exists():
            stored = read_json(path)
            if stored.get("settings") != json.loads(to_json(self.settings.to_dict())):
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
        atomic_write_text(path, to_json({"format": RELEASE_FORMAT, "settings": self.settings.to_dict()}))

    def stage_dir(self, stage: str) -> Path:
        """The folder of one stage's files."""
        return self.out / stage

    def is_done(self, stage: str, extra: dict | None = None) -> bool:
        """The stage finished under these settings (and ``extra`` facts) and its files are intact."""
        marker = self.stage_dir(stage) / "done.json"
        if not marker.exists():
            return False
        done = read_json(marker)
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
            to_json({"stage": stage, "settings_sha256": self.settings_hash, "files": digests, "extra": extra or {}}),
        )

    def record_timing(self, key: str, value: dict) -> None:
        """Wall-clock facts of this run (kept apart: they differ between runs)."""
        path = self.out / "timings.json"
        timings = read_json(path) if path.exists() else {}
        timings[key] = value
        atomic_write_text(path, to_json(timings))

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
