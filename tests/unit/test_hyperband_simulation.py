"""The simulated-worker benchmark of benchmarks/hyperband.py, on a tiny task with a small resource."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpo_core.algorithms.hyperband import bracket_rungs, hyperband_brackets, rung_resources

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "hyperband.py"
_SPEC = importlib.util.spec_from_file_location("hyperband_benchmark", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = bench
_SPEC.loader.exec_module(bench)

MAX_RESOURCE = 9
ETA = 3.0


class TinyTask:
    """A learning curve without botorch: a quadratic asymptote plus a power law in the resource."""

    def true_loss(self, config: dict[str, Any], resource: float) -> float:
        asymptote = (math.log10(config["lr"]) + 2.5) ** 2 + (config["momentum"] - 0.9) ** 2
        return asymptote + (1.0 + config["dropout"]) * resource ** -0.5

    def observed_loss(self, config: dict[str, Any], resource: float, rng: np.random.Generator) -> float:
        return self.true_loss(config, resource) + 0.01 * float(rng.standard_normal())


def settings(**changes: Any) -> Any:
    values = {"max_resource": MAX_RESOURCE, "eta": ETA, "target": -math.inf, "budget": 60.0 * MAX_RESOURCE}
    values.update(changes)
    return bench.Settings(**values)


@pytest.mark.parametrize("workers", [1, 3, 4])
def test_asha_never_idles_while_proposing(workers):
    result = bench.simulate(TinyTask(), "ASHA", workers, seed=1, settings=settings(budget=12.0 * MAX_RESOURCE))
    assert not result.reached
    assert result.short_suggestions == 0
    assert result.idle_while_proposing == 0.0
    assert result.idle_fraction == pytest.approx(0.0, abs=1e-9)
    assert result.worker_time == pytest.approx(12.0 * MAX_RESOURCE)
    assert max(result.resources) == MAX_RESOURCE


@pytest.mark.parametrize("algorithm", ["Hyperband", "BOHB"])
def test_hyperband_completes_its_brackets(algorithm):
    result = bench.simulate(TinyTask(), algorithm, workers=4, seed=2, settings=settings(iterations=1,
                                                                                       budget=math.inf),
                            keep_trials=True)
    assert result.exhausted
    assert all(not view.pending for view in result.trials_view)

    sizes = Counter((view.meta["bracket"], view.meta["rung"]) for view in result.trials_view)
    for s, rungs in hyperband_brackets(MAX_RESOURCE, ETA):
        expected = rungs[0].size
        for i, rung in enumerate(rungs):
            assert sizes[(s, i)] == expected, f"bracket {s} rung {i}"
            if i + 1 < len(rungs):
                expected = min(rungs[i + 1].size, max(1, math.floor(expected / ETA)))
    assert sum(sizes.values()) == result.trials


def test_hyperband_promotes_best_of_rung():
    result = bench.simulate(TinyTask(), "Hyperband", workers=3, seed=3, settings=settings(iterations=1,
                                                                                         budget=math.inf),
                            keep_trials=True)
    trials = result.trials_view
    for view in trials:
        parent = view.meta.get("parent")
        if parent is None:
            continue
        parent_view = trials[parent]
        assert parent_view.meta["rung"] == view.meta["rung"] - 1
        assert parent_view.meta["bracket"] == view.meta["bracket"]
        siblings = [t for t in trials if t.meta["bracket"] == view.meta["bracket"]
                    and t.meta["rung"] == parent_view.meta["rung"]]
        promoted = sum(1 for t in trials if t.meta.get("parent") is not None
                       and t.meta["bracket"] == view.meta["bracket"] and t.meta["rung"] == view.meta["rung"])
        ranked = [t.id for t in sorted(siblings, key=lambda t: (t.loss, t.id))]
        assert parent in ranked[:promoted], f"trial {view.id} promotes {parent}, not one of {ranked[:promoted]}"


@pytest.mark.parametrize("algorithm", bench.ALGORITHMS)
def test_simulation_resources_are_ints(algorithm):
    result = bench.simulate(TinyTask(), algorithm, workers=4, seed=4, settings=settings(budget=8.0 * MAX_RESOURCE))
    allowed = set(rung_resources(MAX_RESOURCE, ETA)) if algorithm in bench.MULTI_FIDELITY else {MAX_RESOURCE}
    assert result.resources
    assert all(type(resource) is int for resource in result.resources)
    assert set(result.resources) <= allowed


@pytest.mark.parametrize("algorithm", ["ASHA", "Hyperband"])
def test_simulation_passes_pending_trials(algorithm, monkeypatch):
    """Each call requests exactly the free workers and receives every started, unfinished trial as pending."""
    workers = 4
    calls: list[tuple[int, int, int]] = []
    create = bench.create_searcher

    def recording_searcher(spec):
        searcher = create(spec)
        suggest = searcher.suggest

        def wrapped(n, trials):
            calls.append((n, sum(1 for view in trials if view.pending), len(trials)))
            return suggest(n, trials)

        searcher.suggest = wrapped
        return searcher

    monkeypatch.setattr(bench, "create_searcher", recording_searcher)
    result = bench.simulate(TinyTask(), algorithm, workers, seed=5, settings=settings(budget=20.0 * MAX_RESOURCE))
    assert calls
    assert calls[0] == (workers, 0, 0)
    for n, pending, seen in calls:
        assert n >= 1
        assert n + pending == workers
        assert seen <= result.trials


def test_simulation_stops_at_target():
    task = TinyTask()
    best = {"lr": 10 ** -2.5, "momentum": 0.9, "dropout": 0.0}
    # Reachable only near the optimum at the full resource: loss 1/3 there, at least 0.577 at resource 3.
    target = task.true_loss(best, MAX_RESOURCE) + 0.2
    result = bench.simulate(task, "ASHA", workers=2, seed=6, settings=settings(target=target))
    assert result.reached
    assert result.target_resource == MAX_RESOURCE
    assert result.worker_time < 60.0 * MAX_RESOURCE


def test_simulation_resume_charges_extra_resource():
    scratch = bench.simulate(TinyTask(), "Hyperband", workers=2, seed=7,
                             settings=settings(iterations=1, budget=math.inf, time_noise=0.0))
    resumed = bench.simulate(TinyTask(), "Hyperband", workers=2, seed=7,
                             settings=settings(iterations=1, budget=math.inf, time_noise=0.0, resume=True))
    assert scratch.resources == resumed.resources
    planned = sum(rung.size * rung.resource for _, rungs in hyperband_brackets(MAX_RESOURCE, ETA) for rung in rungs)
    assert scratch.worker_time == pytest.approx(planned)
    assert resumed.worker_time < scratch.worker_time


def test_bracket_plan_of_tiny_resource():
    # The plan that the tests above rely on: R = 9 and eta = 3 give three brackets.
    assert [(rung.size, rung.resource) for rung in bracket_rungs(MAX_RESOURCE, ETA, 2)] == [(9, 1), (3, 3), (1, 9)]
    assert [(rung.size, rung.resource) for rung in bracket_rungs(MAX_RESOURCE, ETA, 1)] == [(5, 3), (1, 9)]
    assert [(rung.size, rung.resource) for rung in bracket_rungs(MAX_RESOURCE, ETA, 0)] == [(3, 9)]
