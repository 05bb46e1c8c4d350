"""ExperimentGridSearch: runs the listed experiments in order, typed, and then ends."""

from __future__ import annotations

import json

from hpo_core.algorithms import create_searcher
from hpo_core.algorithms.base import TrialView
from hpo_core.algorithms.grid import ExperimentGridSearcher
from hpo_core.records import TrialState
from hpo_core.spec import TaskSpec


def grid_spec() -> TaskSpec:
    return TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": "ExperimentGridSearch", "objectiveMetric": "loss", "objective": "minimize"},
        "experiments": [
            {"id": 1, "hyperParams": [{"name": "learning_rate", "dataType": "DOUBLE", "fixedVal": "0.1"},
                                      {"name": "optimizer", "dataType": "STR", "fixedVal": "Adam"},
                                      {"name": "batch", "dataType": "INT", "fixedVal": "64"}]},
            {"id": 2, "hyperParams": [{"name": "learning_rate", "dataType": "DOUBLE", "fixedVal": "0.2"}]},
            {"id": 7, "hyperParams": [{"name": "batch", "dataType": "INT", "fixedVal": "128"}]},
        ]})


def started(configs, metas, first_id=0):
    return [TrialView(first_id + i, config, TrialState.RUNNING, meta=meta)
            for i, (config, meta) in enumerate(zip(configs, metas))]


def test_grid_registered():
    assert isinstance(create_searcher(grid_spec()), ExperimentGridSearcher)


def test_grid_configs_typed_as_given():
    suggestion = ExperimentGridSearcher(grid_spec()).suggest(5, [])
    assert suggestion.configs == [{"learning_rate": 0.1, "optimizer": "Adam", "batch": 64},
                                  {"learning_rate": 0.2}, {"batch": 128}]
    assert type(suggestion.configs[0]["batch"]) is int
    assert type(suggestion.configs[0]["learning_rate"]) is float
    assert suggestion.metas == [{"experiment_id": 1}, {"experiment_id": 2}, {"experiment_id": 7}]
    assert suggestion.exhausted


def test_grid_runs_in_order_one_slot():
    searcher = ExperimentGridSearcher(grid_spec())
    trials: list[TrialView] = []
    order = []
    while True:
        suggestion = searcher.suggest(1, trials)
        trials += started(suggestion.configs, suggestion.metas, len(trials))
        order += [meta["experiment_id"] for meta in suggestion.metas]
        if suggestion.exhausted:
            break
    assert order == [1, 2, 7]
    final = searcher.suggest(1, trials)
    assert final.configs == []
    assert final.exhausted


def test_grid_not_exhausted_before_last():
    searcher = ExperimentGridSearcher(grid_spec())
    first = searcher.suggest(2, [])
    assert len(first.configs) == 2
    assert not first.exhausted
    assert not searcher.suggest(0, []).exhausted


def test_grid_restart_continues_after_started():
    searcher = ExperimentGridSearcher(grid_spec())
    first = searcher.suggest(2, [])
    trials = started(first.configs, first.metas)
    restarted = ExperimentGridSearcher(grid_spec())
    state = searcher.get_state()
    if state is not None:
        restarted.set_state(json.loads(json.dumps(state)))
    assert restarted.suggest(3, trials).metas == [{"experiment_id": 7}]
