"""Device specs: auto picks what is present, a missing device is a one-line error naming it."""

import pytest
import torch

from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_cpu_and_auto(monkeypatch, cuda, mps, expected):
    """auto: CUDA first, then Apple's MPS, then the CPU, whatever this machine has (the backends' answers are faked)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA"])
def test_missing_cuda_is_one_line(spec):
    with pytest.raises(UserError, match="no CUDA GPU is available") as caught:
        resolve_device(spec)
    assert "\n" not in str(caught.value) and spec in str(caught.value)


@pytest.mark.parametrize(
    "spec, message",
    [("gpu", "a GPU is 'cuda'"), ("tpu", "unknown device"), ("cpu:1", "unknown device"), ("cuda:x", "unknown device")],
)
def test_unknown_devices(spec, message):
    with pytest.raises(UserError, match=message):
        resolve_device(spec)
