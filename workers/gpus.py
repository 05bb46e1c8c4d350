"""GPU assignment through NVML: each worker process gets GPUs of its own."""

from __future__ import annotations

import os

import structlog

log = structlog.get_logger("openhpo.worker")


def assign_gpus() -> list[int] | None:
    """GPUs for this worker process, or ``None`` to run on the CPU.

    ``OPENHPO_GPUS`` (e.g. ``"0,1"``) fixes the list; otherwise the Celery pool child's index picks one GPU among
    those NVML reports.
    """
    fixed = os.environ.get("OPENHPO_GPUS")
    if fixed:
        return [int(g) for g in fixed.split(",") if g.strip()]
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # no driver or no library: a CPU machine
        log.info("NVML not available; trials run on the CPU")
        return None
    if count == 0:
        return None
    try:
        from celery import current_process

        index = int(getattr(current_process(), "index", 0) or 0)
    except Exception:
        index = 0
    return [index % count]
