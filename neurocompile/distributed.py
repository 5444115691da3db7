"""Data parallelism under ``torchrun`` (``torch.distributed``): who this process is, its share of
the data, and the few collectives ``train`` and ``simulate`` need.

    with session(device) as world:      # gloo on CPU, NCCL on CUDA
        part = x[shard_slice(len(x), world)]

Outside torchrun, or in a world of one, a process is rank 0 of 1 and every function hands its input back
unchanged. See ``docs/distributed.md``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from neurocompile.errors import NeurocompileError
from neurocompile.ir.recording import Recording


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0, the one that writes files and prints."""
        return self.rank == 0


def world_from_env(env=None) -> World:
    """The world torchrun's variables describe; a one-line error for an inconsistent set."""
    env = os.environ if env is None else env
    if "RANK" not in env and "WORLD_SIZE" not in env:
        return World()
    for name in ("RANK", "WORLD_SIZE"):
        if name not in env:
            raise NeurocompileError(f"torchrun environment: {name} is not set (RANK and WORLD_SIZE go together)")
    rank, size = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
    local_rank = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0
    if size < 1 or not 0 <= rank < size or local_rank < 0:
        raise NeurocompileError(
            f"torchrun environment: RANK={rank}, LOCAL_RANK={local_rank}, WORLD_SIZE={size} "
            "(need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0)"
        )
    if size > 1:
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
        if missing:
            raise NeurocompileError(
                f"torchrun environment: WORLD_SIZE={size} but {' and '.join(missing)} not set (start the command with torchrun)"
            )
    return World(rank, size, local_rank)


def _env_int(env, name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise NeurocompileError(f"torchrun environment: {name}='{env[name]}' is not an integer") from None


def in_group() -> bool:
    """Whether this process has joined a process group."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def current() -> World:
    """The world of the process group this process has joined (rank 0 of 1 when none)."""
    import torch.distributed as dist

    if not in_group():
        return World()
    return World(dist.get_rank(), dist.get_world_size(), world_from_env().local_rank)


@contextmanager
def session(device):
    """Join torchrun's process group for the time of a command; yields the :class:`World`.

    The backend follows ``device``: NCCL for CUDA (each rank on GPU ``LOCAL_RANK``), gloo
    otherwise. Outside torchrun, or in a world of one, nothing starts."""
    world = world_from_env()
    if world.size == 1:
        yield world
        return
    import torch.distributed as dist

    _join(world, device)
    try:
        yield world
        dist.barrier()  # leave together: a rank that exits while another still uses the group aborts in C++
    finally:
        dist.destroy_process_group()


def _join(world: World, device) -> None:
    import torch
    import torch.distributed as dist

    backend = "gloo"
    if torch.device(device).type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise NeurocompileError(
                f"LOCAL_RANK={world.local_rank} but {torch.cuda.device_count()} CUDA GPU(s) visible: "
                "start at most one process per GPU"
            )
        torch.cuda.set_device(world.local_rank)  # "cuda" now means this rank's GPU
        backend = "nccl"
    try:
        dist.init_process_group(backend, rank=world.rank, world_size=world.size)
    except (RuntimeError, ValueError) as exc:  # torch's DistError family derives from RuntimeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NeurocompileError(f"cannot join the {backend} process group of {world.size} processes: {first}") from None


# --- shares of the data ------------------------------------------------------------------------


def shard_slice(n: int, world: World) -> slice:
    """This rank's contiguous block of ``n`` samples (blocks in rank order, sizes differ by at most 1)."""
    if world.size > 1 and n < world.size:
        raise NeurocompileError(f"{n} samples cannot be shared by {world.size} processes (each needs one)")
    return slice(n * world.rank // world.size, n * (world.rank + 1) // world.size)


def shard_indices(order, world: World):
    """This rank's part of an epoch's sample ``order`` (a tensor), dealt as ``DistributedSampler``
    deals it: ``order`` repeated from its start up to a multiple of the world size, then every
    ``size``-th entry from the rank's own. All ranks get the same number of samples."""
    if world.size == 1:
        return order
    import torch

    total = -(-len(order) // world.size) * world.size
    padded = order[torch.arange(total, device=order.device) % len(order)]
    return padded[world.rank :: world.size]


def local_batch(batch_size: int, world: World) -> int:
    """Each rank's share of a global batch of ``batch_size`` samples."""
    if batch_size % world.size:
        raise NeurocompileError(
            f"--batch-size {batch_size} is the global batch: it must be a multiple of the {world.size} processes"
        )
    return batch_size // world.size


# --- collectives -------------------------------------------------------------------------------


def all_sum(values, device) -> list[float]:
    """``values`` (numbers) summed over all ranks, element by element, in float64."""
    import torch
    import torch.distributed as dist

    if not in_group():
        return [float(v) for v in values]
    total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def replicate(model, autograd: bool):
    """``(module to train, sync)``: a data-parallel replica of ``model`` and the function to call
    before every optimizer step.

    Rules that back-propagate with autograd train a ``DistributedDataParallel`` wrapper, which
    averages gradients during ``backward``. Rules that write ``.grad`` themselves (the online
    rules) bypass DDP's hooks: they start from rank 0's weights and ``sync`` averages their
    gradients. Outside a process group: ``(model, a no-op)``."""
    if not in_group():
        return model, _no_sync
    if autograd:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model), _no_sync
    _broadcast_parameters(model)
    return model, lambda: average_gradients(model.parameters())


def _no_sync() -> None:
    """Nothing to average: DDP did it, or there is no process group."""


def _broadcast_parameters(model) -> None:
    import torch.distributed as dist

    for p in model.parameters():
        dist.broadcast(p.data, src=0)


def average_gradients(parameters) -> None:
    """Replace every ``.grad`` by its mean over the ranks (one all-reduce over all of them)."""
    import torch
    import torch.distributed as dist

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))


def gather_recording(recording: Recording, world: World) -> Recording | None:
    """On rank 0, the recordings of every rank's shard as one (see :func:`merge_recordings`); None elsewhere."""
    if not in_group():
        return recording
    import torch.distributed as dist

    parts = [None] * world.size if world.main else None
    dist.gather_object(recording, parts, dst=0)
    return merge_recordings(parts) if world.main else None


def merge_recordings(parts: list[Recording]) -> Recording:
    """Shard recordings, in rank order, as the recording of one run over all samples: arrays
    joined along the batch, synaptic operations summed; ``metadata["shards"]`` keeps each part's."""
    first = parts[0]
    arrays = {key: np.concatenate([p.arrays[key] for p in parts]) for key in first.arrays}
    counts = [p.metadata.get("synops") for p in parts]
    synops = None if any(c is None for c in counts) else {k: sum(c[k] for c in counts) for k in counts[0]}
    metadata = {"synops": synops, "shards": [p.metadata for p in parts]}
    return Recording(arrays, list(first.outputs), first.backend, metadata)
