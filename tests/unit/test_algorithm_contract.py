"""The contract every built-in searcher keeps, run over each entry of BUILTIN_SEARCHERS.

A searcher proposes at most the configurations requested, and each is valid for the search space. It never
proposes a configuration that a trial already has, even with many trials running, and it survives failed
trials. After its state goes through JSON into a new instance, the new one proposes exactly what the original
would have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from typing import Any

import pytest

from hpo_core.algorithms import BUILTIN_SEARCHERS, create_searcher
from hpo_core.algorithms.base import Searcher, Suggestion, TrialView
from hpo_core.records import TrialState
from hpo_core.spec import TaskSpec

SPACE = [
    {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -1, "power": "10"},
    {"name": "hidden", "type": "Range", "dataType": "INT", "minIntVal": 32, "maxIntVal": 256, "step": "32"},
    {"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam"]},
]
#: 3 x 2 = 6 configurations, so every searcher must end or stop repeating itself quickly.
FINITE_SPACE = [
    {"name": "layers", "type": "Discrete", "dataType": "INT", "discreteIntVal": [1, 2, 3]},
    {"name": "act", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["relu", "tanh"]},
]
RESOURCE = {"ResourceName": "epochs", "ResourceValue": "9"}
#: algoParams that make each algorithm run in a small test; an algorithm not listed gets only RandomSeed.
ALGO_PARAMS: dict[str, dict[str, str]] = {
    "Tpe": {"WarmUp": "4"},
    "Bayesian": {"InitPoints": "4"},
    "Hyperband": RESOURCE,
    "ASHA": RESOURCE,
    "BOHB": {**RESOURCE, "MinPointsInModel": "2"},
}
#: Keys a searcher may add to a configuration beyond the search space.
EXTRA_KEYS = {"Hyperband": {"epochs"}, "ASHA": {"epochs"}, "BOHB": {"epochs"}}
ALGORITHMS = sorted(BUILTIN_SEARCHERS)


def make_spec(algorithm: str, hyper_params: list[dict] = SPACE) -> TaskSpec:
    algo_def: dict[str, Any] = {
        "algorithm": algorithm, "objectiveMetric": "loss", "objective": "minimize",
        "algoParams": [{"name": k, "value": v} for k, v in {"RandomSeed": "11", **ALGO_PARAMS.get(algorithm, {})}
                       .items()],
    }
    body: dict[str, Any] = {"modelSpec": {"args": "--model-main train.py"}, "algoDef": algo_def}
    if algorithm == "ExperimentGridSearch":
        algo_def["algoParams"] = []
        configs = [{"lr": 10.0 ** -(1 + k % 3), "hidden": 32 * (1 + k % 7), "opt": ["sgd", "adam"][k % 2]}
                   for k in range(3 * len(hyper_params) * 2)]
        body["experiments"] = [
            {"id": k, "hyperParams": [{"name": name, "dataType": "STR" if isinstance(value, str) else "DOUBLE",
                                       "fixedVal": str(value)} for name, value in config.items()]}
            for k, config in enumerate(configs)]
    else:
        body["hyperParams"] = hyper_params
    return TaskSpec.parse(body)


def loss_of(config: dict[str, Any]) -> float:
    lr = config.get("lr", 0.01)
    return (math.log10(lr) + 2.5) ** 2 + abs(config.get("hidden", 128) - 128) / 256 + 1 / config.get("epochs", 9)


def config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def check_suggestion(algorithm: str, spec: TaskSpec, suggestion: Suggestion, n: int) -> None:
    assert len(suggestion.configs) <= n
    assert len(suggestion.metas) == len(suggestion.configs)
    json.dumps(suggestion.configs)
    json.dumps(suggestion.metas)
    for config in suggestion.configs:
        if algorithm == "ExperimentGridSearch":
            continue
        extra = set(config) - set(spec.space.names)
        assert extra <= EXTRA_KEYS.get(algorithm, set())
        params = {k: v for k, v in config.items() if k in spec.space}
        assert spec.space.check_config(params, "config") == params


def restored_copy(algorithm: str, searcher: Searcher, spec: TaskSpec) -> Searcher:
    state = json.loads(json.dumps(searcher.get_state()))
    copy = create_searcher(spec)
    if state is not None:
        copy.set_state(state)
    return copy


def run(algorithm: str, spec: TaskSpec, slots: int, budget: int, seed: int = 0, fail_every: int = 0,
        check_restart: bool = False) -> tuple[list[TrialView], bool]:
    """Drive a searcher on a fake cluster that ends one random running trial per step.

    Returns the trials and whether the searcher reported the search exhausted.
    """
    rng = random.Random(seed)
    searcher = create_searcher(spec)
    trials: list[TrialView] = []
    ended = 0
    while len(trials) < budget:
        free = min(slots - sum(t.pending for t in trials), budget - len(trials))
        copy = restored_copy(algorithm, searcher, spec) if check_restart else None
        suggestion = searcher.suggest(free, trials)
        check_suggestion(algorithm, spec, suggestion, free)
        if copy is not None:
            again = copy.suggest(free, trials)
            assert again.configs == suggestion.configs
            assert again.metas == suggestion.metas
            assert again.exhausted == suggestion.exhausted
        for config, meta in zip(suggestion.configs, suggestion.metas):
            trials.append(TrialView(len(trials), dict(config), TrialState.RUNNING, meta=dict(meta)))
        running = [t for t in trials if t.pending]
        if suggestion.exhausted and not running:
            return trials, True
        if not running:
            assert suggestion.exhausted, "no trial runs and nothing was proposed, yet the search is not exhausted"
        view = rng.choice(running)
        ended += 1
        if fail_every and ended % fail_every == 0:
            trials[view.id] = dataclasses.replace(view, state=TrialState.FAILED)
        else:
            trials[view.id] = dataclasses.replace(view, state=TrialState.FINISHED, loss=loss_of(view.config))
    return trials, False


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_contract_first_suggestion_valid(algorithm):
    spec = make_spec(algorithm)
    suggestion = create_searcher(spec).suggest(4, [])
    check_suggestion(algorithm, spec, suggestion, 4)
    assert len(suggestion.configs) == 4


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_contract_zero_slots_nothing(algorithm):
    suggestion = create_searcher(make_spec(algorithm)).suggest(0, [])
    assert suggestion.configs == []


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_contract_run_with_failures(algorithm):
    trials, _ = run(algorithm, make_spec(algorithm), slots=3, budget=24, fail_every=4)
    keys = [config_key(t.config) for t in trials]
    assert len(set(keys)) == len(keys)
    assert len(trials) >= 12


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_contract_state_round_trip(algorithm):
    run(algorithm, make_spec(algorithm), slots=2, budget=16, seed=1, fail_every=5, check_restart=True)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_contract_parallel_no_duplicates(algorithm):
    spec = make_spec(algorithm)
    searcher = create_searcher(spec)
    trials: list[TrialView] = []
    for _ in range(4):
        suggestion = searcher.suggest(3, trials)
        check_suggestion(algorithm, spec, suggestion, 3)
        for config, meta in zip(suggestion.configs, suggestion.metas):
            trials.append(TrialView(len(trials), dict(config), TrialState.RUNNING, meta=dict(meta)))
    keys = [config_key(t.config) for t in trials]
    assert len(set(keys)) == len(keys)
    assert len(trials) >= 9


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "ExperimentGridSearch"])
def test_contract_finite_space_ends(algorithm):
    spec = make_spec(algorithm, FINITE_SPACE)
    trials, exhausted = run(algorithm, spec, slots=2, budget=60)
    keys = [config_key(t.config) for t in trials]
    assert len(set(keys)) == len(keys)
    assert exhausted
