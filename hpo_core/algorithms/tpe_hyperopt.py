"""TPE with hyperopt's engine (``algoParams`` ``Engine``: ``hyperopt``).

TPE (Bergstra et al., "Algorithms for Hyper-Parameter Optimization", NeurIPS 2011) splits the finished trials
into a good group (the best ``GoodRatio * sqrt(n)`` of them, at most ``GoodMax``) and the rest, fits a Parzen
density to each, draws ``EICandidate`` candidates from the good density and keeps the one that maximises the
ratio of the two densities, which is proportional to Expected Improvement.

Each call rebuilds hyperopt's trial documents from the stored trials, so the search holds no private state.
hyperopt's estimator is univariate: each parameter's density ignores the others. The default ``Tpe`` engine
(:mod:`hpo_core.algorithms.tpe`) is multivariate and finds better configurations in the same budget; this engine
stays for users who want hyperopt's behaviour exactly, with WMLA's defaults (``WarmUp`` 20, ``GoodRatio`` 0.25).
Failed and pending trials enter with an infinite loss: they land in the bad group, which steers new proposals
away from configurations that are failing or already running.
"""

from __future__ import annotations

import random
import threading
from typing import Any, Sequence

import numpy as np
from hyperopt import Domain, Trials, hp
from hyperopt import tpe as hyperopt_tpe
from hyperopt.base import JOB_STATE_DONE, STATUS_FAIL, STATUS_OK

from hpo_core.algorithms.base import Searcher, Suggestion, TrialView, derived_seed, fresh_config
from hpo_core.algorithms.tpe import _float_param, _int_param
from hpo_core.records import TrialState
from hpo_core.space import Param
from hpo_core.spec import TaskSpec

# hyperopt reads the cap on the good group (GoodMax) from a default argument, so it is set around each call.
_ENGINE_LOCK = threading.Lock()


def hyperopt_expression(param: Param):
    """The hyperopt prior over a parameter's internal coordinate."""
    if param.is_categorical:
        return hp.choice(param.name, list(range(len(param.choices))))
    size = param.grid_size
    if size is not None:
        # An ordinal grid keeps its order for the Parzen estimator; choice() would forget it.
        return hp.quniform(param.name, -0.5, size - 0.5, 1)
    low, high = param.bounds()
    return hp.uniform(param.name, low, high)


class HyperoptTPESearcher(Searcher):
    """TPE over the task's search space with hyperopt's engine (``algorithm: Tpe``, ``Engine: hyperopt``).

    ``algoParams`` (values are strings): ``RandomSeed``; ``WarmUp``, random configurations before TPE starts
    (> 2, default 20, capped at ``maxJobNum``); ``EICandidate``, candidates scored per proposal (> 1, default 24);
    ``GoodRatio``, the fraction defining the good group (> 0, default 0.25); ``GoodMax``, the most trials in the
    good group (> 1, default 25).
    """

    name = "Tpe"

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        params = spec.algo_params
        self.warm_up = _int_param(params, "WarmUp", 20, 3)
        if spec.max_jobs > 0:
            self.warm_up = min(self.warm_up, spec.max_jobs)
        self.ei_candidates = _int_param(params, "EICandidate", 24, 2)
        self.good_ratio = _float_param(params, "GoodRatio", 0.25, lambda v: 0 < v <= 1, "in (0, 1]")
        self.good_max = _int_param(params, "GoodMax", 25, 2)
        self._domain = Domain(lambda _config: 0.0, {p.name: hyperopt_expression(p) for p in self.space})

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        taken = self.taken_keys(trials)
        # Trials whose values lie outside the space (a changed definition, say) cannot be encoded: leave them out.
        history = [t for t in trials if self._encodable(t.config)]
        configs: list[dict[str, Any]] = []
        for i in range(n):
            seed = derived_seed(self.spec.seed, "tpe", len(history))
            config = self._propose(history, seed) if len(history) >= self.warm_up else None
            if config is None or self.space.key(config) in taken:
                # Warm-up, or TPE repeated a configuration: draw a fresh one at random instead.
                config = fresh_config(self.space, random.Random(seed), taken)
            if config is None:
                return Suggestion(configs, exhausted=True)
            taken.add(self.space.key(config))
            configs.append(config)
            # Later proposals of this batch see this one as pending.
            history.append(TrialView(-1 - i, config, TrialState.QUEUED))
        return Suggestion(configs)

    def _propose(self, history: Sequence[TrialView], seed: int) -> dict[str, Any] | None:
        hyperopt_trials = Trials()
        docs = []
        for tid, view in enumerate(history):
            misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": None, "idxs": {}, "vals": {}}
            for param in self.space:
                misc["idxs"][param.name] = [tid]
                misc["vals"][param.name] = [self._coordinate(param, view.config[param.name])]
            if view.loss is not None:
                result = {"status": STATUS_OK, "loss": float(view.loss)}
            else:
                result = {"status": STATUS_FAIL}
            docs.extend(hyperopt_trials.new_trial_docs([tid], [None], [result], [misc]))
        for doc in docs:
            doc["state"] = JOB_STATE_DONE
        hyperopt_trials.insert_trial_docs(docs)
        hyperopt_trials.refresh()

        new_id = len(history)
        with _ENGINE_LOCK:
            split = hyperopt_tpe.ap_split_trials
            saved_defaults = split.__defaults__
            split.__defaults__ = (self.good_max,)
            try:
                new_docs = hyperopt_tpe.suggest([new_id], self._domain, hyperopt_trials, seed,
                                                n_startup_jobs=0, n_EI_candidates=self.ei_candidates,
                                                gamma=self.good_ratio, verbose=False)
            finally:
                split.__defaults__ = saved_defaults
        vals = new_docs[0]["misc"]["vals"]
        return self.space.decode([float(np.asarray(vals[p.name][0])) for p in self.space])

    def _encodable(self, config: dict[str, Any]) -> bool:
        try:
            self.space.encode(config)
        except (KeyError, ValueError):
            return False
        return True

    @staticmethod
    def _coordinate(param: Param, value: Any) -> float:
        x = param.encode(value)
        return int(x) if param.is_categorical else x

