"""The Celery task that runs one trial attempt.

Every task may run more than once (``acks_late`` redelivers the message of a worker that died). The task is
idempotent on (task, trial, attempt): it claims the attempt atomically in Redis first and does nothing when the
attempt has ended, is held by a live worker, or has been superseded by a newer attempt.
"""

from __future__ import annotations

import structlog
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from broker.app import RUN_TRIAL, app
from broker.logs import configure_logging
from broker.settings import get_settings
from broker.store import RedisStore
from workers.gpus import GpuAllocator
from workers.runner import TrialRunner
from workers.warm import WarmLauncher

log = structlog.get_logger("openhpo.worker")
_runner: TrialRunner | None = None


def _get_runner() -> TrialRunner:
    global _runner
    if _runner is None:
        settings = get_settings()
        store = RedisStore.from_url(settings.redis_url, settings.key_prefix)
        launcher = WarmLauncher(settings.warm_imports.split(","))
        _runner = TrialRunner(store, settings, allocator=GpuAllocator.from_environment(settings.work_dir),
                              launcher=launcher)
    return _runner


@worker_process_init.connect
def _init_process(**_kwargs) -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    global _runner
    _runner = None  # each forked child opens its own Redis connection and warm interpreter
    runner = _get_runner()
    if runner.launcher is not None:
        runner.launcher.start()


@worker_ready.connect
def _ready(sender=None, **_kwargs) -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    log.info("worker started", hostname=getattr(sender, "hostname", None), queue=settings.queue)


@worker_shutdown.connect
def _shutdown(sender=None, **_kwargs) -> None:
    log.info("worker stopped", hostname=getattr(sender, "hostname", None))


@app.task(name=RUN_TRIAL, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_trial(task: str, trial: int, attempt: int, params: dict | None = None) -> str:
    """Run attempt ``attempt`` of trial ``trial`` of task ``task``.

    ``params`` repeats the trial's hyperparameters so that Flower shows them; the worker reads the authoritative
    values from Redis.
    """
    return _get_runner().run(task, int(trial), int(attempt))
