"""The Digits objective of benchmarks/search_quality.py and the way each library receives its mixed space."""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hpo_core.space import SearchSpace

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "search_quality.py"
_SPEC = importlib.util.spec_from_file_location("search_quality_benchmark", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = bench
_SPEC.loader.exec_module(bench)

CONFIG = {"lr": 0.01, "hidden": 48, "weight_decay": 1e-4, "batch_size": 128, "dropout": 0.1, "optimizer": "adam"}


@dataclass
class RecordingProblem:
    """The Digits space with a cheap value, recording every configuration a searcher sends."""

    name: str = "Recording"
    optimum: float | None = None
    configs: list[dict[str, Any]] = field(default_factory=list)

    def hyper_params(self) -> list[dict[str, Any]]:
        return bench.Digits().hyper_params()

    def evaluate(self, config: dict[str, Any]) -> float:
        self.configs.append(dict(config))
        return (math.log10(config["lr"]) + 2.0) ** 2 + config["dropout"] + (config["optimizer"] == "sgd")


def test_digits_loss_deterministic_and_in_range():
    first = bench.Digits().evaluate(CONFIG)
    second = bench.Digits().evaluate(dict(CONFIG))
    assert first == second
    assert math.isfinite(first)
    assert 0.0 < first < bench.DIGITS_WORST_LOSS


def test_digits_loss_leaves_global_torch_rng_alone():
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    bench.Digits().evaluate(CONFIG)
    assert torch.equal(torch.rand(3), expected)


def test_digits_diverged_training_capped():
    config = dict(CONFIG, lr=1e4, optimizer="sgd")
    assert bench.Digits().evaluate(config) == bench.DIGITS_WORST_LOSS


def test_digits_space_has_mixed_kinds():
    space = SearchSpace.from_wmla(bench.Digits().hyper_params())
    kinds = {param.name: (param.data_type.value, param.param_type.value, param.power) for param in space}
    assert kinds["lr"] == ("double", "range", 10.0)
    assert kinds["hidden"] == ("int", "range", None)
    assert kinds["batch_size"] == ("int", "discrete", None)
    assert kinds["optimizer"] == ("str", "discrete", None)


def test_run_one_digits_records_best_value():
    run = bench.run_one(("Random", "Digits", 0, 3))
    assert "regret" not in run
    assert len(run["best"]) == 3
    assert run["best"] == sorted(run["best"], reverse=True)
    assert bench.curve_kind(run) == "best"


@pytest.mark.parametrize("method", ["optuna-TPE", "hyperopt-TPE", "TPE"])
def test_library_configs_stay_in_space(method):
    problem = RecordingProblem()
    # Past the start-up trials of each library (Optuna 10, hyperopt 20, openhpo's Tpe 10), so the model proposes too.
    budget = 24
    if method == "optuna-TPE":
        bench.run_optuna(problem, method, budget, seed=0)
    elif method == "hyperopt-TPE":
        bench.run_hyperopt(problem, budget, seed=0)
    else:
        bench.run_openhpo(problem, "Tpe", 1, budget, seed=0)
    space = SearchSpace.from_wmla(problem.hyper_params())
    assert len(problem.configs) == budget
    for config in problem.configs:
        assert sorted(config) == sorted(space.names)
        for param in space:
            param.encode(config[param.name])  # raises ValueError for a value outside the space
        assert type(config["hidden"]) is int
        assert type(config["batch_size"]) is int
        assert isinstance(config["optimizer"], str)


def _run(method: str, seed: int, values: list[float]) -> dict[str, Any]:
    return {"method": method, "function": "Branin", "seed": seed, "seconds": 0.0, "regret": values}


def test_paired_table_ratio_interval_and_share():
    # On every seed TPE's regret is half of Optuna's, so every resample gives the ratio 0.5.
    runs = [_run("TPE", seed, [1.0 + seed, 0.5 + seed]) for seed in range(10)]
    runs += [_run("optuna-TPE", seed, [2.0 + 2 * seed, 1.0 + 2 * seed]) for seed in range(10)]
    # A seed that only one method has is left out of the pairs.
    runs.append(_run("TPE", 99, [100.0, 100.0]))

    table = bench.paired_table(runs, "TPE", "optuna-TPE", ["Branin"], [2])
    row = table.splitlines()[-1]

    assert row == "| Branin | 2 | 10 | 0.50 | [0.50, 0.50] | 100% |"


def test_paired_table_counts_ties_as_not_better():
    runs = [_run("TPE", seed, [1.0]) for seed in range(4)] + [_run("Random", seed, [1.0]) for seed in range(4)]

    row = bench.paired_table(runs, "TPE", "Random", ["Branin"], [1]).splitlines()[-1]

    assert row.endswith("| 1.00 | [1.00, 1.00] | 0% |")
