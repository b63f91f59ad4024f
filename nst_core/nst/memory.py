"""How much memory one stylization step needs, and how to read a memory budget such as ``4GB``.

A step is a forward pass through the VGG trunk with autograd recording, the losses, and the
backward pass to the image. Its peak is dominated by what autograd keeps for backward, which
this module counts layer by layer from the network's widths (a structured-pruned network keeps
narrower activations, so it needs less) and the image size:

- each conv's output (its ReLU runs in place on it, and the next layer saves it as its input);
- each max pool's output and its int64 argmax indices;
- under bf16 autocast, the fp32 copy of every layer a loss reads (Gram matrices are fp32);
- during backward, about two conv outputs' worth of gradients are alive at once at the
  widest layer.

Image-sized tensors (the image, its gradient, Adam's two moments, the content image) cost a
fixed number of bytes per output pixel, tiled or not; total variation's image-sized temporaries
live before the network's pass, so only the larger of the two counts.

The constants were fitted to peak RSS measured in a subprocess (``tests/test_memory_model.py``
checks the fit stays within its tolerance): CPU allocators keep some freed blocks, so the
counted bytes are scaled by ``ALLOCATOR_OVERHEAD``.

>>> from nst_core.model.layers import DENSE_WIDTHS
>>> round(step_bytes(DENSE_WIDTHS, ["relu1_2", "relu5_3"], 512, 512, "fp32") / 2**20)  # doctest: +SKIP
600
"""

from __future__ import annotations

import os
import re
import resource
import sys

import torch

from nst_core.core.errors import UserError
from nst_core.model.layers import DEFAULT_ARCH, ArchLike, min_input_side, widths_architecture

#: Bytes per activation element for each precision (fp32 and bf16 autocast).
ACTIVATION_BYTES = {"fp32": 4, "bf16": 2}
INDEX_BYTES = 8  # MaxPool2d's argmax indices are int64
#: Measured: peak RSS over the process's RSS before the run, divided by the counted bytes.
ALLOCATOR_OVERHEAD = 1.15
#: Image-sized fp32 tensors alive throughout a step, in units of one 3-channel fp32 image: the image,
#: its gradient, Adam's two moments, the content image, and one for a style image or a resize.
IMAGE_COPIES = 6
#: Image-sized temporaries of total variation (differences, their absolute values, their gradients)
#: and of Adam's update; they are freed before the network's pass starts, so they count only
#: where they exceed it.
IMAGE_TEMPORARIES = 6
#: Plans aim at this share of a budget: the model's error, measured, stays within it (tests/test_memory_model.py).
SAFETY = 0.85
#: What a run allocates whatever the image size (loss bookkeeping, allocator arenas), bytes.
FIXED_BYTES = 120 * 2**20
#: What a tiled run adds whatever the tile size: oneDNN primitives and scratch buffers for each window
#: shape (edge tiles differ), the core guides. Measured: 100-150 MB above the counted bytes at 384 px.
TILED_FIXED_BYTES = 150 * 2**20

_UNITS = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "T": 10**12,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_memory(text: str, flag: str = "--max-memory") -> int:
    """``"4GB"`` -> 4_000_000_000 bytes (KB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB of 1024).

    A bare number is bytes. A one-line UserError naming ``flag`` for anything else, and for less than 1MB.

    >>> parse_memory("4GB"), parse_memory("512MiB"), parse_memory("1.5 GB")
    (4000000000, 536870912, 1500000000)
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise UserError(f"{flag} {text!r}: give an amount with a unit, such as 4GB, 8GB or 512MB")
    amount = float(match.group(1)) * _UNITS[unit]
    if amount < 2**20:
        raise UserError(f"{flag} {text!r}: must be at least 1MB; a stylization needs hundreds of MB")
    return int(amount)


def format_bytes(count: float) -> str:
    """Bytes as a short human figure in decimal units: ``1.23 GB``, ``456 MB``.

    >>> format_bytes(4_000_000_000), format_bytes(123_456_789)
    ('4.00 GB', '123 MB')
    """
    if count >= 10**9:
        return f"{count / 10**9:.2f} GB"
    return f"{count / 10**6:.0f} MB"


def step_bytes(
    widths: dict[str, int],
    layers: list[str],
    height: int,
    width: int,
    precision: str = "fp32",
    arch: ArchLike | None = None,
) -> int:
    """Counted bytes autograd holds at the peak of one step for a ``height`` x ``width`` input.

    ``widths``: each conv's output channels (``VGGFeatures.widths``; a pruned network's are
    smaller); ``layers``: the layers the losses read (the deepest one ends the forward pass).
    The count excludes image-sized tensors (see :func:`predict_step_peak`) and the allocator overhead.
    The architecture (VGG-19 or VGG-16) is ``arch``, or what the widths' conv names say.
    """
    architecture = widths_architecture(widths, arch)
    act = ACTIVATION_BYTES[precision]
    wanted = set(layers)
    saved = 0
    widest_gradient = 0
    channels, factor = 3, 1
    for name, kind in architecture.layers_up_to(architecture.deepest_layer(layers)):
        pixels = (height // factor) * (width // factor)
        if kind == "conv":
            channels = widths[name]
            saved += channels * pixels * act
            widest_gradient = max(widest_gradient, channels * pixels * 4)
        elif kind == "pool":
            factor *= 2
            pooled = (height // factor) * (width // factor)
            saved += channels * pooled * (act + INDEX_BYTES)
        elif name in wanted and precision != "fp32":
            saved += channels * pixels * 4  # the fp32 copy the losses take
    return saved + 2 * widest_gradient


def image_bytes(height: int, width: int, copies: int = IMAGE_COPIES) -> int:
    """Bytes of ``copies`` image-sized fp32 tensors (3 channels)."""
    return copies * 3 * 4 * height * width


def predict_step_peak(
    widths: dict[str, int],
    layers: list[str],
    height: int,
    width: int,
    precision: str = "fp32",
    tile: int | None = None,
    arch: ArchLike | None = None,
) -> int:
    """Predicted peak bytes a run adds to the process at this size: untiled, or with square tiles of side ``tile``.

    Tiling bounds the network's part by one tile (tiles are processed one after another);
    the image-sized tensors stay whole.
    """
    net_h, net_w = (height, width) if tile is None else (min(tile, height), min(tile, width))
    network = step_bytes(widths, layers, net_h, net_w, precision, arch)
    transient = max(network, image_bytes(height, width, IMAGE_TEMPORARIES))
    fixed = FIXED_BYTES if tile is None else FIXED_BYTES + TILED_FIXED_BYTES
    return int(fixed + ALLOCATOR_OVERHEAD * (image_bytes(height, width) + transient))


def largest_tile(
    widths: dict[str, int],
    layers: list[str],
    height: int,
    width: int,
    precision: str,
    budget: int,
    stride: int,
    arch: ArchLike | None = None,
) -> int | None:
    """The largest tile side (a multiple of ``stride``) whose step peak fits ``budget`` bytes; None if none does.

    ``budget`` is what the run may add to the process (the budget less what the process
    already holds).
    """
    side = (max(height, width) // stride) * stride
    while side >= stride:
        if predict_step_peak(widths, layers, height, width, precision, side, arch) <= budget:
            return side
        # Shrink by about 10% per step: the peak grows with the square of the side.
        side = min(side - stride, (int(side * 0.9) // stride) * stride)
    return None


def min_tile(last_layer: str, arch: ArchLike = DEFAULT_ARCH) -> int:
    """The smallest tile side the deepest layer allows: one output pixel after every pooling."""
    return min_input_side(last_layer, arch)


def peak_rss() -> int:
    """This process's peak resident memory in bytes since it started its program.

    Linux's ``VmHWM`` (the high-water mark of this program's own address space), not
    ``getrusage``'s ``ru_maxrss``: that one survives ``exec``, so a process started from a large
    parent (a test runner of 2 GB, say) reports the parent's size as its own peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, the BSDs KiB


def memory_in_use(device: torch.device) -> int:
    """Bytes the budget already holds: the process's resident memory on a CPU, allocated device memory on a GPU.

    On a CPU this is the larger of the current RSS and the peak so far (loading weights may have
    peaked higher than what stays resident, and a budget on peak RSS counts that peak).
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = peak_rss()
    try:
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is all there is
        current = peak
    return max(current, peak)
