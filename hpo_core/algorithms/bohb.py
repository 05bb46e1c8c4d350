"""BOHB: Hyperband whose new configurations come from a density model instead of uniform draws.

BOHB (Falkner et al., "BOHB: Robust and Efficient Hyperparameter Optimization at Scale", ICML 2018) keeps
Hyperband's brackets and rungs (see :mod:`hpo_core.algorithms.hyperband`) and changes only how a bracket's new
configurations are chosen. The model for a bracket's new configurations is fitted on the trials of the brackets
that ran before it, never on the bracket's own results (see :meth:`BOHBSearcher._bracket_model`). Among the
resources those trials ran with, it takes the largest one with enough results, splits those results into the
best ``TopNPercent`` percent (*good*) and the rest (*bad*), and fits a product-kernel density to each group. It
then draws ``NumSamples`` candidates from the good density, with its bandwidths widened by ``BandwidthFactor``,
and keeps the candidate with the highest ratio of good to bad density, as TPE does. A ``RandomFraction`` of the
new configurations is drawn uniformly instead, which keeps the search global, and so is every configuration of
a bracket whose earlier brackets give no resource enough results (the whole first bracket, for instance).

``algoParams`` beyond Hyperband's: ``RandomFraction`` (in [0, 1], default 1/3), ``TopNPercent`` (in (0, 100),
default 15), ``NumSamples`` (>= 1, default 64), ``BandwidthFactor`` (> 0, default 3), ``MinBandwidth`` (> 0,
default 0.001, in units of the parameter's normalised range) and ``MinPointsInModel`` (>= 1, default the
number of hyperparameters + 1): a resource qualifies for the model when both groups have at least that many
results. Failed trials enter the bad group with an infinite loss.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

import numpy as np

from hpo_core.algorithms.base import Suggestion, TrialView, derived_seed, fresh_config
from hpo_core.algorithms.hyperband import HyperbandSearcher, read_int_param, read_number_param
from hpo_core.errors import SpecError
from hpo_core.records import TrialState
from hpo_core.space import SearchSpace
from hpo_core.spec import TaskSpec

# The normal reference rule for a Gaussian kernel's bandwidth: 1.06 * std * N ** (-1/5).
_REFERENCE_RULE = 1.06
# Draws outside [0, 1] are redrawn this many times before they are clipped to the boundary.
_REDRAWS = 10


def _bounded_param(spec: TaskSpec, name: str, default: float, check, rule: str) -> float:
    value = read_number_param(spec.algo_params, name, default)
    assert value is not None  # it has a default
    if not check(value):
        raise SpecError(f"algoDef.algoParams.{name}", f"must be {rule}", spec.algo_params.get(name),
                        f"give a value {rule}")
    return value


class KernelDensity:
    """A product-kernel density over a search space's normalised coordinates.

    Ranges and grids use a Gaussian kernel on the coordinate scaled to [0, 1], with the normal reference
    bandwidth. Discrete parameters use the Aitchison-Aitken kernel, which keeps a point's own choice with
    probability ``1 - bandwidth`` and spreads the rest evenly over the other choices. Its bandwidth follows a
    fixed rule, ``(1 - 1/choices) * N ** (-1/5)``, rather than a fitted one. As in hyperopt's TPE, the density
    mixes in the uniform distribution with the weight of one data point, so that a region far from every data
    point does not win the good-to-bad ratio merely because both densities vanish there.

    Args:
        points: an ``(N, d)`` array: scaled coordinates for ranges, choice indices for discrete parameters.
        choices: per dimension, the number of choices of a discrete parameter, or 0 for a range.
        min_bandwidth: the smallest bandwidth any dimension gets.
    """

    def __init__(self, points: np.ndarray, choices: Sequence[int], min_bandwidth: float):
        self.points = points
        self.choices = list(choices)
        count = len(points)
        bandwidths = []
        for d, size in enumerate(self.choices):
            if size:
                bandwidths.append(max(min_bandwidth, min(1.0, (1.0 - 1.0 / size) * count ** -0.2)))
            else:
                spread = float(np.std(points[:, d])) if count > 1 else 0.0
                bandwidths.append(max(min_bandwidth, _REFERENCE_RULE * spread * count ** -0.2))
        self.bandwidths = np.asarray(bandwidths)

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Compute the log density at each row of the ``(M, d)`` array ``x``."""
        # log_kernel[m, j] sums, over the dimensions, the log kernel between candidate m and data point j.
        log_kernel = np.zeros((len(x), len(self.points)))
        for d, size in enumerate(self.choices):
            h = self.bandwidths[d]
            if size > 1:
                same = x[:, d, None] == self.points[None, :, d]
                log_kernel += np.where(same, math.log(1.0 - h), math.log(h / (size - 1)))
            elif size == 0:
                z = (x[:, d, None] - self.points[None, :, d]) / h
                log_kernel += -0.5 * z * z - math.log(h * math.sqrt(2.0 * math.pi))
        # The uniform prior joins the data points as one more kernel, so the log-sum-exp runs over both.
        log_prior = -sum(math.log(size) for size in self.choices if size > 1)
        log_kernel = np.concatenate([log_kernel, np.full((len(x), 1), log_prior)], axis=1)
        peak = log_kernel.max(axis=1, keepdims=True)
        total = np.log(np.exp(log_kernel - peak).sum(axis=1)) + peak[:, 0]
        return total - math.log(len(self.points) + 1)

    def sample(self, rng: np.random.Generator, count: int, widen: float) -> np.ndarray:
        """Draw ``count`` points around randomly chosen data points, with range bandwidths times ``widen``."""
        centres = self.points[rng.integers(len(self.points), size=count)]
        out = centres.astype(float).copy()
        for d, size in enumerate(self.choices):
            h = self.bandwidths[d]
            if size:
                resample = rng.random(count) < h
                out[resample, d] = rng.integers(size, size=int(resample.sum()))
                continue
            column = rng.normal(centres[:, d], h * widen)
            for _ in range(_REDRAWS):
                outside = (column < 0.0) | (column > 1.0)
                if not outside.any():
                    break
                column[outside] = rng.normal(centres[outside, d], h * widen)
            out[:, d] = np.clip(column, 0.0, 1.0)
        return out


def _choices(space: SearchSpace) -> list[int]:
    return [len(p.choices) if p.is_categorical else 0 for p in space]


def _to_unit(space: SearchSpace, config: dict[str, Any]) -> list[float]:
    """Map a configuration to scaled coordinates (choice indices for discrete parameters).

    Raises:
        ValueError: a value outside the search space.
    """
    row = []
    for param in space:
        x = param.encode(config[param.name])
        if param.is_categorical:
            row.append(x)
            continue
        low, high = param.bounds()
        row.append((x - low) / (high - low) if high > low else 0.5)
    return row


def _from_unit(space: SearchSpace, row: Sequence[float]) -> dict[str, Any]:
    coordinates = []
    for param, u in zip(space, row):
        if param.is_categorical:
            coordinates.append(float(u))
        else:
            low, high = param.bounds()
            coordinates.append(low + float(u) * (high - low))
    return space.decode(coordinates)


class BOHBSearcher(HyperbandSearcher):
    """Hyperband with model-based new configurations (``algorithm: BOHB``); see the module docstring."""

    name = "BOHB"

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        self.random_fraction = _bounded_param(spec, "RandomFraction", 1 / 3, lambda v: 0 <= v <= 1, "in [0, 1]")
        self.top_percent = _bounded_param(spec, "TopNPercent", 15.0, lambda v: 0 < v < 100, "in (0, 100)")
        self.bandwidth_factor = _bounded_param(spec, "BandwidthFactor", 3.0, lambda v: v > 0, "> 0")
        self.min_bandwidth = _bounded_param(spec, "MinBandwidth", 1e-3, lambda v: 0 < v < 1, "in (0, 1)")
        num_samples = read_int_param(spec.algo_params, "NumSamples", 64, minimum=1)
        min_points = read_int_param(spec.algo_params, "MinPointsInModel", len(self.space) + 1, minimum=1)
        assert num_samples is not None and min_points is not None  # both have defaults
        self.num_samples = num_samples
        self.min_points = min_points
        # Caches of what the trials determine, so they are never the only copy of anything. A trial's
        # configuration never changes, so its scaled coordinates are kept by trial id. The model is kept with
        # the resource and the (loss, trial id) pairs it was fitted on, and is refitted when they change.
        self._rows: dict[int, list[float] | None] = {}
        self._model_key: tuple | None = None
        self._model: tuple[KernelDensity, KernelDensity] | None = None
        self._bracket_models: dict[tuple[int, int], tuple[KernelDensity, KernelDensity] | None] = {}

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        # All new configurations of one call are drawn from the same trials, so each bracket's model is fitted at
        # most once per call. The ``finally`` below empties the dictionary of bracket models again, so no model
        # outlives the call.
        self._bracket_models = {}
        try:
            return super().suggest(n, trials)
        finally:
            self._bracket_models = {}

    def _new_config(self, iteration: int, s: int, index: int, taken: set[tuple],
                    trials: Sequence[TrialView]) -> dict[str, Any] | None:
        rng = random.Random(derived_seed(self.spec.seed, "bohb", iteration, s, index))
        if rng.random() >= self.random_fraction:
            model = self._bracket_model(iteration, s, trials)
            if model is not None:
                good, bad = model
                np_rng = np.random.default_rng(derived_seed(self.spec.seed, "bohb-kde", iteration, s, index))
                candidates = good.sample(np_rng, self.num_samples, self.bandwidth_factor)
                scores = good.log_density(candidates) - bad.log_density(candidates)
                for row in candidates[np.argsort(-scores, kind="stable")]:
                    config = _from_unit(self.space, row)
                    if self.space.key(config) not in taken:
                        return config
        return fresh_config(self.space, rng, taken)

    def _bracket_model(self, iteration: int, s: int,
                       trials: Sequence[TrialView]) -> tuple[KernelDensity, KernelDensity] | None:
        """Fit the model for the new configurations of bracket ``s`` of ``iteration``, or ``None`` if none fits.

        Only trials of the brackets that ran before this one count. Brackets run one after another, so those
        trials have all ended, and every new configuration of the bracket comes from the same model, whatever the
        number of workers. Refitting after each result instead lets a bracket learn from its own first rung while
        it fills it: the model then draws more and more configurations near the best results at the first rung's
        small resource. Where that resource ranks configurations differently from the full one, the bracket, and
        every later model fitted on its survivors, stays in that region.
        """
        key = (iteration, s)
        if key not in self._bracket_models:
            earlier = []
            for view in trials:
                tags = self._rung_key(view.meta)
                if tags is not None and (tags[0], -tags[1]) < (iteration, -s):
                    earlier.append(view)
            self._bracket_models[key] = self._fit(earlier)
        return self._bracket_models[key]

    def _fit(self, trials: Sequence[TrialView]) -> tuple[KernelDensity, KernelDensity] | None:
        """Fit the good and bad densities on the largest resource with enough results; ``None`` if none has."""
        by_resource = self._observations(trials)
        for resource in sorted(by_resource, reverse=True):
            observations = sorted(by_resource[resource])
            n_good = max(self.min_points, int(math.floor(self.top_percent / 100.0 * len(observations))))
            good, bad = observations[:n_good], observations[n_good:]
            if len(bad) < self.min_points or not all(math.isfinite(loss) for loss, _ in good):
                continue
            key = (resource, tuple(observations))
            if key != self._model_key:
                choices = _choices(self.space)
                self._model_key = key
                self._model = (
                    KernelDensity(np.array([self._rows[i] for _, i in good], dtype=float), choices,
                                  self.min_bandwidth),
                    KernelDensity(np.array([self._rows[i] for _, i in bad], dtype=float), choices,
                                  self.min_bandwidth),
                )
            return self._model
        return None

    def _observations(self, trials: Sequence[TrialView]) -> dict[float, list[tuple[float, int]]]:
        """Group the ``(loss, trial id)`` pairs of the ended trials by resource.

        A failed trial has an infinite loss. Trials whose configuration is outside the search space are left out.
        """
        by_resource: dict[float, list[tuple[float, int]]] = {}
        for view in trials:
            if view.pending:
                continue
            if view.loss is not None:
                loss = float(view.loss)
            elif view.state is TrialState.FAILED:
                loss = math.inf
            else:
                continue
            resource = self.resource.resource_of(view)
            if resource is None or self._row(view) is None:
                continue
            by_resource.setdefault(resource, []).append((loss, view.id))
        return by_resource

    def _row(self, view: TrialView) -> list[float] | None:
        """Return the trial's scaled coordinates, or ``None`` when its configuration is outside the space."""
        if view.id in self._rows:
            return self._rows[view.id]
        try:
            row: list[float] | None = _to_unit(self.space, view.config)
        except (KeyError, ValueError):
            row = None
        self._rows[view.id] = row
        return row
