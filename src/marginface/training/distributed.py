"""Data-parallel plumbing: one process per device, started by ``torchrun``.

``torchrun --nproc-per-node N -m marginface train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup_distributed` reads them and
joins the process group (NCCL on GPUs, gloo on CPUs). Without them training runs in one process.

Under torchrun's restarts (``--max-restarts``) on one node, the process group meets in the
agent's store under a key space of its own per restart (:func:`_group_store`): the store
outlives the workers, and without that a restarted worker can read the address a worker of
the previous attempt left there and fail to connect to it (pytorch/pytorch#135712). Across
nodes the agents' restart counts need not agree, so there the launcher's
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (a new store per rendezvous round) is the fix
(docs/training.md, "Clusters").

The model is wrapped with DistributedDataParallel (:func:`wrap_data_parallel`): the backbone and,
for now, the margin head are replicated and their gradients all-reduced. A model-parallel head
(class centres sharded over ranks, which synchronises itself) plugs in by passing its parameter
names in ``ignore`` so DDP leaves them alone.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from marginface.devices import resolve_device


@dataclass
class DistEnv:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an int, got {value!r}") from exc


def _group_store(world: int) -> dist.Store | None:
    """The store the process group meets in: under torchrun's agent store on one node
    (``TORCHELASTIC_USE_AGENT_STORE`` True, ``GROUP_WORLD_SIZE`` 1), the agent's store under
    ``marginface/attempt_<TORCHELASTIC_RESTART_COUNT>/``, so that a restarted group never reads
    its predecessor's keys; otherwise None (``init_process_group``'s own ``env://``). A
    restarted multi-node job on the shared store gets a warning naming the launcher's fix."""
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    restarts = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    if _env_int("GROUP_WORLD_SIZE", 1) != 1:
        if restarts > 0 and _env_int("RANK", 0) == 0:
            print(
                "marginface train: warning: restart of a multi-node job on torchrun's shared "
                "store: a worker may read the previous attempt's address; launch with "
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (pytorch/pytorch#135712)",
                file=sys.stderr,
                flush=True,
            )
        return None
    agent = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        _env_int("MASTER_PORT", 0),
        world,
        is_master=False,
        timeout=timedelta(minutes=30),
    )
    return dist.PrefixStore(f"marginface/attempt_{restarts}", agent)  # keys: prefix/key


def setup_distributed(device_preference: str = "auto") -> DistEnv:
    """Read the torchrun environment, pick the device and join the process group if needed."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", 0)
    if world > 1 and not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside 0 .. WORLD_SIZE-1 = {world - 1}")
    device = resolve_device(device_preference, local, what="config device")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        store = _group_store(world)
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world)
        owns = True
    return DistEnv(rank, world, local, device, owns)


def cleanup_distributed(env: DistEnv) -> None:
    """Leave the process group if :func:`setup_distributed` joined it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_data_parallel(module: nn.Module, env: DistEnv, ignore: Iterable[str] = ()) -> nn.Module:
    """DDP around ``module`` when running distributed (else ``module`` itself).

    ``ignore``: fully qualified names of parameters/buffers that synchronise themselves (a
    model-parallel classifier) and that DDP must neither broadcast nor all-reduce.
    """
    if not env.distributed:
        return module
    ignore = list(ignore)
    if ignore:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            module, ignore
        )
    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of ``values`` over all ranks (``values`` itself when not distributed)."""
    if env.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def fail_together(check: Callable[[], Any], env: DistEnv) -> Any:
    """Run ``check`` on the main process; if it raised, raise the same error on every one.
    Returns its value (None on the other processes)."""
    error, value = None, None
    if env.is_main:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
            error = exc
    error = broadcast_object(error, env)
    if error is not None:
        raise error
    return value


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def resume_after_restart(cfg: Any) -> Any:
    """``cfg`` with ``resume`` set when torchrun restarted this job (``--max-restarts``: its
    ``TORCHELASTIC_RESTART_COUNT`` > 0) and the run folder holds a checkpoint: the restarted
    group goes on from the last checkpoint by itself, as a requeued job given ``--resume``
    does. A restart before the first checkpoint starts the run again."""
    restarts = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    if cfg.resume or not restarts.isdigit() or int(restarts) == 0:
        return cfg
    if not (Path(cfg.output) / "checkpoint.pt").is_file():
        return cfg
    print(
        f"marginface train: restart {restarts} of this torchrun job: resuming from "
        f"{Path(cfg.output) / 'checkpoint.pt'}",
        flush=True,
    )
    return dataclasses.replace(cfg, resume=True)
