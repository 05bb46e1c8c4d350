"""Unit tests for the Gaussian-process Bayesian searcher, with no Redis.

Each model-based proposal fits a GP, which takes a fraction of a second, so the searches here are short.
"""

from __future__ import annotations

import itertools
import logging
import math
import random

import numpy as np
import pytest

pytest.importorskip("botorch")

from hpo_core.algorithms import BayesianSearcher, create_searcher  # noqa: E402
from hpo_core.algorithms import bayesian  # noqa: E402
from hpo_core.algorithms.base import TrialView  # noqa: E402
from hpo_core.errors import SpecError  # noqa: E402
from hpo_core.records import TrialState  # noqa: E402
from hpo_core.spec import TaskSpec  # noqa: E402

#: Every parameter kind: continuous, log scale, INT range, step grid, INT list and STR list.
MIXED = [
    {"name": "momentum", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.5, "maxDbVal": 0.99},
    {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -1, "power": "10"},
    {"name": "epochs", "type": "Range", "dataType": "INT", "minIntVal": 1, "maxIntVal": 40},
    {"name": "dropout", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.5, "step": "0.1"},
    {"name": "batch", "type": "Discrete", "dataType": "INT", "discreteIntVal": [16, 32, 64]},
    {"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam", "rmsprop"]},
]
SQUARE = [{"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": -1, "maxDbVal": 1},
          {"name": "y", "type": "Range", "dataType": "DOUBLE", "minDbVal": -1, "maxDbVal": 1}]
LINE = [{"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0, "maxDbVal": 100}]


def make_spec(hyper_params: list[dict], max_jobs: int = -1, **algo_params: str) -> TaskSpec:
    return TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": "Bayesian", "objectiveMetric": "loss", "objective": "minimize",
                    "maxJobNum": max_jobs,
                    "algoParams": [{"name": name, "value": value} for name, value in algo_params.items()]},
        "hyperParams": hyper_params,
    })


def make_searcher(hyper_params: list[dict], **algo_params: str) -> BayesianSearcher:
    searcher = create_searcher(make_spec(hyper_params, **algo_params))
    assert isinstance(searcher, BayesianSearcher)
    return searcher


def mixed_loss(config: dict) -> float:
    penalty = {"sgd": 0.3, "adam": 0.0, "rmsprop": 0.1}[config["opt"]]
    return ((math.log10(config["lr"]) + 2.5) ** 2 + (config["momentum"] - 0.9) ** 2 + (config["epochs"] - 25) ** 2
            / 400 + config["dropout"] + abs(config["batch"] - 32) / 64 + penalty)


def quadratic(config: dict) -> float:
    return (config["x"] - 0.3) ** 2 + (config["y"] + 0.2) ** 2


def finished(configs: list[dict], loss) -> list[TrialView]:
    return [TrialView(i, config, TrialState.FINISHED, loss(config)) for i, config in enumerate(configs)]


# --- algoParams -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("InitPoints", "0"), ("InitPoints", "abc"), ("InitPoints", "2.5"),
    ("CubeSize", "0"), ("CubeSize", "ten"), ("Noiseless", "maybe"), ("Noiseless", "1"),
])
def test_bayesian_rejects_invalid_algo_param(name, value):
    with pytest.raises(SpecError) as caught:
        make_searcher(SQUARE, **{name: value})

    assert caught.value.field == f"algoDef.algoParams.{name}"


def test_bayesian_cube_size_below_max_job_num_rejected():
    with pytest.raises(SpecError) as caught:
        create_searcher(make_spec(SQUARE, max_jobs=50, CubeSize="49"))

    assert caught.value.field == "algoDef.algoParams.CubeSize"


def test_bayesian_defaults_follow_max_job_num():
    searcher = create_searcher(make_spec(SQUARE, max_jobs=8))

    assert searcher.init_points == 8
    assert searcher.cube_size == 800
    assert searcher.raw_samples == 800
    assert searcher.noiseless is True


def test_bayesian_unlimited_jobs_raise_small_cube_size():
    default = make_searcher(SQUARE)
    small = make_searcher(SQUARE, CubeSize="500")
    large = make_searcher(SQUARE, CubeSize="20000", Noiseless="FALSE", InitPoints="3")

    assert default.cube_size == 10_000
    assert small.cube_size == 10_000
    assert large.cube_size == 20_000
    assert large.raw_samples == bayesian.MAX_RAW_SAMPLES
    assert large.noiseless is False
    assert large.init_points == 3


def test_bayesian_keeps_no_state():
    searcher = make_searcher(SQUARE, RandomSeed="1", InitPoints="3")
    trials = finished([{"x": 0.1 * i, "y": -0.1 * i} for i in range(4)], quadratic)
    searcher.suggest(1, trials)

    assert searcher.get_state() is None


# --- proposals ----------------------------------------------------------------------------------------------------

def test_bayesian_mixed_types_in_domain():
    searcher = make_searcher(MIXED, RandomSeed="3", InitPoints="4")
    space = searcher.space
    trials: list[TrialView] = []
    for i in range(6):
        config = searcher.suggest(1, trials).configs[0]
        trials.append(TrialView(i, config, TrialState.FINISHED, mixed_loss(config)))

    for trial in trials:
        config = trial.config
        assert space.check_config(config, "config") == config
        assert type(config["momentum"]) is float
        assert type(config["lr"]) is float
        assert 1e-4 <= config["lr"] <= 0.1
        assert type(config["epochs"]) is int
        assert type(config["dropout"]) is float
        assert round(config["dropout"] * 10, 9).is_integer()
        assert config["batch"] in (16, 32, 64)
        assert type(config["batch"]) is int
        assert config["opt"] in ("sgd", "adam", "rmsprop")


def test_bayesian_batch_with_pending_distinct():
    searcher = make_searcher(SQUARE, RandomSeed="5", InitPoints="4")
    configs = [{"x": x, "y": y} for x, y in itertools.product((-0.5, 0.0, 0.5), (-0.5, 0.5))]
    trials = finished(configs, quadratic)
    # Two trials near the optimum are still running, so the batch must not pile onto them.
    trials += [TrialView(6, {"x": 0.3, "y": -0.2}, TrialState.RUNNING),
               TrialView(7, {"x": 0.32, "y": -0.18}, TrialState.QUEUED)]
    suggestion = searcher.suggest(4, trials)

    points = [(c["x"], c["y"]) for c in suggestion.configs]
    assert len(points) == 4
    assert len(set(points)) == 4
    taken = {(t.config["x"], t.config["y"]) for t in trials}
    assert not taken & set(points)
    closest = min(math.dist(a, b) for a, b in itertools.combinations(points + [(0.3, -0.2)], 2))
    assert closest > 0.01


def test_bayesian_batch_first_matches_single():
    # The first proposal of a batch maximises the same acquisition as a single proposal; later ones are
    # conditioned on it.
    trials = finished([{"x": x, "y": y} for x, y in itertools.product((-0.5, 0.5), (-0.5, 0.0, 0.5))], quadratic)
    single = make_searcher(SQUARE, RandomSeed="2", InitPoints="4").suggest(1, trials).configs
    batch = make_searcher(SQUARE, RandomSeed="2", InitPoints="4").suggest(4, trials).configs

    assert len(batch) == 4
    assert math.dist((single[0]["x"], single[0]["y"]), (batch[0]["x"], batch[0]["y"])) < 0.05


@pytest.mark.parametrize("case", ["failed", "nan-loss", "finished-control"])
def test_bayesian_failed_trials_not_good(case):
    # Loss x / 100 on [0, 100], measured at x = 40 .. 90. Six more trials sit at x = 2 .. 12. When they failed or
    # reported NaN, they count as the worst loss, so the model expects high loss near 0 and proposes above 20. In
    # the control they finished with loss 0.0, which pulls the proposal below 20.
    trials = [TrialView(i, {"x": 40.0 + 10 * i}, TrialState.FINISHED, (40.0 + 10 * i) / 100) for i in range(6)]
    for k in range(6):
        x = 2.0 + 2 * k
        if case == "failed":
            trials.append(TrialView(6 + k, {"x": x}, TrialState.FAILED))
        elif case == "nan-loss":
            trials.append(TrialView(6 + k, {"x": x}, TrialState.FINISHED, float("nan")))
        else:
            trials.append(TrialView(6 + k, {"x": x}, TrialState.FINISHED, 0.0))
    proposal = make_searcher(LINE, RandomSeed="4", InitPoints="3").suggest(1, trials).configs[0]["x"]

    if case == "finished-control":
        assert proposal < 20
    else:
        assert proposal > 20


def test_bayesian_noisy_mode_proposes():
    searcher = make_searcher(SQUARE, RandomSeed="6", InitPoints="4", Noiseless="false")
    trials = finished([{"x": x, "y": y} for x, y in itertools.product((-0.6, 0.0, 0.6), (-0.6, 0.6))], quadratic)
    suggestion = searcher.suggest(2, trials)

    assert len(suggestion.configs) == 2
    for config in suggestion.configs:
        assert searcher.space.check_config(config, "config") == config


def test_bayesian_finds_quadratic_optimum():
    searcher = make_searcher(SQUARE, RandomSeed="0", InitPoints="6")
    trials: list[TrialView] = []
    for i in range(30):
        config = searcher.suggest(1, trials).configs[0]
        trials.append(TrialView(i, config, TrialState.FINISHED, quadratic(config)))
    random_trials = finished([create_searcher(make_spec(SQUARE)).space.sample(random.Random(k)) for k in range(30)],
                             quadratic)

    best = min(t.loss for t in trials)
    assert best < 1e-3
    assert best < min(t.loss for t in random_trials) / 10


def test_bayesian_same_seed_same_proposals():
    trials = finished([{"x": x, "y": y} for x, y in itertools.product((-0.5, 0.5), (-0.5, 0.0, 0.5))], quadratic)
    first = make_searcher(SQUARE, RandomSeed="9", InitPoints="4").suggest(2, trials).configs
    second = make_searcher(SQUARE, RandomSeed="9", InitPoints="4").suggest(2, trials).configs

    assert first == second


def test_bayesian_init_points_random_then_model(monkeypatch):
    calls = []
    original = bayesian._optimise

    def spy(*args, **kwargs):
        calls.append(args[4])  # q, the number of model proposals
        return original(*args, **kwargs)

    monkeypatch.setattr(bayesian, "_optimise", spy)
    searcher = make_searcher(SQUARE, RandomSeed="1", InitPoints="5")
    trials = finished([{"x": 0.1 * i, "y": 0.0} for i in range(3)], quadratic)
    suggestion = searcher.suggest(4, trials)

    # Trials 3 and 4 complete the five random ones; the model proposes the other two.
    assert len(suggestion.configs) == 4
    assert calls == [2]


def test_bayesian_model_failure_falls_back(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("cholesky failed")

    monkeypatch.setattr(bayesian, "_optimise", broken)
    searcher = make_searcher(SQUARE, RandomSeed="1", InitPoints="2")
    trials = finished([{"x": 0.1 * i, "y": 0.0} for i in range(4)], quadratic)
    with caplog.at_level(logging.WARNING, logger="hpo_core.algorithms.bayesian"):
        suggestion = searcher.suggest(2, trials)

    assert len(suggestion.configs) == 2
    assert "cholesky failed" in caplog.text


def test_bayesian_finite_space_exhausted():
    space = [{"name": "n", "type": "Discrete", "dataType": "INT", "discreteIntVal": [1, 2, 3]},
             {"name": "act", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["relu", "tanh"]},
             {"name": "fixed", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["only"]}]
    searcher = make_searcher(space, RandomSeed="2", InitPoints="2")
    trials: list[TrialView] = []
    for _ in range(10):
        suggestion = searcher.suggest(2, trials)
        for config in suggestion.configs:
            loss = config["n"] + (config["act"] == "tanh")
            trials.append(TrialView(len(trials), config, TrialState.FINISHED, float(loss)))
        if suggestion.exhausted:
            break

    keys = {(t.config["n"], t.config["act"]) for t in trials}
    assert len(trials) == 6
    assert len(keys) == 6
    assert suggestion.exhausted


def test_fit_subset_keeps_best_and_newest():
    xs = [[float(i)] for i in range(10)]
    losses = [5.0, 0.0, 6.0, 1.0, 7.0, 8.0, 9.0, 2.0, 10.0, 11.0]
    kept_x, kept_losses = bayesian._fit_subset(xs, losses, 6)

    # The three best are trials 1, 3 and 7; the three newest of the rest are 6, 8 and 9.
    assert [x[0] for x in kept_x] == [1.0, 3.0, 6.0, 7.0, 8.0, 9.0]
    assert kept_losses == [0.0, 1.0, 9.0, 2.0, 10.0, 11.0]


def test_warp_losses_keeps_order_and_tames_outliers():
    # Rosenbrock-like losses: most near the valley, a few orders of magnitude above.
    losses = [3.0, 1.5, 80.0, 2.2, 40000.0, 0.7, 900.0, 5.5, 1.1, 250000.0]
    warped = np.asarray(bayesian.warp_losses(losses))

    assert np.all(np.isfinite(warped))
    assert list(np.argsort(warped, kind="stable")) == list(np.argsort(losses, kind="stable"))
    # On the raw scale the eight smaller losses fill less than 1% of the range. After the warp they spread over
    # a good part of it, so the model can tell them apart.
    small = np.sort(warped)[:8]
    raw_small = np.sort(losses)[:8]
    assert (small[-1] - small[0]) / np.ptp(warped) > 0.3
    assert (raw_small[-1] - raw_small[0]) / np.ptp(losses) < 0.01


def test_warp_losses_leaves_symmetric_losses_nearly_linear():
    rng = np.random.default_rng(0)
    losses = rng.normal(size=50).tolist()
    warped = np.asarray(bayesian.warp_losses(losses))
    standardised = (np.asarray(losses) - np.mean(losses)) / np.std(losses)

    assert np.corrcoef(warped, standardised)[0, 1] > 0.99


@pytest.mark.parametrize("losses", [[2.0, 2.0, 2.0], [1.0, 3.0], [1e300, -1e300, 0.0]])
def test_warp_losses_degenerate_inputs_stay_finite(losses):
    warped = bayesian.warp_losses(losses)

    assert len(warped) == len(losses)
    assert all(math.isfinite(value) for value in warped)
    # Equal losses stay equal; different ones keep their order.
    assert [a < b for a, b in zip(losses, losses[1:])] == [a < b for a, b in zip(warped, warped[1:])]
