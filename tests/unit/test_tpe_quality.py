"""Unit tests for the multivariate Parzen estimator and the TPE searcher built on it, with no Redis."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from hpo_core.algorithms import TPESearcher, create_searcher
from hpo_core.algorithms.base import TrialView
from hpo_core.algorithms.parzen import (GRID_TABLE_LIMIT, Dimension, ParzenEstimator, log_gauss_mass,
                                        neighbour_bandwidths)
from hpo_core.algorithms.tpe import recency_weights, split_good
from hpo_core.records import TrialState
from hpo_core.spec import TaskSpec

BRANIN_SPACE = [{"name": "x1", "type": "Range", "dataType": "DOUBLE", "minDbVal": -5, "maxDbVal": 10},
                {"name": "x2", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0, "maxDbVal": 15}]
BRANIN_OPTIMUM = 0.397887


def branin(config: dict) -> float:
    x1, x2 = config["x1"], config["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def make_searcher(hyper_params: list[dict], algorithm: str = "Tpe", **algo_params: str):
    return create_searcher(TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": algorithm, "objectiveMetric": "loss", "objective": "minimize",
                    "algoParams": [{"name": name, "value": value} for name, value in algo_params.items()]},
        "hyperParams": hyper_params,
    }))


def best_after(algorithm: str, seed: int, budget: int) -> float:
    searcher = make_searcher(BRANIN_SPACE, algorithm, RandomSeed=str(seed))
    trials: list[TrialView] = []
    for i in range(budget):
        config = searcher.suggest(1, trials).configs[0]
        trials.append(TrialView(i, config, TrialState.FINISHED, branin(config)))
    return min(t.loss for t in trials) - BRANIN_OPTIMUM


# --- log_gauss_mass and bandwidths --------------------------------------------------------------------------------

@pytest.mark.parametrize(("a", "b"), [(-1.0, 2.0), (-0.01, 0.01), (-3.0, -2.5), (2.5, 3.0), (-40.0, -39.0),
                                      (39.0, 40.0)])
def test_log_gauss_mass_matches_reference(a, b):
    # Reference: the difference of CDFs in the tail where it is exact, evaluated on the side nearer zero.
    if b <= 0:
        expected = norm.logcdf(b) + math.log1p(-math.exp(norm.logcdf(a) - norm.logcdf(b)))
    elif a >= 0:
        expected = norm.logsf(a) + math.log1p(-math.exp(norm.logsf(b) - norm.logsf(a)))
    else:
        expected = math.log(norm.cdf(b) - norm.cdf(a))

    assert log_gauss_mass(np.array(a), np.array(b)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_log_gauss_mass_narrow_interval():
    # Over a width of 2e-9 around 0 the mass is the density at 0 times the width, to within 1e-6.
    expected = math.log(2e-9 * norm.pdf(0.0))

    assert log_gauss_mass(np.array(-1e-9), np.array(1e-9)) == pytest.approx(expected, rel=1e-6)


def test_log_gauss_mass_tail_symmetry():
    left = log_gauss_mass(np.array([-30.0, -8.0]), np.array([-29.0, -7.5]))
    right = log_gauss_mass(np.array([29.0, 7.5]), np.array([30.0, 8.0]))

    assert np.all(np.isfinite(left))
    assert np.allclose(left, right)


def test_neighbour_bandwidths_gaps_and_clip():
    sigmas = neighbour_bandwidths(np.array([0.0, 1.0, 3.0, 10.0]), 0.0, 10.0, n_kernels=200)

    # Inner points take the larger gap to a neighbour. The end points measure inwards: 0.0 takes its gap to 1.0
    # and 10.0 its gap to 3.0, not the gap to the bound.
    assert sigmas.tolist() == [1.0, 2.0, 7.0, 7.0]
    # With five kernels the clip, range / min(100, 5 + 1), raises the narrowest one.
    clipped = neighbour_bandwidths(np.array([0.0, 1.0, 3.0, 10.0]), 0.0, 10.0, n_kernels=5)
    assert clipped.tolist() == pytest.approx([10.0 / 6.0, 2.0, 7.0, 7.0])


def test_neighbour_bandwidths_clipped_below():
    sigmas = neighbour_bandwidths(np.array([5.0, 5.001, 5.002]), 0.0, 10.0, n_kernels=4)

    assert np.all(sigmas == pytest.approx(10.0 / 5.0))


# --- ParzenEstimator ----------------------------------------------------------------------------------------------

def test_parzen_continuous_density_integrates_to_one():
    dim = Dimension(-2.0, 3.0)
    estimator = ParzenEstimator(np.array([[-1.9], [0.5], [0.6], [2.9]]), [dim], np.ones(4))
    total, _ = integrate.quad(lambda x: math.exp(estimator.log_pdf(np.array([[x]]))[0]), -2.0, 3.0, limit=200)

    assert total == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("size", [5, GRID_TABLE_LIMIT, GRID_TABLE_LIMIT + 40])
def test_parzen_grid_masses_sum_to_one(size):
    dim = Dimension(0.0, size - 1.0, size=size)
    estimator = ParzenEstimator(np.array([[0.0], [1.0], [size - 1.0]]), [dim], np.array([1.0, 2.0, 1.0]))
    masses = np.exp(estimator.log_pdf(np.arange(size, dtype=float)[:, None]))

    # Exact tables sum to one; a grid above the table limit uses the midpoint rule, which is close.
    tolerance = 1e-9 if size <= GRID_TABLE_LIMIT else 1e-2
    assert masses.sum() == pytest.approx(1.0, abs=tolerance)


def test_parzen_categorical_favours_observed_choice():
    dim = Dimension(0.0, 3.0, size=4, categorical=True)
    estimator = ParzenEstimator(np.array([[2.0], [2.0], [0.0]]), [dim], np.ones(3))
    masses = np.exp(estimator.log_pdf(np.arange(4, dtype=float)[:, None]))

    assert masses.sum() == pytest.approx(1.0)
    assert masses.argmax() == 2
    assert masses[0] > masses[1]
    assert masses[1] == pytest.approx(masses[3])


def test_parzen_samples_stay_in_domain():
    dims = [Dimension(-1.0, 1.0), Dimension(0.0, 9.0, size=10), Dimension(0.0, 2.0, size=3, categorical=True)]
    observations = np.array([[0.9, 9.0, 2.0], [-0.9, 0.0, 0.0], [0.0, 4.0, 1.0]])
    samples = ParzenEstimator(observations, dims, np.ones(3)).sample(np.random.default_rng(0), 2000)

    assert samples.shape == (2000, 3)
    assert samples[:, 0].min() >= -1.0
    assert samples[:, 0].max() <= 1.0
    assert set(np.unique(samples[:, 1])) <= set(range(10))
    assert set(np.unique(samples[:, 2])) == {0.0, 1.0, 2.0}


def test_parzen_keeps_correlation_between_dimensions():
    # Observations lie on the diagonal x == y near both ends. Densities fitted per dimension and sampled
    # independently put about half their draws in the off-diagonal corners; the product kernels far fewer.
    dim = Dimension(0.0, 1.0)
    observations = np.array([[0.1, 0.1], [0.12, 0.11], [0.14, 0.13], [0.9, 0.9], [0.88, 0.91], [0.86, 0.87]])
    rng = np.random.default_rng(1)
    joint = ParzenEstimator(observations, [dim, dim], np.ones(6)).sample(rng, 4000)
    independent = np.hstack([ParzenEstimator(observations[:, [j]], [dim], np.ones(6)).sample(rng, 4000)
                             for j in range(2)])

    joint_off = np.mean(np.abs(joint[:, 0] - joint[:, 1]) > 0.5)
    independent_off = np.mean(np.abs(independent[:, 0] - independent[:, 1]) > 0.5)
    assert independent_off > 0.3
    assert joint_off < independent_off / 3


def test_parzen_rejects_bad_weights():
    dims = [Dimension(0.0, 1.0)]
    with pytest.raises(ValueError, match="weights"):
        ParzenEstimator(np.array([[0.5]]), dims, np.array([-1.0]))
    with pytest.raises(ValueError, match="one per observation"):
        ParzenEstimator(np.array([[0.5]]), dims, np.ones(2))


# --- TPE split and weights ----------------------------------------------------------------------------------------

def test_split_good_uses_fraction_and_cap():
    losses = [float(k) for k in range(100, 0, -1)]

    assert split_good(losses, 0.15, 25).tolist() == list(range(85, 100))
    assert len(split_good(losses, 0.5, 25)) == 25
    assert split_good(losses[:3], 0.15, 25).tolist() == [2]


def test_split_good_skips_failed_pending_and_nan():
    losses = [None, 0.5, float("nan"), None, 0.7, float("inf"), 0.6]

    assert split_good(losses, 1.0, 25).tolist() == [1, 4, 6]
    assert split_good([None, None], 1.0, 25).tolist() == []


def test_split_good_ties_go_to_older_trial():
    assert split_good([1.0, 0.0, 0.0, 0.0], 0.5, 25).tolist() == [1, 2]


def test_recency_weights_ramp_old_trials():
    assert recency_weights(10).tolist() == [1.0] * 10
    weights = recency_weights(100)

    assert len(weights) == 100
    assert weights[0] == pytest.approx(0.01)
    assert weights[74] == pytest.approx(1.0)
    assert np.all(np.diff(weights) >= 0)
    assert np.all(weights[-25:] == 1.0)


# --- TPE searcher -------------------------------------------------------------------------------------------------

def test_tpe_defaults():
    searcher = make_searcher(BRANIN_SPACE)

    assert isinstance(searcher, TPESearcher)
    assert searcher.warm_up == 10
    assert searcher.ei_candidates == 128
    assert searcher.good_ratio == 0.15
    assert searcher.good_max == 25


def test_tpe_pending_batch_spreads_out():
    # All good trials sit in one corner; a batch of four must not stack its proposals on one point.
    trials = [TrialView(i, {"x1": -5.0 + 15 * (i % 10) / 9, "x2": 15 * (i // 10) / 2}, TrialState.FINISHED,
                        float(i % 10)) for i in range(30)]
    suggestion = make_searcher(BRANIN_SPACE, RandomSeed="3").suggest(4, trials)

    points = [(c["x1"], c["x2"]) for c in suggestion.configs]
    assert len(points) == 4
    assert min(math.dist(a, b) for i, a in enumerate(points) for b in points[i + 1:]) > 1e-3


def test_tpe_encoding_cache_matches_cold_searcher():
    trials = [TrialView(i, {"x1": -5.0 + i * 0.7, "x2": (i * 3.1) % 15}, TrialState.FINISHED, float((i * 7) % 11))
              for i in range(20)]
    warm = make_searcher(BRANIN_SPACE, RandomSeed="8")
    warm.suggest(1, trials[:19])
    cold = make_searcher(BRANIN_SPACE, RandomSeed="8")

    assert warm.suggest(2, trials).configs == cold.suggest(2, trials).configs


def test_tpe_beats_random_on_branin():
    # Measured with these five seeds: TPE's median regret after 50 trials is 0.08, Random's 0.85.
    tpe = statistics.median(best_after("Tpe", seed, 50) for seed in range(5))
    random_search = statistics.median(best_after("Random", seed, 50) for seed in range(5))

    assert tpe < 0.3
    assert tpe < random_search / 3
