"""Really interrupting a run: SIGKILL a subprocess once its fine-tuning state file shows progress."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import torch


def kill_once_state_reaches(proc: subprocess.Popen, state: Path, step: int, timeout: float = 240) -> None:
    """SIGKILL ``proc`` as soon as the state file ``state`` records ``step`` or more finished steps;
    fail if the process ends (or ``timeout`` seconds pass) first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists():
            try:
                saved_step = int(torch.load(state, weights_only=True, mmap=True)["step"])  # mmap: no full read
            except Exception:  # replaced between exists() and load(); look again
                saved_step = 0
            if saved_step >= step:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
