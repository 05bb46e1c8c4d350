"""A stand-in for nvidia-ml-py's ``pynvml`` module: a host with ``FAKE_NVML_GPUS`` GPUs (4 by default).

Tests put this directory first on ``sys.path`` (or in ``sys.modules``) so that :mod:`workers.gpus` lists fake GPUs;
nothing else about the worker is faked. Each GPU reports 80 GiB of memory. Its used memory and utilisation rise by
1 GiB and 10 percentage points with every query of that GPU, so tests can check the recorded samples.
``FAKE_NVML_FAIL=1`` makes ``nvmlInit`` raise, like a host without a driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_MIB = 1024 * 1024
_queries: dict[int, int] = {}


class NVMLError(Exception):
    """Raised like pynvml's error class."""


@dataclass
class _Memory:
    total: int
    free: int
    used: int


@dataclass
class _Utilization:
    gpu: int
    memory: int


def nvmlInit() -> None:
    if os.environ.get("FAKE_NVML_FAIL") == "1":
        raise NVMLError("Driver Not Loaded")


def nvmlShutdown() -> None:
    return None


def nvmlDeviceGetCount() -> int:
    return int(os.environ.get("FAKE_NVML_GPUS", "4"))


def nvmlDeviceGetHandleByIndex(index: int) -> int:
    if not 0 <= index < nvmlDeviceGetCount():
        raise NVMLError(f"Invalid Argument: no GPU {index}")
    return index


def nvmlDeviceGetUUID(handle: int) -> str:
    return f"GPU-fake-{handle:04d}"


def nvmlDeviceGetName(handle: int) -> bytes:
    return b"Fake GPU 80GB"


def nvmlDeviceGetMemoryInfo(handle: int) -> _Memory:
    total = 80 * 1024 * _MIB
    used = _queries.get(handle, 0) * 1024 * _MIB
    return _Memory(total=total, free=total - used, used=used)


def nvmlDeviceGetUtilizationRates(handle: int) -> _Utilization:
    _queries[handle] = _queries.get(handle, 0) + 1
    return _Utilization(gpu=min(100, 10 * _queries[handle]), memory=0)
