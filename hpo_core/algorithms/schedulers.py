"""Early-stopping schedulers that work with any search algorithm, chosen through ``algoParams``.

``algoParams`` (values are strings):

* ``EarlyStopping``: ``median`` for :class:`MedianStoppingRule`; ``none`` or absent for no early stopping.
* ``EarlyStoppingGrace`` (default 3): results a trial reports before it may be stopped.
* ``EarlyStoppingMinTrials`` (default 3): other trials that must have reached a step before the rule compares
  against them.

A *step* is the position of a result in the trial's ``val_dict_list.json`` (its first entry is step 1), not the
``steps`` value written in that entry, so trials are compared entry by entry.
"""

from __future__ import annotations

import statistics
from typing import Sequence

from hpo_core.algorithms.base import Decision, Scheduler, TrialView
from hpo_core.algorithms.hyperband import read_int_param
from hpo_core.errors import SpecError
from hpo_core.spec import TaskSpec

DEFAULT_GRACE = 3
DEFAULT_MIN_TRIALS = 3
_SETTINGS = ("EarlyStoppingGrace", "EarlyStoppingMinTrials")


class MedianStoppingRule(Scheduler):
    """Stop a trial whose best result so far is worse than the median of the other trials at the same step.

    At step ``k`` (the trial's ``k``-th intermediate result) the rule takes each other trial that has reported at
    least ``k`` results, in any state, and averages its first ``k`` losses. It stops the trial when the trial's
    lowest loss in its first ``k`` results is higher than the median of those averages. This is the median
    stopping rule of Google Vizier (Golovin et al., "Google Vizier: A Service for Black-Box Optimization",
    KDD 2017). Losses are already sign-flipped, so lower is better for both objectives.

    Args:
        grace: the trial is never stopped before it has reported this many results.
        min_trials: the trial continues while fewer other trials than this have reached its step.

    Raises:
        ValueError: ``grace`` below 0 or ``min_trials`` below 1.
    """

    def __init__(self, grace: int = DEFAULT_GRACE, min_trials: int = DEFAULT_MIN_TRIALS):
        if grace < 0:
            raise ValueError(f"grace must be >= 0, got {grace}")
        if min_trials < 1:
            raise ValueError(f"min_trials must be >= 1, got {min_trials}")
        self.grace = grace
        self.min_trials = min_trials

    def decide(self, trial: TrialView, trials: Sequence[TrialView]) -> Decision:
        step = len(trial.intermediate)
        if step == 0 or step < self.grace:
            return Decision.CONTINUE
        averages = [sum(other.intermediate[:step]) / step for other in trials
                    if other.id != trial.id and len(other.intermediate) >= step]
        if len(averages) < self.min_trials:
            return Decision.CONTINUE
        if min(trial.intermediate) > statistics.median(averages):
            return Decision.STOP
        return Decision.CONTINUE


def create_scheduler(spec: TaskSpec) -> Scheduler | None:
    """Build the early-stopping scheduler that ``algoParams`` ask for, or ``None`` for no early stopping.

    Raises:
        SpecError: an unknown ``EarlyStopping`` value, an invalid grace or trial count, or a setting given
            without ``EarlyStopping``.
    """
    params = spec.algo_params
    kind = params.get("EarlyStopping", "").strip().lower()
    if kind in ("", "none"):
        for name in _SETTINGS:
            if name in params:
                raise SpecError(f"algoDef.algoParams.{name}", "has no effect without EarlyStopping", params[name],
                                'add {"name": "EarlyStopping", "value": "median"} or remove the setting')
        return None
    if kind != "median":
        raise SpecError("algoDef.algoParams.EarlyStopping", "is not a known early-stopping rule",
                        params["EarlyStopping"], 'use "median", or "none" for no early stopping')
    grace = read_int_param(params, "EarlyStoppingGrace", DEFAULT_GRACE, minimum=0)
    min_trials = read_int_param(params, "EarlyStoppingMinTrials", DEFAULT_MIN_TRIALS, minimum=1)
    assert grace is not None and min_trials is not None  # both have defaults
    return MedianStoppingRule(grace, min_trials)
