"""Median stopping rule and create_scheduler, on hand-made trial views."""

from __future__ import annotations

import pytest

from hpo_core.algorithms.base import Decision, TrialView
from hpo_core.algorithms.schedulers import MedianStoppingRule, create_scheduler
from hpo_core.errors import SpecError
from hpo_core.records import TrialState
from hpo_core.spec import TaskSpec


def view(trial_id: int, losses, state=TrialState.RUNNING) -> TrialView:
    return TrialView(trial_id, {"lr": 0.1}, state, intermediate=tuple(losses))


def spec_with(params: dict[str, str], algorithm="Random") -> TaskSpec:
    return TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": algorithm, "objectiveMetric": "loss", "objective": "minimize",
                    "algoParams": [{"name": k, "value": v} for k, v in params.items()]},
        "hyperParams": [{"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.001, "maxDbVal": 0.1}]})


OTHERS = [view(1, [1.0, 0.8, 0.6, 0.5], TrialState.FINISHED),
          view(2, [1.2, 1.0, 0.9], TrialState.FINISHED),
          view(3, [0.9, 0.7, 0.5, 0.4], TrialState.RUNNING)]


def test_median_stops_worse_than_median():
    rule = MedianStoppingRule(grace=1, min_trials=3)
    trial = view(0, [1.5, 1.4, 1.3])
    # Averages of the first three losses: 0.8, 1.033 and 0.7, so the median is 0.8 and 1.3 is worse.
    assert rule.decide(trial, OTHERS + [trial]) is Decision.STOP


def test_median_continues_better_than_median():
    rule = MedianStoppingRule(grace=1, min_trials=3)
    trial = view(0, [1.5, 1.4, 0.75])
    assert rule.decide(trial, OTHERS + [trial]) is Decision.CONTINUE


def test_median_uses_best_so_far():
    rule = MedianStoppingRule(grace=1, min_trials=3)
    trial = view(0, [0.5, 1.4, 1.6])  # its best, 0.5, beats the median even though it got worse
    assert rule.decide(trial, OTHERS + [trial]) is Decision.CONTINUE


def test_median_equal_to_median_continues():
    rule = MedianStoppingRule(grace=1, min_trials=3)
    median = sorted(sum(other.intermediate[:3]) / 3 for other in OTHERS)[1]
    trial = view(0, [median, median, median])
    assert rule.decide(trial, OTHERS + [trial]) is Decision.CONTINUE


def test_median_grace_period():
    rule = MedianStoppingRule(grace=4, min_trials=1)
    trial = view(0, [9.0, 9.0, 9.0])
    assert rule.decide(trial, OTHERS + [trial]) is Decision.CONTINUE
    trial = view(0, [9.0, 9.0, 9.0, 9.0])
    assert rule.decide(trial, OTHERS + [trial]) is Decision.STOP


def test_median_needs_min_trials_at_step():
    rule = MedianStoppingRule(grace=1, min_trials=3)
    trial = view(0, [9.0, 9.0, 9.0, 9.0])
    # Only trials 1 and 3 reached step 4.
    assert rule.decide(trial, OTHERS + [trial]) is Decision.CONTINUE
    assert MedianStoppingRule(grace=1, min_trials=2).decide(trial, OTHERS + [trial]) is Decision.STOP


def test_median_ignores_itself():
    rule = MedianStoppingRule(grace=1, min_trials=1)
    trial = view(0, [9.0])
    assert rule.decide(trial, [trial]) is Decision.CONTINUE


def test_median_no_results_continue():
    rule = MedianStoppingRule(grace=0, min_trials=1)
    trial = view(0, [])
    assert rule.decide(trial, OTHERS + [trial]) is Decision.CONTINUE


def test_median_rejects_bad_arguments():
    with pytest.raises(ValueError, match="grace"):
        MedianStoppingRule(grace=-1)
    with pytest.raises(ValueError, match="min_trials"):
        MedianStoppingRule(min_trials=0)


def test_create_scheduler_none_by_default():
    assert create_scheduler(spec_with({})) is None
    assert create_scheduler(spec_with({"EarlyStopping": "none"})) is None


def test_create_scheduler_median_settings():
    scheduler = create_scheduler(spec_with({"EarlyStopping": "Median", "EarlyStoppingGrace": "5",
                                            "EarlyStoppingMinTrials": "4"}))
    assert isinstance(scheduler, MedianStoppingRule)
    assert scheduler.grace == 5
    assert scheduler.min_trials == 4


def test_create_scheduler_median_defaults():
    scheduler = create_scheduler(spec_with({"EarlyStopping": "median"}))
    assert isinstance(scheduler, MedianStoppingRule)
    assert scheduler.grace == 3
    assert scheduler.min_trials == 3


def test_create_scheduler_with_hyperband():
    spec = spec_with({"EarlyStopping": "median", "ResourceName": "epochs", "ResourceValue": "9"}, "Hyperband")
    assert isinstance(create_scheduler(spec), MedianStoppingRule)


@pytest.mark.parametrize("params, field", [
    ({"EarlyStopping": "hyperband"}, "EarlyStopping"),
    ({"EarlyStopping": "median", "EarlyStoppingGrace": "-1"}, "EarlyStoppingGrace"),
    ({"EarlyStopping": "median", "EarlyStoppingMinTrials": "0"}, "EarlyStoppingMinTrials"),
    ({"EarlyStopping": "median", "EarlyStoppingMinTrials": "two"}, "EarlyStoppingMinTrials"),
    ({"EarlyStoppingGrace": "2"}, "EarlyStoppingGrace"),
])
def test_create_scheduler_rejects(params, field):
    with pytest.raises(SpecError) as info:
        create_scheduler(spec_with(params))
    assert info.value.field == f"algoDef.algoParams.{field}"
