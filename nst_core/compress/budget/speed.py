"""Measured speed: stylization iterations of the dense and the pruned network, interleaved round by round,
through the same ``stylize`` code users run."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from PIL import Image

from nst_core.core.errors import UserError
from nst_core.image.io import tensor_to_pil
from nst_core.model.vgg import VGGFeatures
from nst_core.nst.stylize import StylizeConfig, prepare, stylize


@dataclass
class SpeedMeasurement:
    """Seconds per stylization iteration of the dense and the pruned network, one pair per interleaved round."""

    size: tuple[int, int]
    dense_rounds: list[float]
    pruned_rounds: list[float]

    @property
    def dense_s(self) -> float:
        """Median seconds per iteration of the dense network."""
        return statistics.median(self.dense_rounds)

    @property
    def pruned_s(self) -> float:
        """Median seconds per iteration of the pruned network."""
        return statistics.median(self.pruned_rounds)

    @property
    def samples(self) -> int:
        """Rounds measured (each network once per round)."""
        return len(self.dense_rounds)

    @property
    def speedup(self) -> float:
        """Median over rounds of dense / pruned seconds within the round: a round's two networks ran
        back to back, so a machine that got busier between rounds changes both alike."""
        return statistics.median(d / p for d, p in zip(self.dense_rounds, self.pruned_rounds))

    def to_dict(self) -> dict:
        """JSON-ready measurement."""
        return {
            "size": list(self.size),
            "dense_s_per_it": self.dense_s,
            "pruned_s_per_it": self.pruned_s,
            "measured_speedup": self.speedup,
            "samples": self.samples,
            "dense_rounds": list(self.dense_rounds),
            "pruned_rounds": list(self.pruned_rounds),
        }


def _timing_images(size: int) -> tuple[Image.Image, Image.Image]:
    """A square content and style image of ``size`` px: seeded noise (timing does not depend on pixel values)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((2, 1, 3, size, size), generator=generator) * 255
    return tensor_to_pil(noise[0]), tensor_to_pil(noise[1])


def time_iterations(
    models: list[VGGFeatures], size: int, iterations: int = 2, rounds: int = 2, preset: str = "seed"
) -> list[list[float]]:
    """Seconds per stylization iteration (Adam, ``preset`` losses, ``size`` x ``size`` px) of each model,
    one sample per round, the models taking turns within each round so machine load hits all alike.
    An untimed warm-up run of each comes first."""
    content, style = _timing_images(size)
    config = StylizeConfig(size=size, iterations=iterations, preset=preset)
    for model in models:
        stylize(prepare(model, content, [style], StylizeConfig(size=size, iterations=1, preset=preset)))
    samples: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for index, model in enumerate(models):
            samples[index].append(stylize(prepare(model, content, [style], config)).timings["per_iteration"])
    return samples


def measure_speedup(
    dense: VGGFeatures, pruned: VGGFeatures, size: int = 512, iterations: int = 2, rounds: int = 2, preset: str = "seed"
) -> SpeedMeasurement:
    """Measured per-iteration speedup of ``pruned`` over ``dense`` at ``size`` x ``size`` px
    (see :func:`time_iterations`)."""
    if iterations < 1 or rounds < 1:
        raise UserError("measuring speed needs at least 1 iteration and 1 round")
    dense_t, pruned_t = time_iterations([dense, pruned], size, iterations, rounds, preset)
    return SpeedMeasurement((size, size), dense_t, pruned_t)
