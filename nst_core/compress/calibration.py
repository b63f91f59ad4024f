"""Calibration images for fine-tuning: a folder of any photos and paintings, held-out images
kept apart, and reproducible random crops, flips and scales.

The batch for a training step is a pure function of (seed, step): an interrupted run that
resumes at step k sees exactly the crops the uninterrupted run saw from step k on, with no
sampler state to save.

>>> images = load_folder("examples")                       # doctest: +SKIP
>>> train, heldout = split_heldout(images, count=2, seed=0)  # doctest: +SKIP
>>> batch = CropSampler(train, crop_size=128, batch_size=4, seed=0).batch(step=0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nst_core.core.errors import UserError
from nst_core.image.io import IMAGE_SUFFIXES, ImageError, find_images, load_image, pil_to_tensor

#: The bundled examples (content photos and style paintings) used when no folder is given.
DEFAULT_IMAGE_DIR = Path(__file__).resolve().parents[2] / "examples"
#: Smaller images carry too little texture to be worth a crop (crops are resized to the crop size).
MIN_SIDE = 16


class SkippedImageWarning(UserWarning):
    """A calibration file could not be used and was left out."""


@dataclass
class CalibrationImage:
    """One decoded image: ``pixels`` is (3, H, W) float RGB in 0..255."""

    name: str  # path relative to the folder it came from, for reports and provenance
    pixels: torch.Tensor


def load_images(paths: list[Path], max_side: int = 512, root: Path | None = None) -> list[CalibrationImage]:
    """Decode ``paths`` with the project's validation; a bad file is skipped with a warning."""
    loaded: list[CalibrationImage] = []
    for path in paths:
        name = str(path.relative_to(root)) if root is not None else str(path)
        try:
            image = load_image(path, max_side=max_side, min_side=MIN_SIDE)
        except (ImageError, OSError) as exc:
            # One unreadable file in a folder of hundreds should not end a long job.
            warnings.warn(f"skipping calibration image ({exc})", SkippedImageWarning, stacklevel=2)
            continue
        loaded.append(CalibrationImage(name, pil_to_tensor(image)[0]))
    return loaded


def load_folder(folder: str | Path | None = None, max_side: int = 512) -> list[CalibrationImage]:
    """All usable images in ``folder`` (default: the bundled examples)."""
    folder = Path(folder) if folder is not None else DEFAULT_IMAGE_DIR
    if not folder.is_dir():
        raise UserError(f"calibration folder {folder} does not exist or is not a directory")
    paths = find_images(folder)
    if not paths:
        raise UserError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    images = load_images(paths, max_side=max_side, root=folder)
    if not images:
        raise UserError(f"none of the {len(paths)} image files in {folder} could be read")
    return images


def split_heldout(
    images: list[CalibrationImage], count: int, seed: int
) -> tuple[list[CalibrationImage], list[CalibrationImage]]:
    """(train, held-out): ``count`` images chosen by ``seed`` are never trained on."""
    if count < 1:
        raise UserError("at least one held-out image is needed to measure recovery")
    if len(images) < count + 1:
        raise UserError(
            f"{len(images)} usable calibration image(s): need at least {count + 1} "
            f"({count} held out for measurement, 1 or more to train on)"
        )
    # Take held-out images from the top-level subfolders in turn (e.g. content/ then style/),
    # so the judged style transfer on the bundled examples gets a photo and a painting.
    groups: dict[str, list[int]] = {}
    for i in torch.randperm(len(images), generator=_generator(seed, 0, 0)).tolist():
        groups.setdefault(Path(images[i].name).parts[0] if len(Path(images[i].name).parts) > 1 else "", []).append(i)
    queues = [groups[key] for key in sorted(groups)]
    heldout: list[int] = []
    while len(heldout) < count:
        for queue in queues:
            if queue and len(heldout) < count:
                heldout.append(queue.pop(0))
    train = sorted(set(range(len(images))) - set(heldout))
    return [images[i] for i in train], [images[i] for i in heldout]


def _generator(seed: int, stream: int, index: int) -> torch.Generator:
    # Independent, reproducible streams: (stream 0: split, 1: epoch order, 2: augmentation).
    mixed = (seed * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) % (2**63)
    return torch.Generator().manual_seed(mixed)


class CropSampler:
    """Random square crops of ``crop_size`` px, at random scales, flipped half the time.

    Each epoch visits every training image once in a seeded order; sample i of the run is
    image ``order(epoch)[i % n]`` with augmentation drawn from a generator seeded by i.
    ``scale_range`` is the crop's side as a fraction of the image's shorter side, so 1.0
    is the whole image shrunk to ``crop_size`` and small values zoom into texture.
    """

    def __init__(
        self,
        images: list[CalibrationImage],
        crop_size: int = 128,
        batch_size: int = 4,
        seed: int = 0,
        scale_range: tuple[float, float] = (0.25, 1.0),
        flip: bool = True,
    ):
        if not images:
            raise UserError("no training images to sample crops from")
        if crop_size < 16:
            raise UserError(f"crop size must be at least 16 px, not {crop_size}")
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, not {batch_size}")
        low, high = scale_range
        if not 0 < low <= high <= 1:
            raise UserError(f"crop scale range must satisfy 0 < min <= max <= 1, not {scale_range}")
        self.images = images
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.seed = seed
        self.scale_range = (float(low), float(high))
        self.flip = flip
        self._orders: dict[int, list[int]] = {}

    def steps_per_epoch(self) -> int:
        """Steps for one pass over the training images (the last batch may wrap into the next epoch)."""
        return math.ceil(len(self.images) / self.batch_size)

    def _image_index(self, sample: int) -> int:
        n = len(self.images)
        epoch = sample // n
        if epoch not in self._orders:
            self._orders = {epoch: torch.randperm(n, generator=_generator(self.seed, 1, epoch)).tolist()}
        return self._orders[epoch][sample % n]

    def sample(self, index: int) -> torch.Tensor:
        """The ``index``-th crop of the run, (3, crop, crop) float 0..255."""
        pixels = self.images[self._image_index(index)].pixels
        g = _generator(self.seed, 2, index)
        _, h, w = pixels.shape
        low, high = self.scale_range
        scale = low + (high - low) * torch.rand((), generator=g).item()
        side = max(8, min(h, w, round(scale * min(h, w))))
        top = int(torch.randint(0, h - side + 1, (), generator=g))
        left = int(torch.randint(0, w - side + 1, (), generator=g))
        flip = bool(torch.rand((), generator=g) < 0.5)
        crop = pixels[:, top : top + side, left : left + side].unsqueeze(0)
        crop = F.interpolate(
            crop,
            size=(self.crop_size, self.crop_size),
            mode="bilinear",
            align_corners=False,
            antialias=side > self.crop_size,
        )
        crop = crop[0].clamp(0, 255)
        return crop.flip(-1) if self.flip and flip else crop

    def batch(self, step: int) -> torch.Tensor:
        """The batch for training step ``step`` (0-based), (B, 3, crop, crop)."""
        first = step * self.batch_size
        return torch.stack([self.sample(first + j) for j in range(self.batch_size)])
