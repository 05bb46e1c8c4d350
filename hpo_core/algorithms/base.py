"""The interface every search algorithm implements, built-in or plugin.

A *searcher* proposes configurations (what to try); a *scheduler* decides whether a running trial continues
(when to stop). Both see the task's trials as :class:`TrialView` objects whose ``loss`` is already sign-flipped,
so every algorithm minimises.

Algorithms hold no private truth: what they know is rebuilt from the trials they are given on each call, and
what cannot be rebuilt goes into :meth:`Searcher.get_state`, a small JSON document that the coordinator stores
after each call and hands back through :meth:`Searcher.set_state` when it restarts.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Sequence

from hpo_core.records import Objective, Trial, TrialState
from hpo_core.space import SearchSpace
from hpo_core.spec import TaskSpec


@dataclass(frozen=True)
class TrialView:
    """The view of one trial that an algorithm receives.

    Attributes:
        id: the trial id, 0-based in creation order.
        config: the hyperparameter values, typed.
        state: the trial state; QUEUED and RUNNING trials are *pending*.
        loss: the objective, minimised (sign-flipped for ``maximize``); ``None`` unless the trial has a result.
        intermediate: losses reported while the trial ran, in order.
        meta: tags that the algorithm attached when it proposed the trial.
        metrics: the trial's ``additionalMetrics`` values, in the user's direction (not sign-flipped).
    """

    id: int
    config: dict[str, Any]
    state: TrialState
    loss: float | None = None
    intermediate: tuple[float, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        return not self.state.ended

    @classmethod
    def from_trial(cls, trial: Trial, objective: Objective, metric_name: str) -> "TrialView":
        loss = objective.to_loss(trial.metric) if trial.has_result and trial.metric is not None else None
        intermediate = []
        for step in trial.steps:
            value = step.get(metric_name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                intermediate.append(objective.to_loss(float(value)))
        return cls(trial.id, dict(trial.config), trial.state, loss, tuple(intermediate), dict(trial.meta),
                   dict(trial.metrics))


@dataclass
class Suggestion:
    """The result of :meth:`Searcher.suggest`.

    Attributes:
        configs: configurations to start now, at most the number requested.
        metas: one tag dict per configuration, stored with the trial and returned in :class:`TrialView`.
        exhausted: ``True`` when the searcher will propose nothing after ``configs`` because the space is used
            up. It may come with the last configurations, which still start. Returning fewer configurations with
            ``exhausted=False`` means "wait for running trials".
    """

    configs: list[dict[str, Any]] = field(default_factory=list)
    metas: list[dict[str, Any]] = field(default_factory=list)
    exhausted: bool = False

    def __post_init__(self) -> None:
        if not self.metas:
            self.metas = [{} for _ in self.configs]
        if len(self.metas) != len(self.configs):
            raise ValueError(f"Suggestion has {len(self.configs)} configs but {len(self.metas)} metas")


class Decision(str, enum.Enum):
    CONTINUE = "continue"
    STOP = "stop"


class Searcher(abc.ABC):
    """Proposes configurations.

    Subclasses set ``name`` and implement :meth:`suggest`. The constructor validates ``algoParams`` and raises
    :class:`hpo_core.errors.SpecError` naming the parameter.

    Args:
        spec: the validated task definition (search space, objective, budget, ``algoParams``).
    """

    name: str = ""
    #: Version of the JSON document that get_state returns; set_state rejects other versions.
    state_version: int = 1

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.space: SearchSpace = spec.space
        self._keys: dict[int, tuple] = {}

    def taken_keys(self, trials: Sequence[TrialView]) -> set[tuple]:
        """The :meth:`SearchSpace.key` of every trial's configuration.

        A trial's configuration never changes, so keys are cached by trial id; this keeps the cost of a proposal
        from growing with the length of the history. Views with a negative id (proposals of the current batch)
        are not cached.
        """
        keys = set()
        for trial in trials:
            key = self._keys.get(trial.id) if trial.id >= 0 else None
            if key is None:
                key = self.space.key(trial.config)
                if trial.id >= 0:
                    self._keys[trial.id] = key
            keys.add(key)
        return keys

    @abc.abstractmethod
    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        """Propose up to ``n`` new configurations, knowing every trial so far (pending ones included).

        Implementations must not propose a configuration that a trial in ``trials`` already has.
        """

    def get_state(self) -> dict[str, Any] | None:
        """State that cannot be rebuilt from the trials, as JSON-serialisable data; ``None`` when there is none."""
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""

    def scheduler(self) -> "Scheduler | None":
        """The scheduler that decides early stops for this searcher's trials, if it has one."""
        return None


class Scheduler(abc.ABC):
    """Decides from intermediate results whether a running trial continues."""

    @abc.abstractmethod
    def decide(self, trial: TrialView, trials: Sequence[TrialView]) -> Decision:
        """Decide for ``trial`` given every trial of the task (``trial`` included)."""


def derived_seed(seed: int | None, *parts: Any) -> int:
    """A reproducible 32-bit seed from the task's seed and a position, so restarts draw the same values."""
    text = repr((seed,) + parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def fresh_config(space: SearchSpace, rng: random.Random, taken: set[tuple],
                 attempts: int = 200) -> dict[str, Any] | None:
    """Draw a configuration whose key is not in ``taken``; ``None`` when every draw collided.

    For a finite space of at most :data:`hpo_core.space.ENUMERATION_LIMIT` points the draw is exact: it picks
    uniformly among the configurations not yet taken, so it fails only when the space is used up.
    """
    from hpo_core.space import ENUMERATION_LIMIT

    for _ in range(attempts):
        config = space.sample(rng)
        if space.key(config) not in taken:
            return config
    size = space.cardinality
    if size is not None and size <= ENUMERATION_LIMIT:
        free = [i for i in range(size) if space.key(space.config_at(i)) not in taken]
        if free:
            return space.config_at(rng.choice(free))
    return None
