"""Random search: independent uniform draws in each parameter's internal coordinate."""

from __future__ import annotations

import random
from typing import Sequence

from hpo_core.algorithms.base import Searcher, Suggestion, TrialView, derived_seed, fresh_config


class RandomSearcher(Searcher):
    """Uniform random sampling without repeats (``RandomSeed`` in ``algoParams``).

    The draw for trial ``k`` is seeded from ``(RandomSeed, k)``, so a restarted coordinator proposes the same
    values as the one it replaces. In a finite space, configurations are drawn without replacement and the search
    ends once all have been tried.
    """

    name = "Random"

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        taken = self.taken_keys(trials)
        configs = []
        for i in range(n):
            rng = random.Random(derived_seed(self.spec.seed, "random", len(trials) + i))
            config = fresh_config(self.space, rng, taken)
            if config is None:
                return Suggestion(configs, exhausted=True)
            taken.add(self.space.key(config))
            configs.append(config)
        size = self.space.cardinality
        # In a finite space the key of an in-space configuration is a tuple of grid indices. The key of a
        # configuration outside the space (a trial given by hand) contains ("raw", ...) parts and is not counted.
        used = sum(1 for key in taken if all(isinstance(part, int) for part in key))
        return Suggestion(configs, exhausted=size is not None and used >= size)
