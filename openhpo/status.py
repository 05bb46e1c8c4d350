"""Task status in WMLA's shape (the object of ``GET /hypersearch/{name}``), built from the store.

Experiments without a value show WMLA's ``9999.99`` sentinel for ``metricVal``, whatever the objective;
``complete`` counts every ended experiment, failed ones included.
"""

from __future__ import annotations

import math
import time
from typing import Any

from broker.store import RedisStore, TaskRecord
from hpo_core.records import Objective, Trial, TrialState, best_trial

#: WMLA's ``metricVal`` for an experiment that has no value (running or failed).
NO_VALUE = 9999.99


def _clock(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _data_type(value: Any) -> str:
    if isinstance(value, bool) or isinstance(value, str):
        return "str"
    return "int" if isinstance(value, int) else "double"


def _latest_value(steps: list[dict[str, Any]], metric: str | None) -> float | None:
    for step in reversed(steps):
        value = step.get(metric) if metric else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def experiment(task: str, trial: Trial, objective_metric: str | None = None) -> dict[str, Any]:
    """One trial as a WMLA experiment object, with openhpo's extra fields.

    The extras are the attempt, the failure reason, the additional metrics, and the progress of a running trial:
    ``steps`` (entries reported so far) and ``latestMetricVal`` (the objective in the latest entry).
    """
    entry: dict[str, Any] = {
        "id": trial.id,
        "state": trial.state.value,
        "metricVal": trial.metric if trial.has_result else NO_VALUE,
        "maxiteration": 0,
        "appId": f"{task}-{trial.id}",
        "hyperParams": [{"name": k, "dataType": _data_type(v), "fixedVal": str(v), "userDefined": False}
                        for k, v in trial.config.items()],
        "values": dict(trial.config),
        "attempt": trial.attempt,
        "metrics": trial.metrics,
    }
    entry["steps"] = len(trial.steps)
    latest = _latest_value(trial.steps, objective_metric)
    if latest is not None:
        entry["latestMetricVal"] = latest
    if trial.started:
        entry["startTime"] = _clock(trial.started)
    if trial.ended:
        entry["endTime"] = _clock(trial.ended)
    if trial.started and trial.ended:
        entry["duration"] = round(trial.ended - trial.started, 3)
    if trial.reason:
        entry["reason"] = trial.reason
    if trial.exit_code is not None:
        entry["exitCode"] = trial.exit_code
    if trial.worker:
        entry["worker"] = trial.worker
    if trial.meta:
        entry["meta"] = trial.meta
    if trial.usage:
        entry["usage"] = trial.usage
    return entry


def task_status(store: RedisStore, name: str, task: TaskRecord | None = None,
                trials: list[Trial] | None = None) -> dict[str, Any]:
    """The WMLA task-state object of task ``name``.

    Raises:
        TaskNotFoundError: no such task.
    """
    task = task or store.get_task(name)
    trials = trials if trials is not None else store.get_trials(name, task.next_trial)
    algo = task.spec.get("algoDef") or {}
    try:
        objective = Objective(str(algo.get("objective", "minimize")).strip().lower())
    except ValueError:
        objective = Objective.MINIMIZE
    max_jobs = algo.get("maxJobNum", -1)
    try:
        max_jobs = int(max_jobs)
    except (TypeError, ValueError):
        max_jobs = -1
    metric = algo.get("objectiveMetric") if isinstance(algo.get("objectiveMetric"), str) else None
    complete = sum(1 for t in trials if t.state.ended)
    failed = sum(1 for t in trials if t.state is TrialState.FAILED)
    running = sum(1 for t in trials if t.state is TrialState.RUNNING)
    queued = sum(1 for t in trials if t.state is TrialState.QUEUED)
    start = task.started or task.created
    end = task.ended or time.time()
    status: dict[str, Any] = {
        "hpoName": task.name,
        "state": task.state.value,
        "running": running,
        "queued": queued,
        "complete": complete,
        "failed": failed,
        "progress": f"{complete}/{max_jobs if max_jobs > 0 else '-'}",
        "createtime": _clock(task.created),
        "creator": task.creator,
        "duration": _duration(end - start),
        "experiments": [experiment(task.name, t, metric) for t in trials],
        "algoDef": algo,
        "hyperParams": task.spec.get("hyperParams", []),
    }
    if task.reason:
        status["reason"] = task.reason
    best = best_trial(trials, objective)
    if best is not None:
        status["best"] = experiment(task.name, best, metric)
    return status
