"""A multivariate Parzen estimator over the internal coordinates of a search space, in numpy.

This is the density model behind :class:`hpo_core.algorithms.tpe.TPESearcher`. A :class:`ParzenEstimator` is a
weighted mixture with one kernel per observation plus one wide *prior* kernel. Each kernel is a product over the
dimensions of the space:

* a continuous coordinate gets a normal kernel truncated to the bounds;
* a grid coordinate (INT range, range with ``step``) gets the same normal kernel, discretised: the mass of grid
  index ``k`` is the kernel's mass on ``[k - 0.5, k + 0.5]``, truncated to ``[-0.5, size - 0.5]``;
* a categorical coordinate gets a distribution over the choices that favours the observed one.

Because each kernel is a product over all dimensions, and the mixture is not built per dimension, it keeps the
correlation between parameters that the observations show. Optuna calls this the multivariate TPE.

Bandwidths follow the usual TPE rule: in each dimension a kernel is as wide as the larger gap to its neighbours
among the sorted observations, clipped below at ``range / min(100, n_kernels + 1)`` so that a few close points
cannot collapse the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

from hpo_core.space import Param

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
# The clip on bandwidths: a kernel is never narrower than range / min(_MAX_CLIP_DIVISOR, n_kernels + 1).
_MAX_CLIP_DIVISOR = 100.0
#: Grids of at most this many points get an exact table of log masses per kernel. Larger grids are scored by the
#: density at the grid point.
GRID_TABLE_LIMIT = 64


@dataclass(frozen=True)
class Dimension:
    """The shape of one internal coordinate, as the estimator uses it.

    Attributes:
        low: lower bound of the coordinate (0 for a grid or a categorical parameter).
        high: upper bound of the coordinate (``size - 1`` for a grid or a categorical parameter).
        size: number of grid points or choices; ``None`` for a continuous coordinate.
        categorical: ``True`` when the choices have no order.
    """

    low: float
    high: float
    size: int | None = None
    categorical: bool = False

    @classmethod
    def of(cls, param: Param) -> "Dimension":
        low, high = param.bounds()
        return cls(low, high, param.grid_size, param.is_categorical)

    @property
    def support(self) -> tuple[float, float]:
        """Interval the numeric kernels are truncated to: the bounds, widened by half a cell on a grid."""
        if self.size is None:
            return self.low, self.high
        return self.low - 0.5, self.high + 0.5


def log_gauss_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Compute ``log(Phi(b) - Phi(a))`` for standard-normal bounds ``a < b``, accurate far into both tails."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    # An interval in the upper tail is mirrored into the lower tail, where log_ndtr keeps its precision. After
    # that Phi(hi) is never close to 1 unless the interval straddles 0, where the mass is large anyway.
    upper = a > 0
    lo = np.where(upper, -b, a)
    hi = np.where(upper, -a, b)
    log_hi = log_ndtr(hi)
    with np.errstate(divide="ignore"):
        return log_hi + np.log(-np.expm1(log_ndtr(lo) - log_hi))


def neighbour_bandwidths(mus: np.ndarray, low: float, high: float, n_kernels: int) -> np.ndarray:
    """Bandwidths of kernels centred at ``mus`` inside ``[low, high]``: the larger gap to a sorted neighbour.

    The outermost kernels measure their gap to the next observation inwards, not to the bound, so a point found
    near a bound keeps a narrow kernel. The result is clipped to ``[range / min(100, n_kernels + 1), range]``.
    """
    width = high - low
    order = np.argsort(mus, kind="stable")
    padded = np.concatenate(([low], mus[order], [high]))
    gaps_left = padded[1:-1] - padded[:-2]
    gaps_right = padded[2:] - padded[1:-1]
    sorted_sigmas = np.maximum(gaps_left, gaps_right)
    if len(mus) >= 2:
        sorted_sigmas[0] = padded[2] - padded[1]
        sorted_sigmas[-1] = padded[-2] - padded[-3]
    sigmas = np.empty_like(sorted_sigmas)
    sigmas[order] = sorted_sigmas
    min_sigma = width / min(_MAX_CLIP_DIVISOR, n_kernels + 1.0)
    return np.clip(sigmas, min_sigma, width)


class ParzenEstimator:
    """A weighted mixture of product kernels, one per observation, plus a prior kernel.

    Args:
        observations: an ``(n, d)`` array of internal coordinates; ``n`` may be 0.
        dims: the ``d`` dimensions, in column order.
        weights: ``n`` non-negative weights of the observation kernels (they need not sum to 1).
        prior_weight: weight of the prior kernel, which sits at the centre of every numeric dimension with the
            whole range as bandwidth and is uniform over the choices of a categorical one.

    Raises:
        ValueError: the shapes disagree, or a weight is negative.
    """

    def __init__(self, observations: np.ndarray, dims: Sequence[Dimension], weights: np.ndarray,
                 prior_weight: float = 1.0):
        observations = np.asarray(observations, dtype=float).reshape(-1, len(dims))
        weights = np.asarray(weights, dtype=float)
        n = observations.shape[0]
        if weights.shape != (n,):
            raise ValueError(f"expected {n} weights, one per observation, got shape {weights.shape}")
        if np.any(weights < 0) or prior_weight < 0 or weights.sum() + prior_weight <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {weights} and prior "
                             f"weight {prior_weight}")
        self.dims = tuple(dims)
        all_weights = np.append(weights, prior_weight)
        self._weights = all_weights / all_weights.sum()
        n_kernels = n + 1

        # Per numeric dimension: kernel centres and widths, the prior kernel last.
        self._mus: dict[int, np.ndarray] = {}
        self._sigmas: dict[int, np.ndarray] = {}
        # Per categorical or small-grid dimension: an (n_kernels, size) table of log probabilities.
        self._log_tables: dict[int, np.ndarray] = {}
        # Dimensions whose log density is computed per point: continuous ones and large grids.
        self._dense: list[int] = []
        with np.errstate(divide="ignore"):
            # Terms of each kernel's log density that do not depend on the point.
            self._log_const = np.log(self._weights)
        for j, dim in enumerate(self.dims):
            column = observations[:, j]
            if dim.categorical:
                self._log_tables[j] = np.log(self._categorical_table(column, dim, n_kernels, prior_weight))
                continue
            low, high = dim.support
            sigmas = neighbour_bandwidths(column, low, high, n_kernels) if n else np.empty(0)
            mus = self._mus[j] = np.append(column, 0.5 * (low + high))
            sigmas = self._sigmas[j] = np.append(sigmas, high - low)
            log_norm = log_gauss_mass((low - mus) / sigmas, (high - mus) / sigmas)
            if dim.size is not None and dim.size <= GRID_TABLE_LIMIT:
                edges = np.arange(dim.size + 1) - 0.5
                z = (edges[None, :] - mus[:, None]) / sigmas[:, None]
                self._log_tables[j] = log_gauss_mass(z[:, :-1], z[:, 1:]) - log_norm[:, None]
            else:
                # NOTE: on a grid of more than GRID_TABLE_LIMIT points the mass of a point is taken as the
                # density there (the midpoint rule). The bandwidth clip keeps every kernel at least
                # size / 100 > 0.64 cells wide, and at that width the rule overstates the mass at the kernel's
                # centre by about 10%.
                self._dense.append(j)
                self._log_const = self._log_const - np.log(sigmas) - log_norm - _LOG_SQRT_2PI
        if self._dense:
            self._dense_mus = np.stack([self._mus[j] for j in self._dense], axis=1)
            self._dense_inv_sigmas = 1.0 / np.stack([self._sigmas[j] for j in self._dense], axis=1)

    @staticmethod
    def _categorical_table(column: np.ndarray, dim: Dimension, n_kernels: int, prior_weight: float) -> np.ndarray:
        size = dim.size or 1
        # Every kernel spreads prior_weight / n_kernels over the choices on top of weight 1 on its own choice, so
        # the kernels sharpen as observations accumulate. The prior kernel (last row) is uniform.
        table = np.full((n_kernels, size), prior_weight / n_kernels)
        table[np.arange(n_kernels - 1), column.astype(int)] += 1.0
        table[-1] = 1.0
        return table / table.sum(axis=1, keepdims=True)

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` points, as an ``(size, d)`` array of internal coordinates."""
        kernels = rng.choice(len(self._weights), size=size, p=self._weights)
        out = np.empty((size, len(self.dims)))
        for j, dim in enumerate(self.dims):
            if dim.categorical:
                cumulative = np.cumsum(np.exp(self._log_tables[j][kernels]), axis=1)
                u = rng.random(size)[:, None] * cumulative[:, -1:]
                out[:, j] = np.minimum((cumulative < u).sum(axis=1), (dim.size or 1) - 1)
                continue
            low, high = dim.support
            mu = self._mus[j][kernels]
            sigma = self._sigmas[j][kernels]
            # Inverse-CDF draw from the truncated normal.
            cdf_low = ndtr((low - mu) / sigma)
            cdf_high = ndtr((high - mu) / sigma)
            u = cdf_low + rng.random(size) * (cdf_high - cdf_low)
            x = np.clip(mu + sigma * ndtri(np.clip(u, 1e-300, 1.0 - 1e-16)), low, high)
            if dim.size is not None:
                x = np.clip(np.round(x), dim.low, dim.high)
            out[:, j] = x
        return out

    def log_pdf(self, points: np.ndarray) -> np.ndarray:
        """Compute the log density (log mass on grid and categorical dimensions) of each row of ``points``."""
        points = np.asarray(points, dtype=float).reshape(-1, len(self.dims))
        # log_k[i, k]: log of kernel k's weighted density at point i, summed over dimensions (product kernels).
        log_k = np.broadcast_to(self._log_const, (points.shape[0], len(self._log_const))).copy()
        if self._dense:
            z = (points[:, None, self._dense] - self._dense_mus[None, :, :]) * self._dense_inv_sigmas[None, :, :]
            log_k -= 0.5 * np.einsum("ikd,ikd->ik", z, z)
        for j, table in self._log_tables.items():
            log_k += table[:, points[:, j].astype(int)].T
        # log-sum-exp over the kernels, written out: scipy's logsumexp costs more than the arithmetic here.
        peak = log_k.max(axis=1, keepdims=True)
        peak[~np.isfinite(peak)] = 0.0
        return np.log(np.exp(log_k - peak).sum(axis=1)) + peak[:, 0]
