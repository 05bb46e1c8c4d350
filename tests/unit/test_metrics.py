"""Scoring a trial from val_dict_list.json."""

from __future__ import annotations

import json

import pytest

from hpo_core.records import Objective
from workers.metrics import MetricsError, read_entries, read_steps, score


def test_score_takes_best_in_direction():
    entries = [{"steps": 1, "loss": 0.9}, {"steps": 2, "loss": 0.4}, {"steps": 3, "loss": 0.6}]

    assert score(entries, "loss", Objective.MINIMIZE).metric == 0.4
    assert score(entries, "loss", Objective.MAXIMIZE).metric == 0.9


def test_score_additional_metric_strategies():
    entries = [{"loss": 3, "acc": 0.5, "lr": 0.1}, {"loss": 2, "acc": 0.9, "lr": 0.05}, {"loss": 1, "acc": 0.7}]
    additional = {"acc": "maximize", "loss2": "minimize", "lr": "latest"}

    result = score(entries, "loss", Objective.MINIMIZE, additional)

    assert result.metrics["acc"] == 0.9
    assert result.metrics["lr"] == 0.05
    assert "loss2" not in result.metrics
    assert result.steps == entries


def test_score_skips_entries_without_objective():
    entries = [{"steps": 1, "accuracy": 0.2}, {"steps": 2, "loss": 0.5}]

    assert score(entries, "loss", Objective.MINIMIZE).metric == 0.5


@pytest.mark.parametrize("entries, message", [
    ([], "empty list"),
    ([{"accuracy": 0.5}], "has the objective metric 'loss'"),
    ([{"loss": "0.5"}], "not a finite number"),
    ([{"loss": float("nan")}], "not a finite number"),
    ([{"loss": float("inf")}], "not a finite number"),
    ([{"loss": True}], "not a finite number"),
    ([{"loss": None}], "not a finite number"),
    ([3.0], "entry 0 is not an object"),
])
def test_score_rejects_unusable_entries(entries, message):
    with pytest.raises(MetricsError, match=message):
        score(entries, "loss", Objective.MINIMIZE)


def test_read_entries_reports_file_problems(tmp_path):
    path = tmp_path / "val_dict_list.json"
    with pytest.raises(MetricsError, match="not found in RESULT_DIR"):
        read_entries(path)

    path.write_text('[{"loss": ')
    with pytest.raises(MetricsError, match="not valid JSON"):
        read_entries(path)

    path.write_text('{"loss": 1}')
    with pytest.raises(MetricsError, match="must hold a JSON list"):
        read_entries(path)


def test_read_steps_tolerates_half_written_file(tmp_path):
    path = tmp_path / "val_dict_list.json"
    assert read_steps(path) is None

    path.write_text('[{"loss": 1.0}, {"loss": ')
    assert read_steps(path) is None

    path.write_text('[{"loss": NaN, "steps": 1}]')
    steps = read_steps(path)
    assert steps == [{"loss": None, "steps": 1}]
    assert json.loads(json.dumps(steps)) == steps
