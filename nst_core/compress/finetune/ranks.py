"""Distributed fine-tuning: this process's place in a ``torchrun`` run, and joining its process group.

Each rank distils its equal share of a step's batch; only rank 0 writes files and reports.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nst_core.core.devices import resolve_device
from nst_core.core.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place in a distributed run: rank 0 of 1 when there is none."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> Ranks:
        """From ``torch.distributed`` when a process group is initialised (``torchrun``), else a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def distributed(self) -> bool:
        """More than one process shares the work."""
        return self.world > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes files and reports (rank 0 only)."""
        return self.rank == 0

    def share(self, batch_size: int) -> range:
        """The indices of the step's batch this rank distils: an equal, contiguous share."""
        if batch_size % self.world:
            raise UserError(
                f"batch size {batch_size} does not split evenly over {self.world} processes; "
                f"use a multiple of {self.world}"
            )
        per_rank = batch_size // self.world
        return range(self.rank * per_rank, (self.rank + 1) * per_rank)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` averaged over every rank (itself in a single process)."""
        if not self.distributed:
            return values
        values = values.detach().clone()
        dist.all_reduce(values)
        return values / self.world

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in a single process)."""
        if self.distributed:
            dist.barrier()


@contextmanager
def process_group_from_env(device: str = "auto") -> Iterator[str]:
    """Join the process group ``torchrun`` describes in the environment, if any; yield this rank's device.

    Without ``torchrun`` (no ``WORLD_SIZE`` above 1) nothing happens and ``device`` comes back
    as given. Under it, CPU ranks talk over gloo and CUDA ranks over nccl, each on the GPU
    ``LOCAL_RANK`` names; the group is left again on exit.

    >>> with process_group_from_env("cpu") as device:   # doctest: +SKIP
    ...     train(...)
    """
    world = os.environ.get("WORLD_SIZE", "1")
    if not world.isdigit() or int(world) <= 1 or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    if not dist.is_available():
        raise UserError("WORLD_SIZE is set (torchrun?) but this torch has no torch.distributed")
    kind = resolve_device(device).type
    if kind == "mps":
        raise UserError("distributed fine-tuning runs on CPU (gloo) or CUDA (nccl), not on MPS; pass --device cpu")
    if kind == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(resolve_device(device))
    dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    try:
        yield device if kind == "cuda" else "cpu"
    finally:
        dist.destroy_process_group()
