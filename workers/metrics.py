"""Reading ``$RESULT_DIR/val_dict_list.json`` and scoring a trial from it.

The file is a JSON list of flat objects, one per evaluation step, e.g.
``[{"steps": 1, "loss": 1.51}, {"steps": 2, "loss": 0.91}]``; the step key (``step`` or ``steps``) is optional.
The trial's value is the best value of the objective over the list in the task's direction; the
``additionalMetrics`` use their own strategy (minimize, maximize or latest).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo_core.records import Objective

RESULT_FILE = "val_dict_list.json"


class MetricsError(ValueError):
    """The result file is missing or unusable; the message is the trial's failure reason."""


@dataclass
class Score:
    metric: float
    metrics: dict[str, float] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def clean_steps(entries: list[Any]) -> list[dict[str, Any]]:
    """The entries as JSON-safe dicts: NaN and infinities become ``None`` so any JSON reader accepts them."""
    cleaned = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        cleaned.append({str(k): (None if isinstance(v, float) and not math.isfinite(v) else v)
                        for k, v in entry.items()})
    return cleaned


def read_entries(path: Path) -> list[Any]:
    """Read the result file as a list.

    Raises:
        MetricsError: the file is missing, is not valid JSON or is not a list.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MetricsError(f"{RESULT_FILE} not found in RESULT_DIR: the script must write its metrics to "
                           f"$RESULT_DIR/{RESULT_FILE}") from None
    except OSError as exc:
        raise MetricsError(f"cannot read {RESULT_FILE}: {exc}") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetricsError(f"{RESULT_FILE} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                           f"{exc.colno})") from None
    if not isinstance(entries, list):
        raise MetricsError(f"{RESULT_FILE} must hold a JSON list of objects, got {type(entries).__name__}")
    return entries


def score(entries: list[Any], objective_metric: str, objective: Objective,
          additional: dict[str, str] | None = None) -> Score:
    """Score a trial from its result entries.

    Raises:
        MetricsError: the list is empty, an entry is not an object, no entry has the objective, or a value of the
            objective is not a finite number.
    """
    if not entries:
        raise MetricsError(f"{RESULT_FILE} is an empty list: write at least one entry with "
                           f"{objective_metric!r}")
    values = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise MetricsError(f"{RESULT_FILE} entry {index} is not an object: {entry!r}")
        if objective_metric not in entry:
            continue
        value = entry[objective_metric]
        if not _finite_number(value):
            raise MetricsError(f"{RESULT_FILE} entry {index}: {objective_metric!r} is {value!r}, "
                               "not a finite number")
        values.append(float(value))
    if not values:
        keys = sorted({k for e in entries for k in e})
        raise MetricsError(f"no entry of {RESULT_FILE} has the objective metric {objective_metric!r}; "
                           f"keys found: {keys}")
    best = min(values) if objective is Objective.MINIMIZE else max(values)

    metrics: dict[str, float] = {}
    for name, strategy in (additional or {}).items():
        series = [float(e[name]) for e in entries if _finite_number(e.get(name))]
        if not series:
            continue
        metrics[name] = min(series) if strategy == "minimize" else max(series) if strategy == "maximize" \
            else series[-1]
    return Score(best, metrics, clean_steps(entries))


def read_steps(path: Path) -> list[dict[str, Any]] | None:
    """The entries written so far, or ``None`` while the file is absent or half written."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return clean_steps(entries) if isinstance(entries, list) else None
