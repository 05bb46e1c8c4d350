"""Search algorithms behind one interface, and the registry that builds one for a task."""

from __future__ import annotations

from typing import Callable

from hpo_core.algorithms.base import Decision, Scheduler, Searcher, Suggestion, TrialView
from hpo_core.algorithms.bayesian import BayesianSearcher
from hpo_core.algorithms.bohb import BOHBSearcher
from hpo_core.algorithms.grid import ExperimentGridSearcher
from hpo_core.algorithms.hyperband import ASHASearcher, HyperbandSearcher
from hpo_core.algorithms.random_search import RandomSearcher
from hpo_core.algorithms.tpe import TPESearcher
from hpo_core.algorithms.tpe_hyperopt import HyperoptTPESearcher
from hpo_core.errors import SpecError
from hpo_core.spec import TaskSpec

__all__ = ["Decision", "Scheduler", "Searcher", "Suggestion", "TrialView", "RandomSearcher", "TPESearcher",
           "HyperoptTPESearcher", "BayesianSearcher", "HyperbandSearcher", "ASHASearcher", "BOHBSearcher",
           "ExperimentGridSearcher", "BUILTIN_SEARCHERS", "create_searcher", "create_tpe"]

def create_tpe(spec: TaskSpec) -> Searcher:
    """The TPE searcher that ``algoParams`` ``Engine`` names: ``parzen`` (the default) or ``hyperopt``.

    Raises:
        SpecError: an unknown engine.
    """
    engine = spec.algo_params.get("Engine", "parzen").strip().lower()
    if engine == "parzen":
        return TPESearcher(spec)
    if engine == "hyperopt":
        return HyperoptTPESearcher(spec)
    raise SpecError("algoDef.algoParams.Engine", "is not a known TPE engine", spec.algo_params["Engine"],
                    'use "parzen" (multivariate, the default) or "hyperopt" (hyperopt\'s univariate TPE)')


#: Built-in searchers by canonical algorithm name (see hpo_core.spec.BUILTIN_ALGORITHMS).
BUILTIN_SEARCHERS: dict[str, Callable[[TaskSpec], Searcher]] = {
    "Random": RandomSearcher,
    "Tpe": create_tpe,
    "Bayesian": BayesianSearcher,
    "Hyperband": HyperbandSearcher,
    "ASHA": ASHASearcher,
    "BOHB": BOHBSearcher,
    "ExperimentGridSearch": ExperimentGridSearcher,
}


def create_searcher(spec: TaskSpec, plugin_factory: Callable[[TaskSpec], Searcher] | None = None) -> Searcher:
    """Build the searcher that ``spec.algorithm`` names.

    Args:
        spec: the validated task definition.
        plugin_factory: builds a searcher for a name that is not built in (a user plugin); without it such a
            name is rejected.

    Raises:
        SpecError: an unknown algorithm or invalid ``algoParams``.
    """
    factory = BUILTIN_SEARCHERS.get(spec.algorithm)
    if factory is not None:
        return factory(spec)
    if plugin_factory is not None:
        return plugin_factory(spec)
    raise SpecError("algoDef.algorithm", "is not a known algorithm", spec.algorithm,
                    f"use one of {sorted(BUILTIN_SEARCHERS)} or install a plugin of that name")
