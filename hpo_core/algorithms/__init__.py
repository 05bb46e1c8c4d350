"""Search algorithms behind one interface, and the registry that builds one for a task."""

from __future__ import annotations

import difflib
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
           "ExperimentGridSearcher", "BUILTIN_SEARCHERS", "COMMON_PARAMS", "ALGORITHM_PARAMS",
           "check_param_names", "create_searcher", "create_tpe"]

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


#: ``algoParams`` names that every built-in algorithm accepts: the seed and the early-stopping rule.
COMMON_PARAMS = frozenset({"RandomSeed", "EarlyStopping", "EarlyStoppingGrace", "EarlyStoppingMinTrials"})
_RESOURCE_PARAMS = frozenset({"ResourceName", "ResourceValue", "eta"})
#: ``algoParams`` names of each built-in algorithm, beyond :data:`COMMON_PARAMS`.
ALGORITHM_PARAMS: dict[str, frozenset[str]] = {
    "Random": frozenset(),
    "Tpe": frozenset({"Engine", "WarmUp", "EICandidate", "GoodRatio", "GoodMax"}),
    "Bayesian": frozenset({"InitPoints", "CubeSize", "Noiseless"}),
    "Hyperband": _RESOURCE_PARAMS | {"Iterations"},
    "ASHA": _RESOURCE_PARAMS,
    "BOHB": _RESOURCE_PARAMS | {"Iterations", "RandomFraction", "TopNPercent", "NumSamples", "BandwidthFactor",
                                "MinBandwidth", "MinPointsInModel"},
    "ExperimentGridSearch": frozenset(),
}


def check_param_names(spec: TaskSpec) -> None:
    """Reject an ``algoParams`` name that the task's built-in algorithm does not read.

    A misspelt name would otherwise be ignored and its default used in silence. Names are case-sensitive, as in
    WMLA. A plugin receives every name, so plugins are not checked here.

    Raises:
        SpecError: naming the first unknown parameter, with the closest known name when there is one.
    """
    extra = ALGORITHM_PARAMS.get(spec.algorithm)
    if extra is None:
        return
    known = sorted(COMMON_PARAMS | extra)
    for name, value in spec.algo_params.items():
        if name in known:
            continue
        if name == "hyperbandEta":
            fix = (f'hyperbandEta is a key of algoDef itself: write "hyperbandEta": {value} in algoDef, or '
                   f'{{"name": "eta", "value": "{value}"}} in algoParams')
        else:
            same_case = [k for k in known if k.lower() == name.lower()]
            close = same_case or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            if close:
                fix = f"did you mean {close[0]!r}? Names are case-sensitive"
            else:
                fix = f"remove it, or use one of {', '.join(known)}"
        raise SpecError(f"algoDef.algoParams.{name}", f"is not a parameter of {spec.algorithm}", value, fix)


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
