"""Gaussian-process Bayesian optimisation with BoTorch.

After ``InitPoints`` random trials, each proposal fits a Gaussian process to the finished trials and maximises
the log Expected Improvement over it (BoTorch's ``qLogExpectedImprovement``, a numerically stable form of EI).
The model works in the unit cube of the search space's internal coordinates:

* a continuous parameter maps linearly to ``[0, 1]``. A ``power`` parameter's coordinate is already its exponent,
  so the model works on its log scale;
* a grid parameter (INT range, range with ``step``) maps its index ``k`` to ``k / (size - 1)`` and stays on those
  points: the optimiser searches them as discrete values (small grids) or rounds a continuous relaxation to them
  (large grids);
* a categorical parameter keeps its choice index, and the model gives it a categorical kernel (BoTorch's
  ``MixedSingleTaskGP``), which only asks whether two choices are equal. The acquisition is then maximised by
  BoTorch's ``optimize_acqf_mixed_alternating``, which alternates continuous steps with a search over neighbouring
  discrete and categorical values. One-hot columns would instead let the optimiser visit points between choices
  that no trial can ever run, and would add one model dimension per choice.

Batches are proposed jointly: the q proposals of one call and every trial still running enter the acquisition as
pending points (``X_pending``), so the Monte-Carlo acquisition values a new point by what it adds beyond them and
parallel proposals spread out. A failed trial counts as the worst finished loss, so the model avoids its region.
Before the fit the losses pass through :func:`warp_losses`, a monotone transform that keeps a few very bad trials
from flattening the model everywhere else.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from hpo_core.algorithms.base import Searcher, Suggestion, TrialView, derived_seed, fresh_config
from hpo_core.algorithms.tpe import _int_param
from hpo_core.errors import SpecError
from hpo_core.space import SearchSpace
from hpo_core.spec import TaskSpec

logger = logging.getLogger(__name__)

#: The model is fitted on at most this many trials (the best half and the newest of the rest). Fitting is cubic in
#: the number of points, and this keeps one proposal within seconds on a laptop CPU.
MAX_FIT_POINTS = 200
#: Most random points at which the acquisition is evaluated to pick optimiser starts, whatever CubeSize is.
MAX_RAW_SAMPLES = 1024
#: Optimiser starts per proposal.
NUM_RESTARTS = 8
#: Quasi-Monte-Carlo samples of the posterior in the batch acquisition.
MC_SAMPLES = 256
#: Observation noise variance with ``Noiseless=true``, relative to the variance of the observed losses.
NOISELESS_VARIANCE = 1e-6
#: Most L-BFGS iterations of one model fit. Fits of a continuous space converged in 15 to 50 iterations on the
#: benchmark functions. A fit with categorical parameters often took more than 200, at about 3 ms each.
FIT_MAXITER = 100


@dataclass
class _CubeLayout:
    """The mapping from the internal coordinates of a space to the model's columns.

    Parameters with a single possible value are constants and get no column.
    """

    space: SearchSpace
    columns: list[int] = field(default_factory=list)  # parameter index of each model column
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    discrete_dims: dict[int, list[float]] = field(default_factory=dict)
    cat_dims: dict[int, list[float]] = field(default_factory=dict)
    constants: dict[int, float] = field(default_factory=dict)  # parameter index -> its only coordinate

    def __post_init__(self) -> None:
        for index, param in enumerate(self.space):
            low, high = param.bounds()
            if high <= low:
                self.constants[index] = low
                continue
            column = len(self.columns)
            self.columns.append(index)
            size = param.grid_size
            if param.is_categorical:
                self.lower.append(0.0)
                self.upper.append(high)
                self.cat_dims[column] = [float(k) for k in range(int(size or 1))]
            else:
                self.lower.append(0.0)
                self.upper.append(1.0)
                if size is not None:
                    self.discrete_dims[column] = [k / (size - 1) for k in range(size)]

    def to_model(self, coordinates: Sequence[float]) -> list[float]:
        row = []
        for column, index in enumerate(self.columns):
            x = coordinates[index]
            low, high = self.space.params[index].bounds()
            row.append(x if column in self.cat_dims else (x - low) / (high - low))
        return row

    def from_model(self, row: Sequence[float]) -> list[float]:
        coordinates = [0.0] * len(self.space)
        for index, value in self.constants.items():
            coordinates[index] = value
        for column, index in enumerate(self.columns):
            low, high = self.space.params[index].bounds()
            x = float(row[column])
            coordinates[index] = x if column in self.cat_dims else low + min(max(x, 0.0), 1.0) * (high - low)
        return coordinates


def _bool_param(params: dict[str, str], name: str, default: bool) -> bool:
    raw = params.get(name)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text not in ("true", "false"):
        raise SpecError(f"algoDef.algoParams.{name}", "must be true or false", raw, 'use "true" or "false"')
    return text == "true"


class BayesianSearcher(Searcher):
    """Gaussian-process Bayesian optimisation (``algorithm: Bayesian``).

    ``algoParams`` (values are strings):

    * ``RandomSeed``: seeds the random trials and the optimiser; proposal ``k`` of a task always uses the same
      derived seed.
    * ``InitPoints``: random trials before the model is used, an integer >= 1, default 10, capped at
      ``maxJobNum``. The model also waits until two trials have finished.
    * ``CubeSize``: the candidate pool, an integer >= ``maxJobNum``; default ``maxJobNum * 100``, or 10000 with
      ``maxJobNum = -1``, where a smaller value is raised to 10000. It sets how many random points score the
      acquisition before the optimiser refines the best of them, capped at 1024 to bound the time per proposal.
    * ``Noiseless``: ``true`` (the default) fixes the observation noise at a tiny value and uses log Expected
      Improvement over the best loss. ``false`` learns the noise and uses log Noisy Expected Improvement.
    """

    name = "Bayesian"

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        params = spec.algo_params
        self.init_points = _int_param(params, "InitPoints", 10, 1)
        if spec.max_jobs > 0:
            self.init_points = min(self.init_points, spec.max_jobs)
            self.cube_size = _int_param(params, "CubeSize", spec.max_jobs * 100, spec.max_jobs)
        else:
            self.cube_size = max(10_000, _int_param(params, "CubeSize", 10_000, 1))
        self.raw_samples = min(self.cube_size, MAX_RAW_SAMPLES)
        self.noiseless = _bool_param(params, "Noiseless", True)
        if importlib.util.find_spec("botorch") is None:
            raise SpecError("algoDef.algorithm", "needs BoTorch, which is not installed", spec.algorithm,
                            "install the bayes extra (pip install 'openhpo[bayes]') or choose Tpe")
        self._layout = _CubeLayout(self.space)

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        taken = self.taken_keys(trials)
        configs: list[dict[str, Any]] = []
        n_random = min(max(self.init_points - len(trials), 0), n)
        for i in range(n_random):
            config = self._random_config(len(trials) + i, taken)
            if config is None:
                return Suggestion(configs, exhausted=True)
            configs.append(config)

        n_model = n - n_random
        rows = self._propose_with_model(n_model, trials, configs) if n_model and self._layout.columns else []
        for i in range(n_model):
            config = self.space.decode(self._layout.from_model(rows[i])) if i < len(rows) else None
            if config is not None and self.space.key(config) in taken:
                logger.debug("Bayesian proposal %s repeats a configuration; drawing one at random", config)
                config = None
            if config is None:
                config = self._random_config(len(trials) + n_random + i, taken)
            if config is None:
                return Suggestion(configs, exhausted=True)
            taken.add(self.space.key(config))
            configs.append(config)
        return Suggestion(configs)

    def _random_config(self, position: int, taken: set[tuple]) -> dict[str, Any] | None:
        config = fresh_config(self.space, random.Random(derived_seed(self.spec.seed, "bayesian", position)), taken)
        if config is not None:
            taken.add(self.space.key(config))
        return config

    def _propose_with_model(self, q: int, trials: Sequence[TrialView],
                            batch: Sequence[dict[str, Any]]) -> list[list[float]]:
        """Propose ``q`` model rows; an empty list when fewer than two trials have finished or BoTorch fails.

        ``batch`` contains the configurations already chosen in this call, which count as pending like running
        trials.
        """
        xs: list[list[float]] = []
        observed: list[float | None] = []
        pending_x: list[list[float]] = []
        for trial in trials:
            try:
                row = self._layout.to_model(self.space.encode(trial.config))
            except (KeyError, ValueError):
                # A configuration outside the space (a value set by a plugin, for example) cannot inform the model.
                continue
            if trial.pending:
                pending_x.append(row)
                continue
            xs.append(row)
            # A failed trial, or one whose loss is not a finite number, has no usable loss.
            loss = trial.loss
            observed.append(float(loss) if loss is not None and math.isfinite(loss) else None)
        pending_x.extend(self._layout.to_model(self.space.encode(config)) for config in batch)
        finished = [loss for loss in observed if loss is not None]
        if len(finished) < 2:
            return []
        # A failed trial counts as the worst finished one: never good, and no worse than any real result.
        worst = max(finished)
        losses = [worst if loss is None else loss for loss in observed]
        xs, losses = _fit_subset(xs, losses, MAX_FIT_POINTS)
        losses = warp_losses(losses)
        seed = derived_seed(self.spec.seed, "bayesian-model", len(trials))

        from botorch.exceptions.errors import BotorchError

        try:
            return _optimise(self._layout, xs, losses, pending_x, q, seed, self.noiseless, self.raw_samples)
        except (BotorchError, RuntimeError, ValueError, ArithmeticError) as exc:
            # A numerical failure of one fit (a matrix that is not positive definite, a fit that never converged)
            # must not stop the task: this proposal falls back to a random draw.
            logger.warning("Bayesian model failed (%s: %s); proposing at random instead", type(exc).__name__, exc)
            return []


def _fit_subset(xs: list[list[float]], losses: list[float], limit: int) -> tuple[list[list[float]], list[float]]:
    """Keep at most ``limit`` points, given in trial order: the best ``limit // 2`` and the newest of the others."""
    if len(xs) <= limit:
        return xs, losses
    order = np.argsort(losses, kind="stable")
    best = set(order[: limit // 2].tolist())
    rest = [i for i in range(len(xs)) if i not in best]
    keep = sorted(best) + rest[len(rest) - (limit - len(best)):]
    keep.sort()
    return [xs[i] for i in keep], [losses[i] for i in keep]


def warp_losses(losses: Sequence[float]) -> list[float]:
    """Centre and scale the losses robustly, then reshape them with a Yeo-Johnson power transform fitted to them.

    Losses of real tasks and of test functions are often skewed: a few diverged trials sit orders of magnitude
    above the rest (Rosenbrock's values span six). A GP fitted to such values spends its variance on the outliers
    and models the region that matters as flat. Scaling by the median and the interquartile range, not the mean and the
    standard deviation, keeps the bulk of the losses spread out however far the outliers lie, and the fitted
    transform then compresses the outliers. The transform is monotone, so the order of the losses, the incumbent
    and the meaning of Expected Improvement over it are kept. On losses that are already near normal its fitted
    exponent is close to 1, so it changes little.
    """
    from scipy import stats

    y = np.asarray(losses, dtype=float)
    if len(y) < 3 or not np.all(np.isfinite(y)):
        return y.tolist()
    q25, median, q75 = np.percentile(y, [25, 50, 75])
    scale = q75 - q25
    if not scale > 0:
        # When more than half the losses are equal, the standard deviation scales them instead. If it is 0 too,
        # the losses stay as they are.
        scale = float(y.std())
    if not (scale > 0 and math.isfinite(scale)):
        return y.tolist()
    y = (y - median) / scale
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warped, _ = stats.yeojohnson(y)
    if not np.all(np.isfinite(warped)) or not float(np.ptp(warped)) > 0:
        return y.tolist()
    return warped.tolist()


def _optimise(layout: _CubeLayout, xs: list[list[float]], losses: list[float], pending: list[list[float]],
              q: int, seed: int, noiseless: bool, raw_samples: int) -> list[list[float]]:
    """Fit the GP and return ``q`` model rows that jointly maximise the batch log EI."""
    import torch

    threads = torch.get_num_threads()
    # Matrices of at most MAX_FIT_POINTS rows are too small to gain from threads, and on a busy 2-core machine
    # two threads made one proposal about five times slower than one thread.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return _fit_and_maximise(layout, xs, losses, pending, q, seed, noiseless, raw_samples)
    finally:
        torch.set_num_threads(threads)


def _fit_and_maximise(layout: _CubeLayout, xs: list[list[float]], losses: list[float],
                      pending: list[list[float]], q: int, seed: int, noiseless: bool,
                      raw_samples: int) -> list[list[float]]:
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement, qLogNoisyExpectedImprovement
    from botorch.exceptions.warnings import InputDataWarning, OptimizationWarning
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import MixedSingleTaskGP, SingleTaskGP
    from botorch.optim import optimize_acqf
    from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
    from botorch.sampling import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.utils.warnings import NumericalWarning

    dtype = torch.float64
    train_x = torch.tensor(xs, dtype=dtype)
    # BoTorch maximises, the searcher minimises.
    train_y = -torch.tensor(losses, dtype=dtype).unsqueeze(-1)
    train_yvar = None
    if noiseless:
        variance = float(train_y.var()) if len(losses) > 1 else 1.0
        train_yvar = torch.full_like(train_y, NOISELESS_VARIANCE * max(variance, 1e-12))
    bounds = torch.tensor([layout.lower, layout.upper], dtype=dtype)
    x_pending = torch.tensor(pending, dtype=dtype) if pending else None

    with warnings.catch_warnings():
        # Categorical columns hold choice indices, outside the unit cube on purpose.
        warnings.simplefilter("ignore", InputDataWarning)
        # A restart whose line search stopped early still yields a usable candidate.
        warnings.simplefilter("ignore", OptimizationWarning)
        warnings.filterwarnings("ignore", "Optimization failed", RuntimeWarning)
        # gpytorch raises a fixed noise below 1e-6 to 1e-6 and warns each time; that floor is intended here.
        warnings.simplefilter("ignore", NumericalWarning)
        started = time.perf_counter()
        if layout.cat_dims:
            model = MixedSingleTaskGP(train_x, train_y, cat_dims=sorted(layout.cat_dims), train_Yvar=train_yvar)
        else:
            model = SingleTaskGP(train_x, train_y, train_Yvar=train_yvar)
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model),
                         optimizer_kwargs={"options": {"maxiter": FIT_MAXITER}})
        fitted = time.perf_counter()

        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=seed)
        # NOTE: the closed-form LogExpectedImprovement, tried for single proposals, did worse on Hartmann6
        # (median regret 0.16 against 0.08 after 50 trials, seeds 100-109), so the Monte-Carlo form serves all.
        if noiseless:
            acquisition = qLogExpectedImprovement(model, best_f=train_y.max(), sampler=sampler, X_pending=x_pending)
        else:
            acquisition = qLogNoisyExpectedImprovement(model, X_baseline=train_x, sampler=sampler,
                                                       X_pending=x_pending, prune_baseline=True)
        if layout.discrete_dims or layout.cat_dims:
            candidates, _ = optimize_acqf_mixed_alternating(
                acquisition, bounds, discrete_dims=layout.discrete_dims, cat_dims=layout.cat_dims, q=q,
                raw_samples=raw_samples, num_restarts=NUM_RESTARTS)
        else:
            candidates, _ = optimize_acqf(acquisition, bounds, q=q, num_restarts=NUM_RESTARTS,
                                          raw_samples=raw_samples, sequential=True)
    logger.debug("Bayesian proposal: fit %.2f s, acquisition %.2f s on %d points", fitted - started,
                 time.perf_counter() - fitted, len(xs))
    return candidates.detach().cpu().tolist()
