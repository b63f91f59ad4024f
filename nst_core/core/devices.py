"""Which device tensors live on: ``auto`` picks CUDA, then Apple's MPS, then the CPU.

Every command, the app and the library take the same spec (``--device auto|cpu|cuda|cuda:N|mps``);
asking for a device that is not there is a one-line error, not a driver traceback.

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import torch

from nst_core.core.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device a spec names (``auto``/None: the fastest one present), checked to exist."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or "auto").strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    kind, _, index = text.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        hint = " (a GPU is 'cuda')" if kind == "gpu" else ""
        raise UserError(f"unknown device {spec!r}{hint}; use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda":
        if not torch.cuda.is_available():
            built = (
                "without CUDA"
                if torch.version.cuda is None
                else f"with CUDA {torch.version.cuda}, but no GPU is visible"
            )
            raise UserError(
                f"device {spec!r}: no CUDA GPU is available (torch {torch.__version__} is built {built}); "
                "use --device auto or cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise UserError(f"device {spec!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not _mps_available():
        raise UserError(f"device {spec!r}: Apple's MPS backend is not available here; use --device auto or cpu")
    return torch.device(text)


def prepare_backend(device: torch.device) -> None:
    """Per-device settings that only speed things up: cuDNN picks the fastest conv algorithm per shape."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
