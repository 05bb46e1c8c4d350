"""GPU allocation through NVML: every trial process, and every member of an elastic trial, gets GPUs of its own.

A worker lists its host's GPUs through NVML (the ``pynvml`` module of nvidia-ml-py). A trial takes GPUs for as long
as it runs by holding an exclusive ``flock`` on one lock file per GPU under ``<work_dir>/gpu-locks/<hostname>/``.
The kernel releases such a lock when the holding process exits or is killed, so a lost worker never leaves a GPU
taken, and the Celery pool processes of one host never give one GPU to two trials. ``OPENHPO_GPU_SHARING=N`` gives
each GPU N lock files, so that up to N trials share it; the allocator fills empty GPUs first. ``OPENHPO_GPUS``
(e.g. ``"0,1"``) limits the GPUs a worker may use.

A trial process finds its GPUs in ``CUDA_VISIBLE_DEVICES`` with NVML's indices and ``CUDA_DEVICE_ORDER=PCI_BUS_ID``,
because CUDA's default order (fastest first) may differ from NVML's. While the trial runs, the worker samples the
memory used and the utilisation of its GPUs, and the trial record keeps a summary in its ``usage`` field.

Without NVML (no driver, no library, or no GPU) the allocator is ``None``: trials run on the CPU, and the worker
logs that once.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("openhpo.worker")

_MIB = 1024 * 1024
#: Seconds a trial waits for a GPU that another trial on this host is about to release.
ACQUIRE_WAIT_SECONDS = 2.0
#: Seconds between attempts to take a GPU while all of them are held.
_ACQUIRE_POLL_SECONDS = 0.2
_cpu_logged = False


class NoFreeGpuError(RuntimeError):
    """Every GPU this worker may use is held by other trials."""


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML lists it."""

    index: int
    uuid: str
    name: str
    memory_total_mib: float


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Nvml:
    """The NVML module, initialised once in each process (a forked Celery pool child needs its own init)."""

    def __init__(self, module: Any):
        self.module = module
        self._pid: int | None = None

    def ready(self) -> Any:
        if self._pid != os.getpid():
            self.module.nvmlInit()
            self._pid = os.getpid()
        return self.module


@dataclass
class _Samples:
    count: int = 0
    memory_used_max_mib: float = 0.0
    memory_used_last_mib: float = 0.0
    utilization_sum_pct: float = 0.0
    utilization_max_pct: float = 0.0


@dataclass
class GpuLease:
    """GPUs held by one trial process until :meth:`release`; also records their usage samples."""

    gpus: list[GpuInfo]
    _nvml: _Nvml
    _files: list[Any]
    _samples: dict[int, _Samples] = field(default_factory=dict)

    @property
    def indices(self) -> list[int]:
        return [gpu.index for gpu in self.gpus]

    def environment(self) -> dict[str, str]:
        """Return the environment variables that restrict a training process to these GPUs."""
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in self.indices), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}

    def sample(self) -> None:
        """Record the memory used and the utilisation of each GPU now; a failed NVML query is logged and skipped."""
        try:
            nvml = self._nvml.ready()
            for gpu in self.gpus:
                handle = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                utilization = nvml.nvmlDeviceGetUtilizationRates(handle)
                samples = self._samples.setdefault(gpu.index, _Samples())
                used = memory.used / _MIB
                samples.count += 1
                samples.memory_used_last_mib = used
                samples.memory_used_max_mib = max(samples.memory_used_max_mib, used)
                samples.utilization_sum_pct += float(utilization.gpu)
                samples.utilization_max_pct = max(samples.utilization_max_pct, float(utilization.gpu))
        except Exception as exc:  # a usage sample is never worth failing a trial for
            log.warning("sampling GPU usage failed", gpus=self.indices, error=str(exc))

    def usage(self) -> dict[str, Any]:
        """Summarise the samples for the trial record's ``usage`` field."""
        entries = []
        for gpu in self.gpus:
            samples = self._samples.get(gpu.index, _Samples())
            entries.append({
                "index": gpu.index,
                "uuid": gpu.uuid,
                "name": gpu.name,
                "memory_total_mib": round(gpu.memory_total_mib, 1),
                "memory_used_max_mib": round(samples.memory_used_max_mib, 1),
                "memory_used_last_mib": round(samples.memory_used_last_mib, 1),
                "utilization_mean_pct": round(samples.utilization_sum_pct / samples.count, 1) if samples.count
                else None,
                "utilization_max_pct": samples.utilization_max_pct,
                "samples": samples.count,
            })
        return {"gpus": entries}

    def release(self) -> None:
        """Give the GPUs back; calling it again does nothing."""
        for handle in self._files:
            try:
                fcntl.flock(handle, fcntl.LOCK_UN)
            finally:
                handle.close()
        self._files = []

    def __enter__(self) -> "GpuLease":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.release()


class GpuAllocator:
    """Hands out this host's GPUs to trial processes, safely across processes.

    Args:
        lock_dir: directory of the per-GPU lock files; it must be on a local disk of this host, because ``flock``
            on a network file system may not exclude processes on other hosts.
        nvml: the ``pynvml`` module (tests pass a fake one).
        sharing: how many trials may hold one GPU at a time.
        allowed: the NVML indices this worker may use; ``None`` for all.
    """

    def __init__(self, lock_dir: Path, nvml: Any, sharing: int = 1, allowed: list[int] | None = None):
        if sharing < 1:
            raise ValueError(f"GPU sharing must be at least 1 trial per GPU, got {sharing}")
        self.lock_dir = Path(lock_dir)
        self.sharing = sharing
        self.allowed = allowed
        self._nvml = _Nvml(nvml)
        self._devices: list[GpuInfo] | None = None

    @classmethod
    def from_environment(cls, work_dir: Path) -> "GpuAllocator | None":
        """Build this worker's allocator, or return ``None`` when NVML or GPUs are missing (trials then run on the CPU).

        Reads ``OPENHPO_GPUS`` (indices this worker may use) and ``OPENHPO_GPU_SHARING`` (trials per GPU).

        Raises:
            ValueError: either variable is malformed.
        """
        global _cpu_logged
        sharing_text = os.environ.get("OPENHPO_GPU_SHARING", "1").strip() or "1"
        try:
            sharing = int(sharing_text)
        except ValueError:
            raise ValueError(f"OPENHPO_GPU_SHARING must be a whole number of trials per GPU, got "
                             f"{sharing_text!r}") from None
        if sharing < 1:
            raise ValueError(f"OPENHPO_GPU_SHARING must be at least 1 trial per GPU, got {sharing}")
        allowed_text = os.environ.get("OPENHPO_GPUS", "").strip()
        try:
            allowed = [int(part) for part in allowed_text.split(",") if part.strip()] if allowed_text else None
        except ValueError:
            raise ValueError(f"OPENHPO_GPUS must list GPU indices such as 0,1, got {allowed_text!r}") from None
        try:
            import pynvml

            allocator = cls(Path(work_dir).resolve() / "gpu-locks" / socket.gethostname(), pynvml, sharing, allowed)
            count = len(allocator.devices())
        except Exception as exc:  # no driver or no library: a CPU machine
            if not _cpu_logged:
                log.info("NVML not available; trials run on the CPU", error=str(exc))
                _cpu_logged = True
            return None
        if count == 0:
            if not _cpu_logged:
                log.info("NVML lists no GPU this worker may use; trials run on the CPU", allowed=allowed)
                _cpu_logged = True
            return None
        return allocator

    def devices(self) -> list[GpuInfo]:
        """List the GPUs this worker may use, in NVML order."""
        if self._devices is None:
            nvml = self._nvml.ready()
            devices = []
            for index in range(nvml.nvmlDeviceGetCount()):
                if self.allowed is not None and index not in self.allowed:
                    continue
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                devices.append(GpuInfo(index, _text(nvml.nvmlDeviceGetUUID(handle)),
                                       _text(nvml.nvmlDeviceGetName(handle)), memory.total / _MIB))
            self._devices = devices
        return self._devices

    def acquire(self, count: int = 1, wait: float = 0.0, owner: str = "") -> GpuLease:
        """Take ``count`` distinct GPUs, waiting up to ``wait`` seconds for other trials to release some.

        Raises:
            ValueError: ``count`` is below 1 or above the number of GPUs this worker may use.
            NoFreeGpuError: not enough GPUs were free in time.
        """
        devices = self.devices()
        if not 1 <= count <= len(devices):
            raise ValueError(f"a trial process needs 1 to {len(devices)} GPUs on this worker, got {count}")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait
        while True:
            lease = self._try_acquire(devices, count, owner)
            if lease is not None:
                return lease
            if time.monotonic() >= deadline:
                raise NoFreeGpuError(
                    f"no {count} free GPU(s) among {[d.index for d in devices]}: other trials hold them "
                    f"(up to {self.sharing} per GPU). Run at most as many trial processes per host as it has "
                    f"GPUs, or set OPENHPO_GPU_SHARING")
            time.sleep(_ACQUIRE_POLL_SECONDS)

    def _try_acquire(self, devices: list[GpuInfo], count: int, owner: str) -> GpuLease | None:
        acquired: list[GpuInfo] = []
        files: list[Any] = []
        # Share slot 0 of every GPU comes first, so trials spread over empty GPUs before they share one.
        for share in range(self.sharing):
            for gpu in devices:
                if len(acquired) == count:
                    break
                if gpu in acquired:
                    continue
                handle = self._lock(gpu, share, owner)
                if handle is not None:
                    acquired.append(gpu)
                    files.append(handle)
        if len(acquired) < count:
            GpuLease(acquired, self._nvml, files).release()
            return None
        return GpuLease(sorted(acquired, key=lambda g: g.index), self._nvml, files)

    def _lock(self, gpu: GpuInfo, share: int, owner: str) -> Any:
        path = self.lock_dir / f"gpu-{gpu.index}.{share}.lock"
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        # The owner's name in the file tells a person which trial uses the GPU.
        handle.seek(0)
        handle.truncate()
        handle.write(f"{owner} pid {os.getpid()}\n")
        handle.flush()
        return handle
