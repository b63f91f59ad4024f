"""The conv tables of VGG-16 and VGG-19, and matching a file's conv shapes against them.

A weights file read by ``onnx_reader`` or ``keras_reader`` is a list of conv kernels in network
order, each ``(out, in, 3, 3)``. :func:`match_architecture` says which network it is, or names
the first conv that fits neither (found vs expected), so a wrong file fails in one line.

>>> [a.name for a in CANDIDATES], len(VGG16.conv_shapes), VGG19.conv_positions[:3], keras_name('conv3_2')
(['vgg16', 'vgg19'], 13, [0, 2, 5], 'block3_conv2')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nst_core.model.layers import VGG16, VGG19, Architecture
from nst_core.model.weights import WeightsError

#: The largest source file read: VGG-19 with its ImageNet classifier is about 550 MB in fp32.
MAX_SOURCE_BYTES = 1 << 30
#: The architectures a file may hold, the first conv tables tried first.
CANDIDATES = (VGG16, VGG19)


def keras_name(conv: str) -> str:
    """Keras' name for a conv layer: ``conv3_2`` -> ``block3_conv2``."""
    block, number = conv.removeprefix("conv").split("_")
    return f"block{block}_conv{number}"


def _matching_prefix(shapes: Sequence[tuple[int, ...]], architecture: Architecture) -> int:
    """How many of ``shapes`` agree with ``architecture``'s convs, from the first."""
    count = 0
    for found, expected in zip(shapes, architecture.conv_shapes):
        if tuple(found) != expected:
            break
        count += 1
    return count


def match_architecture(shapes: Sequence[tuple[int, ...]], origin: str, labels: Sequence[str] = ()) -> Architecture:
    """The architecture whose conv table ``shapes`` (OIHW, network order) is, exactly; else a ``WeightsError``.

    The message names the conv (1-based, with its label from ``labels`` when given) where the
    best-fitting table first differs: a wrong shape, a missing conv, or an extra one after the trunk.

    >>> match_architecture(VGG16.conv_shapes, "x.onnx").name
    'vgg16'
    """
    if not shapes:
        raise WeightsError(f"{origin}: no conv layers found; expected VGG-16 or VGG-19 weights")
    best = max(CANDIDATES, key=lambda a: (_matching_prefix(shapes, a), -abs(len(a.conv_shapes) - len(shapes))))
    good = _matching_prefix(shapes, best)
    expected = best.conv_shapes
    if good == len(shapes) == len(expected):
        return best
    label = f" ({labels[good]})" if good < len(labels) else ""
    if good == len(expected):
        raise WeightsError(
            f"{origin}: conv {good + 1}{label} of shape {list(shapes[good])} is an extra conv after "
            f"{best.title}'s {len(expected)}; expected exactly {len(expected)} feature convs"
        )
    if good == len(shapes):
        raise WeightsError(
            f"{origin}: conv {good + 1} ({keras_name(best.conv_names[good])}) is missing: "
            f"the file has {len(shapes)} convs, "
            f"expected {best.title}'s {len(expected)}; conv {good + 1} should be {list(expected[good])}"
        )
    raise WeightsError(
        f"{origin}: conv {good + 1}{label} has shape {list(shapes[good])}, expected {list(expected[good])} "
        f"({best.title}'s {keras_name(best.conv_names[good])})"
    )


@dataclass
class ConvWeights:
    """The conv kernels (OIHW float32) and biases of one VGG trunk, as read from a file."""

    architecture: Architecture
    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @property
    def parameter_count(self) -> int:
        """Weights plus biases of every conv."""
        return sum(w.size + b.size for w, b in zip(self.weights, self.biases))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """torchvision's keys for this architecture: ``features.N.weight`` / ``features.N.bias``."""
        state = {}
        for index, weight, bias in zip(self.architecture.conv_positions, self.weights, self.biases):
            state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32))
            state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        return state


def check_file_size(path: Path, limit: int) -> None:
    """A ``WeightsError`` unless ``path`` is a file of at most ``limit`` bytes (checked before parsing)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if not path.is_file():
        raise WeightsError(f"{path}: not a file")
    if size > limit:
        raise WeightsError(f"{path}: file size {size:,} bytes exceeds the {limit:,}-byte limit for weight imports")
