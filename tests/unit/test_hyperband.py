"""Hyperband, ASHA and BOHB: bracket arithmetic, promotion, restarts and budgets, with no Redis."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest

from hpo_core.algorithms import create_searcher
from hpo_core.algorithms.base import Suggestion, TrialView
from hpo_core.algorithms.bohb import BOHBSearcher
from hpo_core.algorithms.hyperband import (ASHASearcher, HyperbandSearcher, bracket_rungs, hyperband_brackets,
                                           max_bracket, round_resource, rung_resources)
from hpo_core.errors import SpecError
from hpo_core.records import Objective, TrialState
from hpo_core.spec import TaskSpec

CONTINUOUS = [{"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -1, "power": "10"},
              {"name": "momentum", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.99}]


def make_spec(algorithm="Hyperband", resource="epochs", value="81", eta=None, hyper_params=None,
              objective="minimize", hyperband_eta=None, extra=None, seed="7") -> TaskSpec:
    params = []
    if resource is not None:
        params.append({"name": "ResourceName", "value": resource})
    if value is not None:
        params.append({"name": "ResourceValue", "value": value})
    if eta is not None:
        params.append({"name": "eta", "value": eta})
    params.append({"name": "RandomSeed", "value": seed})
    for name, text in (extra or {}).items():
        params.append({"name": name, "value": text})
    algo_def = {"algorithm": algorithm, "objectiveMetric": "loss", "objective": objective, "algoParams": params}
    if hyperband_eta is not None:
        algo_def["hyperbandEta"] = hyperband_eta
    return TaskSpec.parse({"modelSpec": {"args": "--model-main train.py"}, "algoDef": algo_def,
                           "hyperParams": hyper_params if hyper_params is not None else CONTINUOUS})


def quality(config) -> float:
    """A smooth objective of the two CONTINUOUS parameters, better with more resource."""
    return (math.log10(config["lr"]) + 2.5) ** 2 + (config["momentum"] - 0.9) ** 2 + 1.0 / config["epochs"]


def add_pending(trials: list[TrialView], suggestion: Suggestion) -> list[TrialView]:
    new = []
    for config, meta in zip(suggestion.configs, suggestion.metas):
        new.append(TrialView(len(trials) + len(new), dict(config), TrialState.RUNNING, meta=dict(meta)))
    trials.extend(new)
    return new


def finish(trials: list[TrialView], view: TrialView, loss: float | None,
           state: TrialState = TrialState.FINISHED) -> None:
    trials[view.id] = dataclasses.replace(view, state=state, loss=loss)


def simulate(make_searcher, slots: int, loss=quality, max_trials: int = 10_000, fail=lambda view: False,
             seed: int = 0, restart_every: int | None = None):
    """Run a searcher against a fake cluster of ``slots`` workers that end trials in random order.

    Returns the trials, the number of suggest calls, and the number of calls that returned fewer configurations
    than free slots.
    """
    rng = random.Random(seed)
    trials: list[TrialView] = []
    searcher = make_searcher()
    calls = short_calls = 0
    while len(trials) < max_trials:
        if restart_every and calls and calls % restart_every == 0:
            state = json.loads(json.dumps(searcher.get_state()))
            searcher = make_searcher()
            if state is not None:
                searcher.set_state(state)
        pending = [t for t in trials if t.pending]
        free = min(slots - len(pending), max_trials - len(trials))
        suggestion = searcher.suggest(free, trials)
        calls += 1
        assert len(suggestion.configs) <= free
        if len(suggestion.configs) < free:
            short_calls += 1
        add_pending(trials, suggestion)
        pending = [t for t in trials if t.pending]
        if suggestion.exhausted or not pending:
            assert suggestion.exhausted, "nothing pending and nothing suggested, yet not exhausted"
            break
        view = rng.choice(pending)
        if fail(view):
            finish(trials, view, None, TrialState.FAILED)
        else:
            finish(trials, view, loss(view.config))
    return trials, calls, short_calls


# --- bracket arithmetic ------------------------------------------------------------------------------------------


def test_brackets_r81_eta3_match_paper():
    plan = {s: [(r.size, r.resource) for r in rungs] for s, rungs in hyperband_brackets(81, 3)}
    assert plan == {
        4: [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        3: [(34, 3), (11, 9), (3, 27), (1, 81)],
        2: [(15, 9), (5, 27), (1, 81)],
        1: [(8, 27), (2, 81)],
        0: [(5, 81)],
    }
    assert sum(size for rungs in plan.values() for size, _ in rungs) == 206


def test_brackets_order_most_aggressive_first():
    assert [s for s, _ in hyperband_brackets(81, 3)] == [4, 3, 2, 1, 0]


def test_brackets_r10_eta3_round_resources():
    plan = {s: [(r.size, r.resource) for r in rungs] for s, rungs in hyperband_brackets(10, 3)}
    # 10 / 9 = 1.11 rounds to 1 and 10 / 3 = 3.33 to 3.
    assert plan == {2: [(9, 1), (3, 3), (1, 10)], 1: [(5, 3), (1, 10)], 0: [(3, 10)]}


@pytest.mark.parametrize("max_resource, eta, expected", [
    (81, 3, 4), (80, 3, 3), (10, 3, 2), (9, 3, 2), (1, 3, 0), (2, 3, 0), (16, 2, 4), (100, 2.5, 5), (243, 3, 5),
])
def test_max_bracket_is_floor_log(max_resource, eta, expected):
    assert max_bracket(max_resource, eta) == expected


def test_brackets_r16_eta2():
    assert [(r.size, r.resource) for r in bracket_rungs(16, 2, 4)] == [(16, 1), (8, 2), (4, 4), (2, 8), (1, 16)]
    assert [(r.size, r.resource) for r in bracket_rungs(16, 2, 2)] == [(7, 4), (3, 8), (1, 16)]


def test_brackets_non_integer_eta_never_empty():
    for s, rungs in hyperband_brackets(100, 2.5):
        assert len(rungs) == s + 1
        assert all(rung.size >= 1 for rung in rungs)
        assert rungs[-1].resource == 100
        assert [r.resource for r in rungs] == sorted({r.resource for r in rungs})


def test_round_resource_half_up_minimum_one():
    assert round_resource(0.2) == 1
    assert round_resource(1.5) == 2
    assert round_resource(2.5) == 3
    assert round_resource(3.33) == 3
    assert rung_resources(10, 3) == [1, 3, 10]


def test_bracket_rungs_rejects_unknown_bracket():
    with pytest.raises(ValueError, match="outside 0..4"):
        bracket_rungs(81, 3, 5)


# --- algoParams ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["Hyperband", "ASHA", "BOHB"])
@pytest.mark.parametrize("kwargs, field, message", [
    ({"resource": None}, "ResourceName", "is missing"),
    ({"value": None}, "ResourceValue", "is missing"),
    ({"value": "0"}, "ResourceValue", "at least 1"),
    ({"value": "-3"}, "ResourceValue", "at least 1"),
    ({"value": "8.5"}, "ResourceValue", "integer"),
    ({"value": "many"}, "ResourceValue", "must be a number"),
    ({"eta": "1"}, "eta", "greater than 1"),
    ({"eta": "0.5"}, "eta", "greater than 1"),
    ({"eta": "three"}, "eta", "must be a number"),
    ({"resource": "lr"}, "ResourceName", "also a hyperParams name"),
    ({"eta": "1.2", "value": "3"}, "eta", "two rungs"),
    ({"eta": "2", "hyperband_eta": 3}, "eta", "contradicts"),
])
def test_resource_params_rejected(algorithm, kwargs, field, message):
    with pytest.raises(SpecError, match=message) as info:
        create_searcher(make_spec(algorithm, **kwargs))
    assert info.value.field == f"algoDef.algoParams.{field}"


def test_eta_from_hyperband_eta():
    searcher = HyperbandSearcher(make_spec(value="16", hyperband_eta=2))
    assert searcher.resource.eta == 2
    assert searcher.brackets[0][1][0] == bracket_rungs(16, 2, 4)[0]


def test_eta_default_three():
    assert HyperbandSearcher(make_spec()).resource.eta == 3


@pytest.mark.parametrize("params, message", [
    ({"eta": "three"}, 'algoDef.algoParams.eta: must be a number (got \'three\'). Fix: write e.g. '
                       '{"name": "eta", "value": "3"}'),
    ({"Iterations": "0"}, 'algoDef.algoParams.Iterations: must be at least 1 (got \'0\'). Fix: give a whole number '
                          '>= 1, e.g. {"name": "Iterations", "value": "1"}'),
    ({"Iterations": "1.5"}, 'algoDef.algoParams.Iterations: must be an integer (got \'1.5\'). Fix: give a whole '
                            'number >= 1, e.g. {"name": "Iterations", "value": "1"}'),
])
def test_number_param_error_shows_entry(params, message):
    with pytest.raises(SpecError) as info:
        HyperbandSearcher(make_spec(extra=params))
    assert str(info.value) == message


def test_iterations_rejects_zero():
    with pytest.raises(SpecError, match="Iterations"):
        HyperbandSearcher(make_spec(extra={"Iterations": "0"}))


# --- Hyperband -----------------------------------------------------------------------------------------------------


def test_hyperband_first_rung_resource_int():
    suggestion = HyperbandSearcher(make_spec()).suggest(100, [])
    assert len(suggestion.configs) == 81
    for config, meta in zip(suggestion.configs, suggestion.metas):
        assert set(config) == {"lr", "momentum", "epochs"}
        assert type(config["epochs"]) is int
        assert config["epochs"] == 1
        assert meta == {"iteration": 0, "bracket": 4, "rung": 0}
    assert not suggestion.exhausted


def test_hyperband_waits_for_rung_to_end():
    searcher = HyperbandSearcher(make_spec())
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(100, trials))
    for view in list(trials)[:80]:
        finish(trials, view, quality(view.config))
    suggestion = searcher.suggest(10, trials)
    assert suggestion.configs == []
    assert not suggestion.exhausted


@pytest.mark.parametrize("objective", [Objective.MINIMIZE, Objective.MAXIMIZE])
def test_hyperband_promotes_best_by_objective(objective):
    searcher = HyperbandSearcher(make_spec(objective=objective.value))
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(81, trials))
    metric = {view.id: random.Random(view.id).uniform(0, 1) for view in trials}
    for view in list(trials):
        finish(trials, view, objective.to_loss(metric[view.id]))

    suggestion = searcher.suggest(100, trials)
    assert len(suggestion.configs) == 27
    parents = [meta["parent"] for meta in suggestion.metas]
    ranked = sorted(metric, key=metric.get, reverse=objective is Objective.MAXIMIZE)
    assert parents == ranked[:27]
    for config, meta in zip(suggestion.configs, suggestion.metas):
        parent = trials[meta["parent"]]
        assert meta == {"iteration": 0, "bracket": 4, "rung": 1, "parent": parent.id}
        assert config == {**parent.config, "epochs": 3}


def test_hyperband_never_promotes_failed():
    searcher = HyperbandSearcher(make_spec())
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(81, trials))
    for view in list(trials):
        if view.id < 70:
            finish(trials, view, None, TrialState.FAILED)
        else:
            finish(trials, view, float(view.id))
    suggestion = searcher.suggest(100, trials)
    # Eleven trials have a result; the rung keeps 27, so all eleven go on and no failed trial does.
    assert sorted(meta["parent"] for meta in suggestion.metas) == list(range(70, 81))


def test_hyperband_all_failed_rung_ends_bracket():
    searcher = HyperbandSearcher(make_spec())
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(81, trials))
    for view in list(trials):
        finish(trials, view, None, TrialState.FAILED)
    suggestion = searcher.suggest(5, trials)
    assert [meta["bracket"] for meta in suggestion.metas] == [3] * 5
    assert [config["epochs"] for config in suggestion.configs] == [3] * 5


def test_hyperband_full_run_r10_matches_plan():
    trials, _, _ = simulate(lambda: HyperbandSearcher(make_spec(value="10")), slots=3)
    assert len(trials) == 22
    counts: dict[tuple, int] = {}
    for view in trials:
        key = (view.meta["bracket"], view.meta["rung"], view.config["epochs"])
        counts[key] = counts.get(key, 0) + 1
    assert counts == {(2, 0, 1): 9, (2, 1, 3): 3, (2, 2, 10): 1, (1, 0, 3): 5, (1, 1, 10): 1, (0, 0, 10): 3}
    for view in trials:
        if view.meta["rung"] > 0:
            parent = trials[view.meta["parent"]]
            assert parent.meta["rung"] == view.meta["rung"] - 1
            assert {k: v for k, v in parent.config.items() if k != "epochs"} == \
                {k: v for k, v in view.config.items() if k != "epochs"}


def test_hyperband_full_run_r81_counts_206():
    trials, _, _ = simulate(lambda: HyperbandSearcher(make_spec()), slots=8)
    assert len(trials) == 206
    keys = [(tuple(sorted(view.config.items()))) for view in trials]
    assert len(set(keys)) == len(keys)


def test_hyperband_iterations_repeat_brackets():
    trials, _, _ = simulate(lambda: HyperbandSearcher(make_spec(value="10", extra={"Iterations": "2"})), slots=2)
    assert len(trials) == 44
    assert {view.meta["iteration"] for view in trials} == {0, 1}


def test_hyperband_exhausted_after_last_bracket():
    searcher = HyperbandSearcher(make_spec(value="10"))
    trials, _, _ = simulate(lambda: searcher, slots=2)
    final = searcher.suggest(4, trials)
    assert final.configs == []
    assert final.exhausted


def test_hyperband_restart_mid_bracket_same_suggestions():
    spec = make_spec()
    searcher = HyperbandSearcher(spec)
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(81, trials))
    for view in list(trials):
        finish(trials, view, quality(view.config))
    add_pending(trials, searcher.suggest(10, trials))  # 10 of the 27 promotions of rung 1

    restarted = HyperbandSearcher(spec)
    state = searcher.get_state()
    if state is not None:
        restarted.set_state(json.loads(json.dumps(state)))
    expected = searcher.suggest(30, trials)
    got = restarted.suggest(30, trials)
    assert got.configs == expected.configs
    assert got.metas == expected.metas
    assert len(got.configs) == 17
    assert not {meta["parent"] for meta in got.metas} & {t.meta.get("parent") for t in trials}


def test_hyperband_restarts_change_nothing():
    make = lambda: HyperbandSearcher(make_spec(value="27"))  # noqa: E731
    straight, _, _ = simulate(make, slots=4, seed=3)
    restarted, _, _ = simulate(make, slots=4, seed=3, restart_every=3)
    assert [(t.config, t.meta) for t in restarted] == [(t.config, t.meta) for t in straight]


def test_hyperband_finite_space_cuts_first_rung():
    space = [{"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam", "rmsprop"]}]
    make = lambda: HyperbandSearcher(make_spec(value="9", hyper_params=space))  # noqa: E731
    trials, _, _ = simulate(make, slots=2, loss=lambda config: len(config["opt"]) / config["epochs"])
    keys = [(view.config["opt"], view.config["epochs"]) for view in trials]
    assert len(set(keys)) == len(keys)
    first_rung = [view for view in trials if view.meta["bracket"] == 2 and view.meta["rung"] == 0]
    assert len(first_rung) == 3
    restarted, _, _ = simulate(make, slots=2, loss=lambda config: len(config["opt"]) / config["epochs"],
                               restart_every=2)
    assert [(t.config, t.meta) for t in restarted] == [(t.config, t.meta) for t in trials]


# --- ASHA ----------------------------------------------------------------------------------------------------------


def test_asha_rung_resources():
    searcher = ASHASearcher(make_spec("ASHA"))
    assert searcher.resources == [1, 3, 9, 27, 81]


def test_asha_never_idles_while_budget_remains():
    trials, calls, short_calls = simulate(lambda: ASHASearcher(make_spec("ASHA")), slots=4, max_trials=300)
    assert len(trials) == 300
    assert short_calls == 0
    rungs = {view.meta["rung"] for view in trials}
    assert rungs == {0, 1, 2, 3, 4}
    for view in trials:
        assert type(view.config["epochs"]) is int
        assert view.config["epochs"] == [1, 3, 9, 27, 81][view.meta["rung"]]


def test_asha_promotes_only_top_third_of_ended():
    searcher = ASHASearcher(make_spec("ASHA"))
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(6, trials))
    for view, loss in zip(list(trials), [5.0, 1.0, 3.0, 2.0, 4.0, 0.5]):
        finish(trials, view, loss)
    suggestion = searcher.suggest(3, trials)
    # Six ended trials: the top two (losses 0.5 and 1.0) go up, then a new configuration fills the third slot.
    assert suggestion.metas == [{"rung": 1, "parent": 5}, {"rung": 1, "parent": 1}, {"rung": 0}]
    assert [config["epochs"] for config in suggestion.configs] == [3, 3, 1]


def test_asha_failed_count_but_never_promote():
    searcher = ASHASearcher(make_spec("ASHA"))
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(3, trials))
    finish(trials, trials[0], None, TrialState.FAILED)
    finish(trials, trials[1], 2.0)
    finish(trials, trials[2], 1.0)
    suggestion = searcher.suggest(1, trials)
    assert suggestion.metas == [{"rung": 1, "parent": 2}]


def test_asha_finite_space_exhausts():
    space = [{"name": "units", "type": "Discrete", "dataType": "INT", "discreteIntVal": [16, 32, 64]}]
    trials, _, _ = simulate(lambda: ASHASearcher(make_spec("ASHA", value="9", hyper_params=space)), slots=2,
                            loss=lambda config: abs(config["units"] - 32) / config["epochs"])
    keys = [(view.config["units"], view.config["epochs"]) for view in trials]
    assert len(set(keys)) == len(keys)
    assert {key for key in keys if key[0] == 32} == {(32, 1), (32, 3)}


def test_asha_restart_same_suggestions():
    make = lambda: ASHASearcher(make_spec("ASHA"))  # noqa: E731
    straight, _, _ = simulate(make, slots=3, max_trials=60, seed=5)
    restarted, _, _ = simulate(make, slots=3, max_trials=60, seed=5, restart_every=2)
    assert [(t.config, t.meta) for t in restarted] == [(t.config, t.meta) for t in straight]


# --- BOHB ----------------------------------------------------------------------------------------------------------


def test_bohb_runs_full_iteration():
    make = lambda: BOHBSearcher(make_spec("BOHB", value="27"))  # noqa: E731
    trials, _, _ = simulate(make, slots=4)
    assert len(trials) == 69
    keys = [tuple(sorted(view.config.items())) for view in trials]
    assert len(set(keys)) == len(keys)
    restarted, _, _ = simulate(make, slots=4, restart_every=4)
    assert [(t.config, t.meta) for t in restarted] == [(t.config, t.meta) for t in trials]


def test_bohb_model_after_enough_results():
    searcher = BOHBSearcher(make_spec("BOHB", value="27"))
    trials: list[TrialView] = []
    add_pending(trials, searcher.suggest(27, trials))
    assert searcher._fit(trials) is None
    for view in list(trials):
        finish(trials, view, quality(view.config))
    assert searcher._fit(trials) is not None


def test_bohb_model_proposals_near_good_region():
    # With RandomFraction 0 every new configuration of the second bracket comes from the model, which was fitted
    # on the first bracket's results; they should sit closer to the optimum (lr = 10**-2.5) than random draws.
    model_error, random_error = [], []
    for seed in range(4):
        searcher = BOHBSearcher(make_spec("BOHB", value="27", extra={"RandomFraction": "0"}, seed=str(seed)))
        trials: list[TrialView] = []
        while True:
            suggestion = searcher.suggest(30, trials)
            if suggestion.metas and suggestion.metas[0]["bracket"] == 2:
                break
            for view in add_pending(trials, suggestion):
                finish(trials, view, quality(view.config))
        model_error += [abs(math.log10(config["lr"]) + 2.5) for config in suggestion.configs]
        random_error += [abs(math.log10(view.config["lr"]) + 2.5) for view in trials if view.meta["rung"] == 0]
    assert sum(model_error) / len(model_error) < 0.5 * sum(random_error) / len(random_error)


def test_bohb_proposals_independent_of_workers():
    # Each bracket's model is fitted only on the brackets before it, which have ended by the time it draws, so
    # the number of workers cannot change which configurations BOHB proposes.
    make = lambda: BOHBSearcher(make_spec("BOHB", value="27", extra={"Iterations": "2"}))  # noqa: E731
    one_worker, _, _ = simulate(make, slots=1)
    seven_workers, _, _ = simulate(make, slots=7)
    assert len(one_worker) == 138
    assert [(t.config, t.meta) for t in seven_workers] == [(t.config, t.meta) for t in one_worker]


def test_bohb_bracket_ignores_own_results():
    # The first bracket's first rung has 27 configurations. After 20 of them end, the model must not use their
    # results to draw the other 7, whatever those results are.
    proposals = []
    for sign in (1, -1):
        searcher = BOHBSearcher(make_spec("BOHB", value="27", extra={"RandomFraction": "0"}))
        trials: list[TrialView] = []
        for view in add_pending(trials, searcher.suggest(20, trials)):
            finish(trials, view, sign * quality(view.config))
        proposals.append(searcher.suggest(7, trials).configs)
    assert len(proposals[0]) == 7
    assert proposals[0] == proposals[1]


def test_bohb_fits_largest_qualifying_resource():
    # Two hyperparameters give MinPointsInModel 3, so a resource qualifies with 3 good and 3 bad results.
    searcher = BOHBSearcher(make_spec("BOHB", value="27"))
    rng = random.Random(3)
    trials: list[TrialView] = []
    for epochs, count in ((1, 20), (3, 8), (9, 5)):
        for _ in range(count):
            config = {"lr": 10 ** rng.uniform(-4, -1), "momentum": rng.uniform(0.0, 0.99), "epochs": epochs}
            trials.append(TrialView(len(trials), config, TrialState.FINISHED, loss=quality(config)))
    trials.append(TrialView(len(trials), {"lr": 1e-3, "momentum": 0.9, "epochs": 27}, TrialState.RUNNING))

    good, bad = searcher._fit(trials)

    at_three = sorted((view for view in trials if view.config["epochs"] == 3), key=lambda view: view.loss)
    expected_good = []
    for view in at_three[:3]:
        expected_good += [(math.log10(view.config["lr"]) + 4) / 3, view.config["momentum"] / 0.99]
    assert len(good.points) == 3
    assert len(bad.points) == 5
    assert good.points.ravel().tolist() == pytest.approx(expected_good)


def test_bohb_converts_each_trial_once(monkeypatch):
    import hpo_core.algorithms.bohb as bohb_module

    converted = []
    original = bohb_module._to_unit

    def counting_to_unit(space, config):
        converted.append(config)
        return original(space, config)

    monkeypatch.setattr(bohb_module, "_to_unit", counting_to_unit)
    searcher = BOHBSearcher(make_spec("BOHB", value="27"))
    trials: list[TrialView] = []
    for view in add_pending(trials, searcher.suggest(12, trials)):
        finish(trials, view, quality(view.config))

    first = searcher._fit(trials)
    second = searcher._fit(trials)
    assert len(converted) == 12
    assert second is first

    for view in add_pending(trials, searcher.suggest(1, trials)):
        finish(trials, view, quality(view.config))
    assert searcher._fit(trials) is not first
    assert len(converted) == 13


def test_bohb_rejects_bad_params():
    with pytest.raises(SpecError, match="RandomFraction"):
        BOHBSearcher(make_spec("BOHB", extra={"RandomFraction": "1.5"}))
    with pytest.raises(SpecError, match="TopNPercent"):
        BOHBSearcher(make_spec("BOHB", extra={"TopNPercent": "0"}))
    with pytest.raises(SpecError, match="NumSamples"):
        BOHBSearcher(make_spec("BOHB", extra={"NumSamples": "0"}))


def test_bohb_discrete_and_grid_params():
    space = [{"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam", "rmsprop"]},
             {"name": "units", "type": "Range", "dataType": "INT", "minIntVal": 8, "maxIntVal": 64, "step": "8"},
             {"name": "dropout", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.5}]

    def loss(config):
        return (config["opt"] != "adam") + abs(config["units"] - 32) / 32 + config["dropout"] + 1 / config["epochs"]

    trials, _, _ = simulate(lambda: BOHBSearcher(make_spec("BOHB", value="27", hyper_params=space)), slots=3,
                            loss=loss)
    assert len(trials) == 69
    spec = make_spec("BOHB", value="27", hyper_params=space)
    for view in trials:
        config = {k: v for k, v in view.config.items() if k != "epochs"}
        assert spec.space.check_config(config, "config") == config
