"""The coordinator: drives every active task from Redis, one pass at a time.

A pass over a task:

1. SUBMITTED → RUNNING once its definition is valid (FAILED with the reason otherwise).
2. Attempts whose lease expired are re-queued as a new attempt, or failed after ``maxRetries``.
3. QUEUED attempts that have no Celery message yet are sent (again after a coordinator restart).
4. A stop request, an early-stop decision or the end of ``maxRunTime`` stops trials.
5. Free slots (``maxParalleJobNum`` minus queued and running trials, within ``maxJobNum``) are filled with the
   searcher's proposals.
6. The task ends FINISHED when its budget is spent or its space exhausted and no trial is left running; FAILED when
   every trial failed past a threshold or the algorithm broke; STOPPED after a stop request.

All truth lives in Redis. What the coordinator caches (parsed specs, searcher objects) is rebuilt from Redis after a
restart, and searcher state that cannot be rebuilt is saved after every proposal, so a coordinator killed at any
point resumes without losing or repeating a trial. Between passes it blocks on the event stream, so a finished
trial is followed by the next proposal within milliseconds.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable

import structlog
from celery import Celery

from broker.app import RUN_MEMBER, RUN_TRIAL
from broker.settings import Settings
from broker.store import RedisStore, TaskRecord
from hpo_core.algorithms import Decision, Scheduler, Searcher, TrialView, create_searcher
from hpo_core.errors import OpenHPOError, SpecError
from hpo_core.records import TaskState, Trial, TrialState
from hpo_core.spec import BUILTIN_ALGORITHMS, TaskSpec

log = structlog.get_logger("openhpo.coordinator")

#: A task fails when its first this-many ended trials all failed (or all of maxJobNum, when smaller).
FAILURE_THRESHOLD = 5


def _create_scheduler(spec: TaskSpec) -> Scheduler | None:
    try:
        from hpo_core.algorithms.schedulers import create_scheduler
    except ImportError:
        return None
    return create_scheduler(spec)


def trial_width(spec: TaskSpec, trial: Trial) -> tuple[int, int]:
    """Return the minimum and maximum number of workers of a trial.

    They are the trial meta's ``min_workers`` and ``max_workers`` when those are whole numbers >= 1, else
    modelSpec's. The minimum never exceeds the maximum.
    """
    min_workers, max_workers = spec.model.min_workers, spec.model.max_workers
    meta_max = trial.meta.get("max_workers")
    meta_min = trial.meta.get("min_workers")
    if isinstance(meta_max, int) and not isinstance(meta_max, bool) and meta_max >= 1:
        max_workers = meta_max
    if isinstance(meta_min, int) and not isinstance(meta_min, bool) and meta_min >= 1:
        min_workers = meta_min
    return min(min_workers, max_workers), max_workers


#: The end reason of a task whose searcher has nothing left to propose, where "search space exhausted" misleads.
_EXHAUSTED_REASONS = {"Hyperband": "every bracket ran", "BOHB": "every bracket ran",
                      "ExperimentGridSearch": "every experiment ran"}


class Coordinator:
    """Drives tasks stored in ``store``, sending trial tasks through ``celery_app``.

    Args:
        store: the Redis store.
        celery_app: the Celery app whose broker carries the trial tasks.
        settings: queue name, timing.
        plugin_factory: builds searchers for plugin algorithm names.
    """

    def __init__(self, store: RedisStore, celery_app: Celery, settings: Settings,
                 plugin_factory: Callable[[TaskSpec], Searcher] | None = None, lock_ttl: float = 10.0):
        self.store = store
        self.app = celery_app
        self.settings = settings
        if plugin_factory is None:
            from hpo_core.algorithms.plugin import load_plugin_factory

            plugin_factory = load_plugin_factory()  # OPENHPO_PLUGIN_DIR, else .openhpo/plugins
        self.plugin_factory = plugin_factory
        self.lock_ttl = lock_ttl
        self.owner = f"coordinator-{uuid.uuid4().hex[:12]}"
        self._specs: dict[tuple[str, float], TaskSpec] = {}
        self._searchers: dict[tuple[str, float], Searcher] = {}
        self._schedulers: dict[tuple[str, float], Scheduler | None] = {}
        self._decided_steps: dict[tuple[str, int, int], int] = {}
        self._ended: dict[tuple[str, float], dict[int, Trial]] = {}

    # --- service loop -------------------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Run passes until ``stop`` is set, waking up on trial events or every ``poll_interval`` seconds."""
        stop = stop or threading.Event()
        log.info("coordinator started", owner=self.owner, prefix=self.store.prefix)
        last_event = self.store.latest_event_id()
        try:
            while not stop.is_set():
                if not self.store.acquire_lock(self.owner, self.lock_ttl):
                    stop.wait(min(1.0, self.lock_ttl / 3))
                    continue
                try:
                    self.run_pass()
                except Exception:  # Redis down or a bug: log, back off, keep serving other passes
                    log.error("coordinator pass failed; retrying", exc_info=True)
                    stop.wait(1.0)
                    continue
                try:
                    last_event, _events = self.store.wait_events(last_event, self.settings.poll_interval)
                except Exception:
                    log.error("reading trial events failed; retrying", exc_info=True)
                    stop.wait(1.0)
        finally:
            self.store.release_lock(self.owner)
            log.info("coordinator stopped", owner=self.owner)

    def run_pass(self) -> None:
        for name in self.store.active_tasks():
            try:
                self.drive(name)
            except OpenHPOError as exc:
                log.warning("task pass failed", task=name, error=str(exc))

    # --- one task -----------------------------------------------------------------------------------------------

    def drive(self, name: str) -> None:
        task = self.store.get_task(name)
        bound = log.bind(task=name)
        if task.state.ended:
            self.store.set_task_state(name, [task.state], task.state)  # drops it from the active set
            return
        key = (name, task.created)
        spec = self._spec(task, key, bound)
        if spec is None:
            return
        if task.state is TaskState.SUBMITTED:
            if task.stop:
                self._end(name, TaskState.STOPPED, bound, "stopped before it started")
                return
            self.store.set_task_state(name, [TaskState.SUBMITTED], TaskState.RUNNING)
            bound.info("task started", algorithm=spec.algorithm, max_jobs=spec.max_jobs,
                       max_parallel=spec.max_parallel)

        trials = self._load_trials(name, key, task.next_trial)
        trials = self._recover_lost(name, key, spec, trials, bound)
        self._dispatch_queued(name, trials, bound, spec)

        if task.stop:
            self._handle_stop(name, task, trials, bound)
            return
        out_of_time = spec.max_run_time > 0 and task.started is not None and \
            time.time() - task.started > spec.max_run_time * 60
        if out_of_time:
            for trial in trials:
                if not trial.state.ended:
                    self.store.stop_trial(name, trial.id, "maxRunTime reached")
        else:
            self._early_stop(name, key, spec, trials, bound)

        active = [t for t in trials if not t.state.ended]
        ended = [t for t in trials if t.state.ended]
        if ended and self._all_failing(spec, ended):
            last = ended[-1]
            for trial in active:
                self.store.stop_trial(name, trial.id, "task failed")
            self._end(name, TaskState.FAILED, bound, f"every trial failed ({len(ended)} of {len(ended)}); "
                      f"last reason: {last.reason}")
            return

        exhausted = False
        budget_left = spec.max_jobs - len(trials) if spec.max_jobs > 0 else None
        if not out_of_time and (budget_left is None or budget_left > 0):
            free = spec.max_parallel - len(active)
            requested = free if budget_left is None else min(free, budget_left)
            if requested > 0:
                created, exhausted = self._propose(name, key, spec, trials, requested, bound)
                if created is None:
                    return
                if created:
                    self._dispatch_queued(name, created, bound, spec, fresh=True)
                    trials = trials + created
                    active = active + created
        budget_spent = budget_left is not None and len(trials) >= spec.max_jobs
        if not active and (out_of_time or exhausted or budget_spent):
            if out_of_time:
                why = "maxRunTime reached"
            elif exhausted:
                why = _EXHAUSTED_REASONS.get(spec.algorithm, "search space exhausted")
            else:
                why = "maxJobNum reached"
            self._end(name, TaskState.FINISHED, bound, why)

    def _spec(self, task: TaskRecord, key: tuple[str, float], bound) -> TaskSpec | None:
        spec = self._specs.get(key)
        if spec is not None:
            return spec
        try:
            spec = TaskSpec.parse(task.spec)
        except SpecError as exc:
            self._end(task.name, TaskState.FAILED, bound, f"invalid task definition: {exc}")
            return None
        self._specs[key] = spec
        return spec

    def _searcher(self, name: str, key: tuple[str, float], spec: TaskSpec) -> Searcher:
        searcher = self._searchers.get(key)
        if searcher is None:
            searcher = create_searcher(spec, self.plugin_factory)
            state = self.store.get_task(name).algo_state
            if state:
                searcher.set_state(state)
            # The scheduler comes first: an invalid early-stopping setting raises here, and a searcher cached
            # before that would hide the error from every later call.
            try:
                scheduler = searcher.scheduler() or _create_scheduler(spec)
            except OpenHPOError:
                close = getattr(searcher, "close", None)
                if callable(close):
                    close()
                raise
            self._searchers[key] = searcher
            self._schedulers[key] = scheduler
        return searcher

    def _end(self, name: str, state: TaskState, bound, reason: str) -> None:
        allowed = [TaskState.SUBMITTED, TaskState.RUNNING]
        if self.store.set_task_state(name, allowed, state, reason=reason, stop=""):
            level = bound.warning if state is TaskState.FAILED else bound.info
            level("task ended", state=state.value, reason=reason)
        for cache in (self._searchers, self._specs, self._schedulers, self._ended):
            for key in [k for k in cache if k[0] == name]:
                dropped = cache.pop(key, None)
                close = getattr(dropped, "close", None)
                if cache is self._searchers and callable(close):
                    close()  # a plugin searcher's host process

    # --- trials -------------------------------------------------------------------------------------------------

    def _load_trials(self, name: str, key: tuple[str, float], count: int) -> list[Trial]:
        """Return every trial of the task. Ended trials never change, so they are read from Redis once and cached."""
        ended = self._ended.setdefault(key, {})
        fresh = self.store.get_trials_by_id(name, [i for i in range(count) if i not in ended])
        for trial in fresh:
            if trial.state.ended:
                ended[trial.id] = trial
        merged = {**{t.id: t for t in fresh}, **ended}
        return [merged[i] for i in sorted(merged)]

    def _recover_lost(self, name: str, key: tuple[str, float], spec: TaskSpec, trials: list[Trial],
                      bound) -> list[Trial]:
        running = [t for t in trials if t.state is TrialState.RUNNING]
        if not running:
            return trials
        with self.store.redis.pipeline(transaction=False) as pipe:
            for trial in running:
                pipe.exists(self.store.lease_key(name, trial.id))
            alive = pipe.execute()
        changed = False
        for trial, has_lease in zip(running, alive):
            if has_lease:
                continue
            outcome = self.store.requeue_if_lost(name, trial.id, spec.max_retries + 1)
            if outcome == "requeued":
                bound.warning("trial worker lost; trial re-queued", trial=trial.id, attempt=trial.attempt + 1,
                              worker=trial.worker)
            elif outcome == "failed":
                bound.warning("trial worker lost; retries used up, trial failed", trial=trial.id,
                              attempts=trial.attempt)
            elif outcome == "stopped":
                bound.info("trial stopped while its worker was lost", trial=trial.id)
            changed = changed or outcome in ("requeued", "failed", "stopped")
        return self._load_trials(name, key, len(trials)) if changed else trials

    def _dispatch_queued(self, name: str, trials: list[Trial], bound, spec: TaskSpec | None = None,
                         fresh: bool = False) -> None:
        """Send a Celery message for each QUEUED attempt that has none yet.

        ``fresh`` trials were created in this pass, so they cannot have a message and Redis is not asked.
        """
        queued = [t for t in trials if t.state is TrialState.QUEUED]
        if not queued:
            return
        sent = [0] * len(queued) if fresh else self.store.dispatched_attempts(name, [t.id for t in queued])
        for trial, sent_attempt in zip(queued, sent):
            if sent_attempt == trial.attempt:
                continue
            if self._send_members(name, trial, spec, bound):
                self.store.mark_dispatched(name, trial.id, trial.attempt)
                continue
            self.app.send_task(RUN_TRIAL, kwargs={"task": name, "trial": trial.id, "attempt": trial.attempt,
                                                  "params": trial.config},
                               queue=self.settings.queue)
            self.store.mark_dispatched(name, trial.id, trial.attempt)
            bound.info("trial queued", trial=trial.id, attempt=trial.attempt, params=trial.config)

    def _send_members(self, name: str, trial: Trial, spec: TaskSpec | None, bound) -> bool:
        """Send one member message per worker slot when the trial is elastic (wider than one worker).

        The width is modelSpec's minWorkers and maxWorkers, or ``min_workers`` and ``max_workers`` in the trial's
        meta, so that an algorithm can give some trials (Hyperband's higher rungs, say) more workers. The members
        gather through Redis and run the trial together (see :mod:`edt.gang`).

        Returns:
            Whether the trial was sent as members; ``False`` leaves it to the single-worker message.
        """
        if spec is None:
            return False
        min_workers, max_workers = trial_width(spec, trial)
        if max_workers <= 1:
            return False
        for slot in range(max_workers):
            self.app.send_task(RUN_MEMBER, kwargs={"task": name, "trial": trial.id, "attempt": trial.attempt,
                                                   "slot": slot, "min_workers": min_workers,
                                                   "max_workers": max_workers, "params": trial.config},
                               queue=self.settings.queue)
        bound.info("elastic trial queued", trial=trial.id, attempt=trial.attempt, min_workers=min_workers,
                   max_workers=max_workers, params=trial.config)
        return True

    def _handle_stop(self, name: str, task: TaskRecord, trials: list[Trial], bound) -> None:
        for trial in trials:
            if not trial.state.ended:
                self.store.stop_trial(name, trial.id, "task stopped by the user")
        still_running = [t for t in self.store.get_trials(name, task.next_trial) if not t.state.ended]
        if task.stop == "force" or not still_running:
            self._end(name, TaskState.STOPPED, bound, "stopped by the user" + (" (force)" if task.stop == "force"
                                                                              else ""))

    def _early_stop(self, name: str, key: tuple[str, float], spec: TaskSpec, trials: list[Trial], bound) -> None:
        try:
            self._searcher(name, key, spec)
        except OpenHPOError:
            return  # reported by _propose
        scheduler = self._schedulers.get(key)
        if scheduler is None:
            return
        views = None
        for trial in trials:
            if trial.state is not TrialState.RUNNING or not trial.steps:
                continue
            seen_key = (name, trial.id, trial.attempt)
            if self._decided_steps.get(seen_key) == len(trial.steps):
                continue
            self._decided_steps[seen_key] = len(trial.steps)
            if views is None:
                views = [TrialView.from_trial(t, spec.objective, spec.objective_metric) for t in trials]
            view = next(v for v in views if v.id == trial.id)
            if scheduler.decide(view, views) is Decision.STOP:
                self.store.stop_trial(name, trial.id, "early stopped")
                bound.info("trial early stopped", trial=trial.id, steps=len(trial.steps))

    def _all_failing(self, spec: TaskSpec, ended: list[Trial]) -> bool:
        threshold = FAILURE_THRESHOLD if spec.max_jobs <= 0 else min(FAILURE_THRESHOLD, spec.max_jobs)
        return len(ended) >= threshold and all(t.state is TrialState.FAILED for t in ended)

    def _propose(self, name: str, key: tuple[str, float], spec: TaskSpec, trials: list[Trial], requested: int,
                 bound) -> tuple[list[Trial] | None, bool]:
        """Ask the searcher for up to ``requested`` configurations and create their trials.

        Returns the new trials (``None`` when the task failed) and whether the space is exhausted.
        """
        views = [TrialView.from_trial(t, spec.objective, spec.objective_metric) for t in trials]
        started = time.perf_counter()
        try:
            searcher = self._searcher(name, key, spec)
            suggestion = searcher.suggest(requested, views)
            if spec.algorithm not in BUILTIN_ALGORITHMS.values():  # a plugin's proposals are checked here
                suggestion.configs = [spec.space.check_config(c, f"algorithm {spec.algorithm} proposal {i}")
                                      for i, c in enumerate(suggestion.configs)]
            state: dict[str, Any] | None = searcher.get_state()
        except OpenHPOError as exc:
            self._end(name, TaskState.FAILED, bound, f"algorithm {spec.algorithm} failed: {exc}")
            return None, False
        except Exception as exc:
            bound.error("algorithm raised", algorithm=spec.algorithm, exc_info=True)
            self._end(name, TaskState.FAILED, bound, f"algorithm {spec.algorithm} failed: "
                      f"{type(exc).__name__}: {exc}")
            return None, False
        elapsed_ms = (time.perf_counter() - started) * 1000
        configs = suggestion.configs[:requested]
        if state is not None:
            self.store.save_algo_state(name, state)
        metas = suggestion.metas[:len(configs)]
        ids = self.store.create_trials(name, list(zip(configs, metas)))
        if configs:
            bound.debug("configurations proposed", count=len(configs), ms=round(elapsed_ms, 2))
        # The records as create_trials stored them, without reading them back.
        now = time.time()
        created = [Trial(id=i, config=dict(c), meta=dict(m), created=now) for i, c, m in zip(ids, configs, metas)]
        return created, suggestion.exhausted and not configs
