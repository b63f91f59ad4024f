"""A stand-in for Hugging Face's ``spaces`` package (ZeroGPU), put on the path of a real
``python app.py`` by tests/test_space.py.

The real package attaches a GPU to a ZeroGPU Space for the duration of each ``@spaces.GPU``
call; it cannot run off a Space, and this machine has no GPU. This stand-in keeps the interface
the app uses (``spaces.GPU(duration=SECONDS or CALLABLE)``) and records, one JSON line per event
in the file named by ``NST_SPACES_RECORD``:

- ``decorate``: a function was wrapped, with its duration (``"dynamic"`` for a callable);
- ``call``: a wrapped function was called, with the seconds it asked for (the callable's answer);
- ``forward``: a ``VGGFeatures`` network ran forward, on which device, inside a call or not.

It attaches no GPU: what runs inside a call runs on whatever device the app resolves there
(the CPU on this machine). The real package's CUDA emulation at start-up, scheduling, process
isolation and quotas are not imitated.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading

import torch

_record_path = os.environ["NST_SPACES_RECORD"]
_lock = threading.Lock()
_active_calls = 0  # calls of wrapped functions in progress (a generator counts until it ends)


def _record(**event) -> None:
    with _lock, open(_record_path, "a") as f:
        f.write(json.dumps(event) + "\n")


def _forward_hook(module, args, output) -> None:
    if type(module).__name__ == "VGGFeatures":
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), None)
        _record(event="forward", device=device, inside=_active_calls > 0)


torch.nn.modules.module.register_module_forward_hook(_forward_hook)


def _enter(fn, duration, args, kwargs) -> None:
    global _active_calls
    seconds = duration(*args, **kwargs) if callable(duration) else duration
    _record(event="call", function=fn.__qualname__, duration=seconds)
    with _lock:
        _active_calls += 1


def _leave() -> None:
    global _active_calls
    with _lock:
        _active_calls -= 1


def GPU(fn=None, duration=60):  # noqa: N802 (the real package's name)
    """``@spaces.GPU`` or ``@spaces.GPU(duration=...)``: the function, wrapped to record its calls."""
    if fn is None:
        return lambda f: GPU(f, duration=duration)
    _record(event="decorate", function=fn.__qualname__, duration="dynamic" if callable(duration) else duration)
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            _enter(fn, duration, args, kwargs)
            try:
                yield from fn(*args, **kwargs)
            finally:
                _leave()

        return generator

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _enter(fn, duration, args, kwargs)
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()

    return wrapper
