"""ExperimentGridSearch: the explicit list of experiments of a WMLA request, run in order."""

from __future__ import annotations

from typing import Sequence

from hpo_core.algorithms.base import Searcher, Suggestion, TrialView


class ExperimentGridSearcher(Searcher):
    """Run ``spec.experiments`` in the order given (``algorithm: ExperimentGridSearch``).

    Each configuration is the experiment's values exactly as parsed from ``fixedVal`` (``int``, ``float`` or
    ``str`` by ``dataType``); experiments may name different hyperparameters. Each trial carries the meta
    ``{"experiment_id": id}``, which is how the searcher finds the experiments already started, so it keeps no
    state. The call that returns the last experiments also reports the search exhausted.
    """

    name = "ExperimentGridSearch"

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        started = {view.meta.get("experiment_id") for view in trials}
        waiting = [experiment for experiment in self.spec.experiments if experiment.id not in started]
        chosen = waiting[: max(n, 0)]
        configs = [dict(experiment.config) for experiment in chosen]
        metas = [{"experiment_id": experiment.id} for experiment in chosen]
        return Suggestion(configs, metas, exhausted=len(chosen) == len(waiting))
