"""Helpers for training scripts that run as elastic distributed trials, and unchanged as a plain process.

Under an elastic trial, torch's elastic agent starts the script with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set. It restarts the script, possibly with another world size, when a member
joins or is lost. A script written with these helpers therefore:

1. calls :func:`setup` to join the process group (gloo on the CPU, NCCL on GPUs) and get its device;
2. resumes from :func:`load_checkpoint` when it returns one, because a restart begins the script from the top;
3. saves with :func:`save_checkpoint` after every epoch, and writes its metrics with
   :func:`write_val_dict_list`, both on rank 0 only;
4. calls :func:`teardown` at the end.

Run as a plain process (no elastic variables), the same calls do what a single-process script would: rank 0,
world size 1, no process group, files written directly.

Checkpoints are written to ``$RESULT_DIR/checkpoint/``. Members on one host share ``RESULT_DIR``. Across hosts,
:func:`load_checkpoint` sends the newest checkpoint that any rank can read to the ranks that cannot, so a shared
file system is not needed while the host that wrote it stays in the group.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

#: File name of the checkpoint inside ``$RESULT_DIR/checkpoint/``.
CHECKPOINT_FILE = "edt-checkpoint.pt"
#: File name of the metrics list that openhpo reads from ``$RESULT_DIR``.
RESULT_FILE = "val_dict_list.json"


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def rank() -> int:
    """Return this process's global rank: 0 in a plain process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def world_size() -> int:
    """Return the number of training processes in the group: 1 in a plain process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _env_int("WORLD_SIZE", 1)


def local_rank() -> int:
    """Return this process's rank among those of its node: 0 in a plain process."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Tell whether this process is rank 0, the one that writes results and checkpoints."""
    return rank() == 0


def is_elastic() -> bool:
    """Tell whether a torch elastic agent (or torchrun) started this process."""
    return "MASTER_ADDR" in os.environ and "WORLD_SIZE" in os.environ and "RANK" in os.environ


def restart_count() -> int:
    """Return how many times the agent restarted the training processes (``TORCHELASTIC_RESTART_COUNT``)."""
    return _env_int("TORCHELASTIC_RESTART_COUNT", 0)


def device() -> torch.device:
    """Return the device of this process: its GPU (``LOCAL_RANK`` among the visible ones) or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def setup(backend: str | None = None, timeout: float = 300.0) -> torch.device:
    """Join the process group when started by an elastic agent, and return this process's device.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; by default NCCL when CUDA is available, else gloo.
        timeout: seconds a collective operation may wait for the other ranks before it fails.
    """
    chosen = device()
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if is_elastic() and not dist.is_initialized():
        backend = backend or ("nccl" if chosen.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
    return chosen


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: torch.nn.Module, on: torch.device | None = None) -> torch.nn.Module:
    """Move ``model`` to the device and wrap it in DistributedDataParallel when a process group exists."""
    on = on or device()
    model = model.to(on)
    if not (dist.is_available() and dist.is_initialized()):
        return model
    device_ids = [on.index] if on.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def barrier() -> None:
    """Wait until every rank gets here; nothing to wait for in a plain process."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def mean_over_ranks(value: float) -> float:
    """Return the mean of ``value`` over all ranks (the value itself in a plain process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()


def result_dir() -> Path:
    """Return ``$RESULT_DIR``, or the current directory when it is unset."""
    return Path(os.environ.get("RESULT_DIR") or ".")


def checkpoint_path() -> Path:
    return result_dir() / "checkpoint" / CHECKPOINT_FILE


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(state: dict[str, Any], epoch: int) -> None:
    """Save ``state`` as the checkpoint after ``epoch`` (counted from 1); only rank 0 writes.

    The file is replaced atomically, so a process killed while saving leaves the previous checkpoint intact.
    Any rank may call it, and no rank waits for another.
    """
    if not is_main():
        return
    _atomic_write(checkpoint_path(), lambda tmp: torch.save({"epoch": int(epoch), "state": state}, tmp))


def _read_local_checkpoint(map_location: Any) -> tuple[dict[str, Any], int] | None:
    path = checkpoint_path()
    if not path.is_file():
        return None
    saved = torch.load(path, map_location=map_location, weights_only=False)
    return saved["state"], int(saved["epoch"])


def load_checkpoint(map_location: Any = "cpu") -> tuple[dict[str, Any], int] | None:
    """Return ``(state, epoch)`` of the newest checkpoint, or ``None`` when there is none.

    In a process group every rank must call it, because the ranks agree on the newest epoch that any of them can
    read, and the lowest rank that has it sends it to the ranks that do not.
    """
    local = _read_local_checkpoint(map_location)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    epochs: list[int] = [-1] * dist.get_world_size()
    dist.all_gather_object(epochs, local[1] if local is not None else -1)
    newest = max(epochs)
    if newest < 0:
        return None
    if all(epoch == newest for epoch in epochs):
        return local
    source = epochs.index(newest)
    payload = [local if dist.get_rank() == source else None]
    dist.broadcast_object_list(payload, src=source, device=_collective_device())
    if local is not None and local[1] == newest:
        return local
    return payload[0]


def write_val_dict_list(entries: list[dict[str, Any]]) -> None:
    """Write ``entries`` to ``$RESULT_DIR/val_dict_list.json``, atomically and on rank 0 only.

    Pass the whole history every time (keep it in the checkpoint), so that the file stays complete after a
    restart.
    """
    if not is_main():
        return
    _atomic_write(result_dir() / RESULT_FILE, lambda tmp: tmp.write_text(json.dumps(entries)))


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
