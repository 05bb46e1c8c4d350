"""TPE with hyperopt's engine, chosen with algoParams Engine."""

from __future__ import annotations

import json
import statistics

import pytest

from hpo_core.algorithms import HyperoptTPESearcher, RandomSearcher, TPESearcher, TrialView, create_searcher
from hpo_core.errors import SpecError
from hpo_core.records import TrialState
from hpo_core.spec import TaskSpec


def _spec(seed: int = 1, **params: str) -> TaskSpec:
    algo_params = [{"name": "RandomSeed", "value": str(seed)}] + [{"name": k, "value": v} for k, v in params.items()]
    return TaskSpec.parse({
        "modelSpec": {"args": "python train.py"},
        "algoDef": {"algorithm": "Tpe", "maxJobNum": 60, "objectiveMetric": "loss", "objective": "minimize",
                    "algoParams": algo_params},
        "hyperParams": [
            {"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": -3, "maxDbVal": 3},
            {"name": "y", "type": "Range", "dataType": "DOUBLE", "minDbVal": -3, "maxDbVal": 3},
            {"name": "n", "type": "Range", "dataType": "INT", "minIntVal": 0, "maxIntVal": 9},
            {"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam"]},
        ],
    })


def _loss(config) -> float:
    return (config["x"] - 1) ** 2 + (config["y"] + 1) ** 2 + (config["n"] - 3) ** 2 / 10 + \
        (0 if config["opt"] == "adam" else 1)


def _run(searcher, budget: int, fail_every: int = 0) -> list[TrialView]:
    trials: list[TrialView] = []
    while len(trials) < budget:
        (config,) = searcher.suggest(1, trials).configs
        failed = fail_every and len(trials) % fail_every == fail_every - 1
        state = TrialState.FAILED if failed else TrialState.FINISHED
        trials.append(TrialView(len(trials), config, state, None if failed else _loss(config)))
    return trials


def test_engine_selects_searcher():
    assert isinstance(create_searcher(_spec()), TPESearcher)
    assert isinstance(create_searcher(_spec(Engine="parzen")), TPESearcher)
    assert isinstance(create_searcher(_spec(Engine="Hyperopt")), HyperoptTPESearcher)


def test_engine_rejects_unknown_name():
    with pytest.raises(SpecError, match=r"algoDef\.algoParams\.Engine: is not a known TPE engine \(got 'optuna'\)"):
        create_searcher(_spec(Engine="optuna"))


def test_hyperopt_engine_typed_distinct_and_reproducible():
    first = _run(create_searcher(_spec(Engine="hyperopt", WarmUp="5")), 30, fail_every=6)
    again = _run(create_searcher(_spec(Engine="hyperopt", WarmUp="5")), 30, fail_every=6)

    assert [t.config for t in first] == [t.config for t in again]
    assert len({json.dumps(t.config, sort_keys=True) for t in first}) == 30
    assert all(type(t.config["n"]) is int for t in first)
    assert all(-3 <= t.config["x"] <= 3 for t in first)


def test_hyperopt_engine_parallel_never_repeats_pending():
    searcher = create_searcher(_spec(Engine="hyperopt", WarmUp="3"))
    trials = _run(searcher, 6)
    pending = [TrialView(6 + i, c, TrialState.RUNNING) for i, c in enumerate(searcher.suggest(4, trials).configs)]
    batch = searcher.suggest(4, trials + pending).configs

    keys = {json.dumps(t.config, sort_keys=True) for t in trials + pending}
    assert len(batch) == 4
    assert not keys & {json.dumps(c, sort_keys=True) for c in batch}


def test_hyperopt_engine_tolerates_trial_outside_space():
    searcher = create_searcher(_spec(Engine="hyperopt", WarmUp="3"))
    trials = _run(searcher, 5)
    trials.append(TrialView(5, {"x": 99.0, "y": 0.0, "n": 3, "opt": "adam"}, TrialState.FINISHED, 0.0))

    (config,) = searcher.suggest(1, trials).configs
    assert -3 <= config["x"] <= 3


def test_hyperopt_engine_beats_random():
    def best(factory, seed):
        return min(t.loss for t in _run(factory(_spec(seed, Engine="hyperopt", WarmUp="10")), 40))

    tpe = statistics.median(best(create_searcher, seed) for seed in range(5))
    random = statistics.median(best(RandomSearcher, seed) for seed in range(5))
    assert tpe < random
