"""Hyperband and ASHA: successive halving over a training resource such as epochs.

Successive halving starts many configurations with a small resource, keeps the best ``1/eta`` of them and runs
those again with ``eta`` times the resource, until one configuration runs with the full resource ``R``.
Hyperband (Li et al., "Hyperband: A Novel Bandit-Based Approach to Hyperparameter Optimization", JMLR 2018) runs
several such *brackets*, which trade the number of configurations against the starting resource. With
``s_max = floor(log_eta R)``, bracket ``s`` starts ``n = ceil((s_max + 1) / (s + 1) * eta**s)`` configurations at
``r = R * eta**-s``, and each *rung* keeps the top ``floor(n_i / eta)`` and multiplies the resource by ``eta``.
For ``R = 81`` and ``eta = 3`` the first rungs of the five brackets are (81 configurations, resource 1), (34, 3),
(15, 9), (8, 27) and (5, 81). ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020)
drops the wait at the end of each rung; see :class:`ASHASearcher`.

``algoParams`` (values are strings):

* ``ResourceName`` (required): the key under which each trial's ``config.json`` receives its resource, as an
  ``int``. It must not also be a ``hyperParams`` name.
* ``ResourceValue`` (required): the maximum resource ``R``, an integer >= 1.
* ``eta`` (default 3, or ``algoDef.hyperbandEta``): the reduction factor, > 1.
* ``RandomSeed``: seeds the configurations that start a bracket.
* ``Iterations`` (Hyperband and BOHB, default 1): how many times the whole set of brackets runs.

Resources: ``R * eta**-k`` is rarely an integer (``R = 10``, ``eta = 3`` gives 1.11 and 3.33), so every resource
is rounded half up to the nearest integer, with a minimum of 1. A factor close to 1 can round two rungs to the
same resource, which would train the same configuration twice, so such settings are rejected.

Trial tags (``meta``): every trial carries ``rung`` (0 for a new configuration); Hyperband and BOHB add
``iteration`` and ``bracket`` (the ``s`` above). A promotion is a new trial whose ``parent`` is the id of the
trial it continues, with the same hyperparameters and the larger resource. The worker sets
``OPENHPO_PARENT_RESULT_DIR`` in the promoted trial's environment to the parent trial's result directory, so a
script can resume from the ``checkpoint.pt`` it saved there instead of training from scratch.

Both searchers rebuild the bracket and rung of every trial from these tags on each call, so a restarted
coordinator continues mid-bracket without losing or repeating a trial: they keep no state of their own.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hpo_core.algorithms.base import Searcher, Suggestion, TrialView, derived_seed, fresh_config
from hpo_core.errors import SpecError
from hpo_core.spec import TaskSpec

#: The default reduction factor, as in WMLA and in the Hyperband paper.
DEFAULT_ETA = 3.0
# Tolerance for floating-point error in powers of a non-integer eta, e.g. 2.5 ** 2 == 6.250000000000001.
_EPSILON = 1e-9


def _algo_param_field(name: str) -> str:
    return f"algoDef.algoParams.{name}"


def _algo_param_example(name: str, value: float) -> str:
    """Return an ``algoParams`` entry that sets ``name`` to ``value``, as a request writes it."""
    return f'{{"name": "{name}", "value": "{value:g}"}}'


def read_number_param(params: Mapping[str, str], name: str, default: float | None) -> float | None:
    """Read a numeric ``algoParams`` value written as a string; ``default`` when it is absent.

    Raises:
        SpecError: the value is not a finite number.
    """
    raw = params.get(name)
    if raw is None or raw.strip() == "":
        return default
    example = _algo_param_example(name, default if default is not None else 3)
    try:
        value = float(raw)
    except ValueError:
        raise SpecError(_algo_param_field(name), "must be a number", raw, f"write e.g. {example}") from None
    if not math.isfinite(value):
        raise SpecError(_algo_param_field(name), "must be a finite number", raw,
                        f"give a finite number, e.g. {example}")
    return value


def read_int_param(params: Mapping[str, str], name: str, default: int | None, minimum: int) -> int | None:
    """Read an integer ``algoParams`` value of at least ``minimum``; ``default`` when it is absent.

    Raises:
        SpecError: the value is not an integer or is below ``minimum``.
    """
    value = read_number_param(params, name, None)
    if value is None:
        return default
    example = _algo_param_example(name, max(default if default is not None else 3, minimum))
    if value != int(value):
        raise SpecError(_algo_param_field(name), "must be an integer", params[name],
                        f"give a whole number >= {minimum}, e.g. {example}")
    if value < minimum:
        raise SpecError(_algo_param_field(name), f"must be at least {minimum}", params[name],
                        f"give a whole number >= {minimum}, e.g. {example}")
    return int(value)


# --- bracket arithmetic ----------------------------------------------------------------------------------------


def round_resource(value: float) -> int:
    """Round a resource half up to an integer, with a minimum of 1."""
    return max(1, int(math.floor(value + 0.5)))


def max_bracket(max_resource: int, eta: float) -> int:
    """Return ``s_max = floor(log_eta R)``, computed without the rounding error of ``math.log``."""
    s = 0
    while eta ** (s + 1) <= max_resource * (1 + _EPSILON):
        s += 1
    return s


def rung_resources(max_resource: int, eta: float) -> list[int]:
    """Return the resources ``R * eta**-k`` for ``k = s_max .. 0``, rounded; every rung of every bracket uses one."""
    s_max = max_bracket(max_resource, eta)
    return [round_resource(max_resource * eta ** (k - s_max)) for k in range(s_max + 1)]


@dataclass(frozen=True)
class Rung:
    """One rung of a bracket: the planned number of configurations and the resource each one receives."""

    size: int
    resource: int


def bracket_rungs(max_resource: int, eta: float, s: int) -> list[Rung]:
    """Plan bracket ``s``: its ``s + 1`` rungs, from the most configurations at the least resource to the fewest.

    Each rung keeps ``floor(n_i / eta)`` configurations, but at least one, so a non-integer ``eta`` never empties
    a rung before the last.
    """
    s_max = max_bracket(max_resource, eta)
    if not 0 <= s <= s_max:
        raise ValueError(f"bracket {s} is outside 0..{s_max} for R={max_resource}, eta={eta:g}")
    size = int(math.ceil((s_max + 1) / (s + 1) * eta ** s - _EPSILON))
    rungs = []
    for i in range(s + 1):
        rungs.append(Rung(size, round_resource(max_resource * eta ** (i - s))))
        size = max(1, int(math.floor(size / eta + _EPSILON)))
    return rungs


def hyperband_brackets(max_resource: int, eta: float) -> list[tuple[int, list[Rung]]]:
    """Plan one Hyperband iteration: ``(s, rungs)`` for ``s = s_max`` down to 0, the order in which they run."""
    s_max = max_bracket(max_resource, eta)
    return [(s, bracket_rungs(max_resource, eta, s)) for s in range(s_max, -1, -1)]


# --- settings --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceSettings:
    """The resource ``algoParams`` that Hyperband, ASHA and BOHB share.

    Attributes:
        name: the ``config.json`` key that carries the resource (``ResourceName``).
        max_resource: the maximum resource ``R`` (``ResourceValue``).
        eta: the reduction factor.
    """

    name: str
    max_resource: int
    eta: float

    @classmethod
    def from_spec(cls, spec: TaskSpec) -> "ResourceSettings":
        """Read and check ``ResourceName``, ``ResourceValue`` and ``eta`` (or ``algoDef.hyperbandEta``).

        Raises:
            SpecError: a missing resource parameter, ``ResourceValue < 1``, ``eta <= 1``, an ``eta`` that
                contradicts ``hyperbandEta``, a resource name that is also a hyperparameter, or an ``eta`` so
                close to 1 that two rungs round to the same resource.
        """
        params = spec.algo_params
        name = params.get("ResourceName", "").strip()
        if not name:
            raise SpecError(_algo_param_field("ResourceName"), "is missing",
                            fix='name the config.json key of the training budget, e.g. '
                                '{"name": "ResourceName", "value": "epochs"}')
        if name in spec.space:
            raise SpecError(_algo_param_field("ResourceName"), "is also a hyperParams name", name,
                            f"remove {name!r} from hyperParams: {spec.algorithm} sets it for every trial")
        if "ResourceValue" not in params:
            raise SpecError(_algo_param_field("ResourceValue"), "is missing",
                            fix='give the maximum resource as an integer, e.g. '
                                '{"name": "ResourceValue", "value": "81"}')
        max_resource = read_int_param(params, "ResourceValue", None, minimum=1)
        assert max_resource is not None  # present, checked above

        eta = read_number_param(params, "eta", None)
        if eta is None:
            eta = spec.hyperband_eta if spec.hyperband_eta is not None else DEFAULT_ETA
        elif spec.hyperband_eta is not None and eta != spec.hyperband_eta:
            raise SpecError(_algo_param_field("eta"), f"contradicts algoDef.hyperbandEta ({spec.hyperband_eta:g})",
                            params["eta"], "give eta in one place only")
        if not eta > 1:
            raise SpecError(_algo_param_field("eta"), "must be greater than 1", params.get("eta", eta),
                            "use e.g. 3")

        resources = rung_resources(max_resource, eta)
        for low, high in zip(resources, resources[1:]):
            if low >= high:
                raise SpecError(_algo_param_field("eta"),
                                f"is so close to 1 that two rungs both get resource {low} with ResourceValue "
                                f"{max_resource}", eta, "use eta >= 2 or a larger ResourceValue")
        return cls(name, max_resource, eta)

    def resource_of(self, view: TrialView) -> float | None:
        """Return the resource a trial received, or ``None`` when its config has none."""
        value = view.config.get(self.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return None


class _Batch:
    """The configurations one ``suggest`` call returns, with their tags."""

    def __init__(self, limit: int):
        self.limit = limit
        self.configs: list[dict[str, Any]] = []
        self.metas: list[dict[str, Any]] = []

    @property
    def full(self) -> bool:
        return len(self.configs) >= self.limit

    def add(self, config: dict[str, Any], meta: dict[str, Any]) -> None:
        self.configs.append(config)
        self.metas.append(meta)

    def count(self, **tags: Any) -> int:
        return sum(1 for meta in self.metas if all(meta.get(k) == v for k, v in tags.items()))


def _rank(members: Sequence[TrialView]) -> list[TrialView]:
    """Sort the trials with a result, best (lowest loss) first, ties to the earlier trial. Failed trials drop out."""
    return sorted((m for m in members if m.loss is not None), key=lambda m: (m.loss, m.id))


def _promoted_config(parent: TrialView, resource_name: str, resource: int) -> dict[str, Any]:
    config = {key: value for key, value in parent.config.items() if key != resource_name}
    config[resource_name] = resource
    return config


# --- Hyperband -------------------------------------------------------------------------------------------------


class HyperbandSearcher(Searcher):
    """Synchronous Hyperband (``algorithm: Hyperband``).

    Brackets run one after another, from the most aggressive (``s = s_max``) to plain full-resource runs
    (``s = 0``). Within a bracket a rung must end before its best trials are promoted: until then ``suggest``
    returns fewer configurations than requested, so some workers may wait. A rung's ranking counts only trials
    with a result, so failed trials are never promoted, and a rung whose trials all failed ends its bracket.
    After ``Iterations`` passes over the brackets the search is exhausted.

    New configurations are drawn at random, seeded from ``(RandomSeed, iteration, bracket, index)``; a subclass
    changes that by overriding :meth:`_new_config`. A new configuration never repeats one of its own bracket, nor
    one that another trial ran with the same or a larger resource, so a promotion never duplicates a trial.
    """

    name = "Hyperband"

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        self.resource = ResourceSettings.from_spec(spec)
        iterations = read_int_param(spec.algo_params, "Iterations", 1, minimum=1)
        assert iterations is not None  # it has a default
        self.iterations = iterations
        self.brackets = hyperband_brackets(self.resource.max_resource, self.resource.eta)
        # First rungs that the search space cut short, by (iteration, bracket): their final size. This is derived
        # from the trials (the same draws fail again), cached only to spare the enumeration on every call.
        self._short_first_rungs: dict[tuple[int, int], int] = {}

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        groups: dict[tuple[int, int, int], list[TrialView]] = {}
        for view in sorted(trials, key=lambda t: t.id):
            key = self._rung_key(view.meta)
            if key is not None:
                groups.setdefault(key, []).append(view)

        batch = _Batch(max(n, 0))
        for iteration in range(self.iterations):
            for s, rungs in self.brackets:
                if not self._advance_bracket(iteration, s, rungs, trials, groups, batch):
                    return Suggestion(batch.configs, batch.metas)
        return Suggestion(batch.configs, batch.metas, exhausted=not batch.configs)

    @staticmethod
    def _rung_key(meta: Mapping[str, Any]) -> tuple[int, int, int] | None:
        try:
            return int(meta.get("iteration", 0)), int(meta["bracket"]), int(meta["rung"])
        except (KeyError, TypeError, ValueError):
            return None

    def _advance_bracket(self, iteration: int, s: int, rungs: list[Rung], trials: Sequence[TrialView],
                         groups: dict[tuple[int, int, int], list[TrialView]], batch: _Batch) -> bool:
        """Add the bracket's next configurations to ``batch``; return whether the bracket has ended."""
        survivors: list[TrialView] = []
        for i, rung in enumerate(rungs):
            members = groups.get((iteration, s, i), [])
            if i == 0:
                target = self._fill_first_rung(iteration, s, rung, members, trials, batch)
            else:
                promoted = {m.meta.get("parent") for m in members}
                for parent in survivors:
                    if batch.full:
                        break
                    if parent.id not in promoted:
                        meta = {"iteration": iteration, "bracket": s, "rung": i, "parent": parent.id}
                        batch.add(_promoted_config(parent, self.resource.name, rung.resource), meta)
                target = len(survivors)

            added = batch.count(iteration=iteration, bracket=s, rung=i)
            if added or len(members) < target or any(m.pending for m in members):
                return False
            if i + 1 == len(rungs):
                return True
            keep = min(rungs[i + 1].size, max(1, int(math.floor(len(members) / self.resource.eta + _EPSILON))))
            survivors = _rank(members)[:keep]
            if not survivors:
                return True
        return True

    def _fill_first_rung(self, iteration: int, s: int, rung: Rung, members: list[TrialView],
                         trials: Sequence[TrialView], batch: _Batch) -> int:
        """Add new configurations to the bracket's first rung; return the rung's final size."""
        short = self._short_first_rungs.get((iteration, s))
        if short is not None:
            return short
        if len(members) >= rung.size:
            return rung.size

        # Bases (configurations without the resource) that this rung must not draw again.
        bracket_keys = {(iteration, s, i) for i in range(s + 1)}
        taken = set()
        for view in trials:
            resource = self.resource.resource_of(view)
            same_bracket = self._rung_key(view.meta) in bracket_keys
            if same_bracket or (resource is not None and resource >= rung.resource):
                taken.update(self.taken_keys([view]))
        taken.update(self.space.key(config) for config in batch.configs)

        while not batch.full and len(members) + batch.count(iteration=iteration, bracket=s, rung=0) < rung.size:
            index = len(members) + batch.count(iteration=iteration, bracket=s, rung=0)
            config = self._new_config(iteration, s, index, taken, trials)
            if config is None:
                final = len(members) + batch.count(iteration=iteration, bracket=s, rung=0)
                self._short_first_rungs[(iteration, s)] = final
                return final
            taken.add(self.space.key(config))
            config[self.resource.name] = rung.resource
            batch.add(config, {"iteration": iteration, "bracket": s, "rung": 0})
        return rung.size

    def _new_config(self, iteration: int, s: int, index: int, taken: set[tuple],
                    trials: Sequence[TrialView]) -> dict[str, Any] | None:
        """Draw the ``index``-th new configuration of a bracket, avoiding ``taken``; ``None`` when none is left."""
        rng = random.Random(derived_seed(self.spec.seed, "hyperband", iteration, s, index))
        return fresh_config(self.space, rng, taken)


# --- ASHA ------------------------------------------------------------------------------------------------------


class ASHASearcher(Searcher):
    """Asynchronous successive halving (``algorithm: ASHA``).

    The rungs use the resources ``R * eta**-k`` of Hyperband's most aggressive bracket. Whenever a worker is
    free, ASHA promotes a trial that is in the top ``1/eta`` of the ended trials of its rung and has not been
    promoted yet, looking at the highest rung first. Failed trials count in a rung's size but are never
    promoted. When no trial can be promoted, ASHA starts a new configuration at the bottom rung, so no worker
    waits for a rung to end. The search runs until the task's budget (``maxJobNum``, ``maxRunTime``) ends it, or until
    a finite search space is used up and nothing is left to promote.
    """

    name = "ASHA"

    def __init__(self, spec: TaskSpec):
        super().__init__(spec)
        self.resource = ResourceSettings.from_spec(spec)
        self.resources = rung_resources(self.resource.max_resource, self.resource.eta)

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        rungs: dict[int, list[TrialView]] = {}
        promoted: set[int] = set()
        for view in sorted(trials, key=lambda t: t.id):
            rung = view.meta.get("rung")
            if isinstance(rung, int) and 0 <= rung < len(self.resources):
                rungs.setdefault(rung, []).append(view)
            if isinstance(view.meta.get("parent"), int):
                promoted.add(view.meta["parent"])
        taken = self.taken_keys(trials)

        batch = _Batch(max(n, 0))
        new_count = 0
        while not batch.full:
            promotion = self._next_promotion(rungs, promoted)
            if promotion is not None:
                parent, rung = promotion
                promoted.add(parent.id)
                batch.add(_promoted_config(parent, self.resource.name, self.resources[rung]),
                          {"rung": rung, "parent": parent.id})
                continue
            index = len(rungs.get(0, [])) + new_count
            config = fresh_config(self.space, random.Random(derived_seed(self.spec.seed, "asha", index)), taken)
            if config is None:
                break
            taken.add(self.space.key(config))
            config[self.resource.name] = self.resources[0]
            batch.add(config, {"rung": 0})
            new_count += 1

        exhausted = n > 0 and not batch.configs and not any(view.pending for view in trials)
        return Suggestion(batch.configs, batch.metas, exhausted=exhausted)

    def _next_promotion(self, rungs: dict[int, list[TrialView]],
                        promoted: set[int]) -> tuple[TrialView, int] | None:
        """Return a trial to promote and the rung it goes to, or ``None`` when no trial qualifies."""
        for rung in range(len(self.resources) - 2, -1, -1):
            ended = [view for view in rungs.get(rung, []) if not view.pending]
            top = _rank(ended)[: int(math.floor(len(ended) / self.resource.eta + _EPSILON))]
            for view in top:
                if view.id not in promoted:
                    return view, rung + 1
        return None
