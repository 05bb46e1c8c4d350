"""Task and trial records with their state machines.

Task::

    SUBMITTED ──► RUNNING ──► FINISHED | FAILED | STOPPED
        └─────────────────────► STOPPED | FAILED

Trial (a WMLA "experiment")::

    QUEUED ──► RUNNING ──► FINISHED | FAILED | STOPPED
      ▲           │
      └───────────┘  the worker was lost: a new attempt, up to the retry limit

A task whose budget is spent or whose space is exhausted ends FINISHED even when some trials failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class TaskState(str, Enum):
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def ended(self) -> bool:
        return self in (TaskState.FINISHED, TaskState.FAILED, TaskState.STOPPED)


class TrialState(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"

    @property
    def ended(self) -> bool:
        return self in (TrialState.FINISHED, TrialState.FAILED, TrialState.STOPPED)


class Objective(str, Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    def to_loss(self, value: float) -> float:
        """Flip the sign once, here, so that every algorithm minimises."""
        return value if self is Objective.MINIMIZE else -value

    def better(self, a: float, b: float) -> bool:
        return a < b if self is Objective.MINIMIZE else a > b


@dataclass
class Trial:
    """One trial: a configuration, its attempts and its result.

    ``metric`` is the objective's value in the user's direction (not sign-flipped); ``metrics`` holds the
    ``additionalMetrics``; ``steps`` the entries of ``val_dict_list.json`` as they arrived.
    """

    id: int
    config: dict[str, Any]
    state: TrialState = TrialState.QUEUED
    attempt: int = 1
    metric: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    exit_code: int | None = None
    worker: str | None = None
    created: float | None = None
    started: float | None = None
    ended: float | None = None
    #: Tags an algorithm attaches to its trials, e.g. the Hyperband bracket and rung.
    meta: dict[str, Any] = field(default_factory=dict)
    #: Resource usage samples (GPU memory, utilisation) written by the worker.
    usage: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.id < 0:
            raise ValueError(f"trial id must be >= 0, got {self.id}")
        if self.attempt < 1:
            raise ValueError(f"trial attempt must be >= 1, got {self.attempt}")
        if self.metric is not None and not math.isfinite(self.metric):
            raise ValueError(f"trial {self.id} metric must be finite, got {self.metric}")

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or 0.0) - self.started if self.ended else None

    @property
    def has_result(self) -> bool:
        """Whether the trial ended with an objective value that may count as a result."""
        return self.metric is not None and self.state in (TrialState.FINISHED, TrialState.STOPPED)


def best_trial(trials: list[Trial], objective: Objective) -> Trial | None:
    """The trial with the best objective value; failed trials never count. Ties go to the earlier trial."""
    best: Trial | None = None
    for trial in sorted(trials, key=lambda t: t.id):
        if not trial.has_result:
            continue
        assert trial.metric is not None
        if best is None or objective.better(trial.metric, best.metric):  # type: ignore[arg-type]
            best = trial
    return best
