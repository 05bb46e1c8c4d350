"""The Redis store of tasks, trials, leases, algorithm state and code archives.

Contract:

* Every state change is one atomic Redis operation (a Lua script or a MULTI block). Scripts touch only scalar
  fields; JSON documents are written whole by Python, so floats keep full precision.
* Trial changes are guarded by the attempt number: a worker whose attempt is no longer current cannot change the
  trial, so a result is recorded once, whichever attempt wrote it.
* Legal trial changes: QUEUED → RUNNING (``claim``); RUNNING → FINISHED | FAILED | STOPPED (``finish``);
  RUNNING → QUEUED with attempt + 1 or FAILED when the lease expired (``requeue_if_lost``); QUEUED → STOPPED and a
  stop request on a RUNNING trial (``stop_trial``).
* Task changes go through ``set_task_state`` with the states they may start from.

Keys, under a configurable prefix ``P``::

    P:tasks                  sorted set of task names by creation time
    P:active                 set of task names the coordinator must drive
    P:task:{name}            hash: spec, state, creator, created, started, ended, code, next_trial, reason, stop,
                             algo_state
    P:trial:{name}:{id}      hash: config, meta, state, attempt, metric, metrics, steps, reason, exit_code, worker,
                             created, started, ended, dispatched, stop, usage, result_dir
    P:lease:{name}:{id}      string "attempt:worker" with a TTL, renewed by the worker's heartbeat
    P:events                 stream of trial events; the coordinator blocks on it to wake up early
    P:code:{sha256}          bytes of an uploaded code archive (expires while no task uses it)
    P:code-users:{sha256}    set of the tasks that use that archive
    P:log:{name}:{id}        the latest attempt's training log (capped), for readers on other hosts
    P:coordinator            lock held by the coordinator that drives tasks
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable

import redis

from hpo_core.errors import StateConflictError, TaskExistsError, TaskNotFoundError
from hpo_core.records import TaskState, Trial, TrialState

#: Seconds an uploaded code archive that no task uses is kept (a day), e.g. after ``POST /code``.
UNUSED_CODE_TTL = 24 * 3600
#: Most bytes of a trial's log kept in Redis; the full log stays in the worker's LOG_DIR.
LOG_CAP_BYTES = 1024 * 1024

_CLAIM = """
local s = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if not s[1] then return 'missing' end
if s[2] ~= ARGV[1] then return 'stale' end
if s[1] ~= 'QUEUED' then return s[1] end
redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'worker', ARGV[2], 'started', ARGV[3], 'result_dir', ARGV[5])
redis.call('SET', KEYS[2], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'task', ARGV[6], 'trial', ARGV[7], 'event', 'RUNNING')
local t = redis.call('HMGET', KEYS[1], 'config', 'meta')
local task = redis.call('HMGET', KEYS[4], 'created', 'code')
return {'ok', t[1], t[2], task[1] or '', task[2] or ''}
"""

_HEARTBEAT = """
local s = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'stop')
if s[1] ~= 'RUNNING' or s[2] ~= ARGV[1] then return 'lost' end
local holder = redis.call('GET', KEYS[2])
local mine = ARGV[1] .. ':' .. ARGV[2]
if holder and holder ~= mine then return 'lost' end
redis.call('SET', KEYS[2], mine, 'PX', ARGV[3])
if s[3] and s[3] ~= '' then return 'stop' end
return 'ok'
"""

_FINISH = """
local s = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'stop')
if s[2] ~= ARGV[1] then return 'stale' end
if s[1] ~= 'RUNNING' then return s[1] end
local state = ARGV[2]
local reason = ARGV[5]
if s[3] and s[3] ~= '' and state ~= 'FINISHED' then
  state = 'STOPPED'
  reason = s[3]
end
redis.call('HSET', KEYS[1], 'state', state, 'metric', ARGV[3], 'metrics', ARGV[4], 'reason', reason,
           'exit_code', ARGV[6], 'ended', ARGV[7], 'usage', ARGV[8], 'steps', ARGV[9])
redis.call('DEL', KEYS[2])
if ARGV[12] ~= '' then redis.call('SET', KEYS[4], ARGV[12]) end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', 10000, '*', 'task', ARGV[10], 'trial', ARGV[11], 'event', state)
return 'ok'
"""

_REQUEUE_IF_LOST = """
local s = redis.call('HMGET', KEYS[1], 'state', 'attempt', 'stop')
if s[1] ~= 'RUNNING' then return 'skip' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'alive' end
if s[3] and s[3] ~= '' then
  redis.call('HSET', KEYS[1], 'state', 'STOPPED', 'reason', s[3], 'ended', ARGV[2])
  return 'stopped'
end
local attempt = tonumber(s[2])
if attempt >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'FAILED', 'ended', ARGV[2],
             'reason', 'worker lost on attempt ' .. attempt .. ' of ' .. ARGV[1])
  return 'failed'
end
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'attempt', tostring(attempt + 1), 'dispatched', '0',
           'worker', '', 'started', '', 'steps', '[]')
return 'requeued'
"""

_STOP_TRIAL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'QUEUED' then
  redis.call('HSET', KEYS[1], 'state', 'STOPPED', 'reason', ARGV[1], 'ended', ARGV[2])
  return 'stopped'
end
if state == 'RUNNING' then
  redis.call('HSET', KEYS[1], 'stop', ARGV[1])
  return 'stopping'
end
return state
"""

_REPORT_STEPS = """
local s = redis.call('HMGET', KEYS[1], 'state', 'attempt')
if s[1] ~= 'RUNNING' or s[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'steps', ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'task', ARGV[3], 'trial', ARGV[4], 'event', 'STEP')
return 1
"""

_SET_TASK_STATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
for allowed in string.gmatch(ARGV[1], '[^,]+') do
  if allowed == state then
    redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(ARGV, 3))
    if ARGV[2] == 'FINISHED' or ARGV[2] == 'FAILED' or ARGV[2] == 'STOPPED' then
      redis.call('SREM', KEYS[2], KEYS[3])
    else
      redis.call('SADD', KEYS[2], KEYS[3])
    end
    return 'ok'
  end
end
return state
"""

_CREATE_TRIALS = """
local state, stop = unpack(redis.call('HMGET', KEYS[1], 'state', 'stop'))
if state ~= 'RUNNING' or (stop and stop ~= '') then return {} end
local ids = {}
local n = (#ARGV - 2) / 2
for i = 1, n do
  local id = redis.call('HINCRBY', KEYS[1], 'next_trial', 1) - 1
  redis.call('HSET', ARGV[1] .. id, 'id', id, 'config', ARGV[2 + 2 * i - 1], 'meta', ARGV[2 + 2 * i],
             'state', 'QUEUED', 'attempt', '1', 'created', ARGV[2], 'dispatched', '0', 'steps', '[]')
  table.insert(ids, id)
end
return ids
"""


def _now() -> str:
    return repr(time.time())


@dataclass
class Claim:
    """The result of :meth:`RedisStore.claim`."""

    status: str
    config: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    task_created: float = 0.0
    code: str | None = None


@dataclass
class TaskRecord:
    """A task as stored: its definition (the request body), state and bookkeeping."""

    name: str
    spec: dict[str, Any]
    state: TaskState
    creator: str
    created: float
    started: float | None
    ended: float | None
    code: str | None
    next_trial: int
    reason: str | None
    stop: str | None
    algo_state: dict[str, Any] | None


class RedisStore:
    """Tasks, trials, leases and code archives in Redis, under ``prefix``.

    Args:
        client: a ``redis.Redis`` client; responses are bytes (``decode_responses=False``) because code archives
            are binary.
        prefix: the key prefix; tests use their own.
    """

    def __init__(self, client: redis.Redis, prefix: str = "openhpo"):
        self.redis = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._finish = client.register_script(_FINISH)
        self._requeue = client.register_script(_REQUEUE_IF_LOST)
        self._stop_trial = client.register_script(_STOP_TRIAL)
        self._report_steps = client.register_script(_REPORT_STEPS)
        self._set_task_state = client.register_script(_SET_TASK_STATE)
        self._create_trials = client.register_script(_CREATE_TRIALS)

    @classmethod
    def from_url(cls, url: str, prefix: str = "openhpo") -> "RedisStore":
        return cls(redis.Redis.from_url(url), prefix)

    # --- keys ---------------------------------------------------------------------------------------------------

    def _k(self, *parts: Any) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def task_key(self, name: str) -> str:
        return self._k("task", name)

    def trial_key(self, name: str, trial_id: int) -> str:
        return self._k("trial", name, trial_id)

    def lease_key(self, name: str, trial_id: int) -> str:
        return self._k("lease", name, trial_id)

    @property
    def events_key(self) -> str:
        return self._k("events")

    # --- tasks --------------------------------------------------------------------------------------------------

    def create_task(self, name: str, spec: dict[str, Any], creator: str, code: str | None = None) -> None:
        """Store a new task in SUBMITTED state.

        Raises:
            TaskExistsError: a task of that name exists.
        """
        key = self.task_key(name)
        created = time.time()
        fields = {"name": name, "spec": json.dumps(spec), "state": TaskState.SUBMITTED.value, "creator": creator,
                  "created": repr(created), "code": code or "", "next_trial": 0, "stop": "", "reason": ""}
        # HSETNX on the name field makes creation atomic against a concurrent submit of the same name.
        if not self.redis.hsetnx(key, "name", name):
            raise TaskExistsError(name)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.zadd(self._k("tasks"), {name: created})
            pipe.sadd(self._k("active"), name)
            if code:
                pipe.sadd(self._k("code-users", code), name)
                pipe.persist(self._k("code", code))
            pipe.xadd(self.events_key, {"task": name, "trial": "", "event": "SUBMITTED"}, maxlen=10000)
            pipe.execute()

    def get_task(self, name: str) -> TaskRecord:
        raw = self.redis.hgetall(self.task_key(name))
        if not raw or b"state" not in raw:
            raise TaskNotFoundError(name)
        return self._task_from_hash(raw)

    @staticmethod
    def _task_from_hash(raw: dict[bytes, bytes]) -> TaskRecord:
        def text(field: str) -> str | None:
            value = raw.get(field.encode())
            return value.decode() if value else None

        def number(field: str) -> float | None:
            value = text(field)
            return float(value) if value else None

        algo_state = text("algo_state")
        return TaskRecord(name=text("name") or "", spec=json.loads(text("spec") or "{}"),
                          state=TaskState(text("state")), creator=text("creator") or "",
                          created=number("created") or 0.0, started=number("started"), ended=number("ended"),
                          code=text("code"), next_trial=int(text("next_trial") or 0), reason=text("reason"),
                          stop=text("stop"), algo_state=json.loads(algo_state) if algo_state else None)

    def list_tasks(self) -> list[str]:
        return [n.decode() for n in self.redis.zrange(self._k("tasks"), 0, -1)]

    def active_tasks(self) -> list[str]:
        return sorted(n.decode() for n in self.redis.smembers(self._k("active")))

    def set_task_state(self, name: str, allowed: Iterable[TaskState], state: TaskState, **fields: Any) -> bool:
        """Move a task to ``state`` if it is in one of ``allowed``; set ``fields`` in the same step.

        Returns:
            ``True`` when the change was made.

        Raises:
            TaskNotFoundError: no such task.
        """
        args: list[Any] = [",".join(s.value for s in allowed), state.value]
        if state is TaskState.RUNNING and "started" not in fields:
            fields["started"] = _now()
        if state.ended and "ended" not in fields:
            fields["ended"] = _now()
        for key, value in fields.items():
            args.extend([key, "" if value is None else value])
        result = self._set_task_state(keys=[self.task_key(name), self._k("active"), name], args=args)
        if result == b"missing":
            raise TaskNotFoundError(name)
        return result == b"ok"

    def request_stop(self, name: str, force: bool = False) -> None:
        """Ask the coordinator to stop a task.

        Raises:
            TaskNotFoundError: no such task.
            StateConflictError: the task has ended already (WMLA answers 400 with "already stopped").
        """
        task = self.get_task(name)
        if task.state.ended:
            raise StateConflictError(f"Model tuning {name} is already stopped.")
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.task_key(name), "stop", "force" if force else "graceful")
            pipe.sadd(self._k("active"), name)
            pipe.xadd(self.events_key, {"task": name, "trial": "", "event": "STOP"}, maxlen=10000)
            pipe.execute()

    def restart_task(self, name: str) -> None:
        """Put a STOPPED or FAILED task back in the coordinator's hands; its finished trials are kept.

        Raises:
            StateConflictError: the task is not STOPPED or FAILED.
        """
        if not self.set_task_state(name, [TaskState.STOPPED, TaskState.FAILED], TaskState.SUBMITTED,
                                   stop="", reason="", ended=""):
            state = self.get_task(name).state.value
            raise StateConflictError(f"task {name} is {state}; only a STOPPED or FAILED task can be restarted")

    def delete_task(self, name: str) -> None:
        """Delete an ended task with its trials.

        Raises:
            StateConflictError: the task is still SUBMITTED or RUNNING (WMLA answers 409); stop it first.
        """
        task = self.get_task(name)
        if not task.state.ended:
            raise StateConflictError(f"task {name} is {task.state.value}; stop it before deleting it")
        keys = [self.task_key(name)]
        for trial_id in range(task.next_trial):
            keys += [self.trial_key(name, trial_id), self.lease_key(name, trial_id), self._k("log", name, trial_id)]
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            pipe.zrem(self._k("tasks"), name)
            pipe.srem(self._k("active"), name)
            if task.code:
                pipe.srem(self._k("code-users", task.code), name)
                pipe.scard(self._k("code-users", task.code))
            results = pipe.execute()
        if task.code and results[-1] == 0:
            # NOTE: a submit that reuses this archive between the two steps keeps a task whose code is gone;
            # its trials fail with "code archive ... is not in the store" and the user submits again.
            self.redis.delete(self._k("code", task.code))

    def save_algo_state(self, name: str, state: dict[str, Any] | None) -> None:
        self.redis.hset(self.task_key(name), "algo_state", json.dumps(state) if state is not None else "")

    # --- trials -------------------------------------------------------------------------------------------------

    def create_trials(self, name: str, proposals: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[int]:
        """Create QUEUED trials for ``(config, meta)`` pairs; nothing is created unless the task is RUNNING and
        no stop was requested. Returns the new trial ids."""
        if not proposals:
            return []
        args: list[Any] = [self._k("trial", name, ""), _now()]
        for config, meta in proposals:
            args += [json.dumps(config), json.dumps(meta)]
        ids = self._create_trials(keys=[self.task_key(name)], args=args)
        return [int(i) for i in ids]

    def mark_dispatched(self, name: str, trial_id: int, attempt: int) -> None:
        self.redis.hset(self.trial_key(name, trial_id), mapping={"dispatched": "1", "dispatched_attempt": attempt})

    def get_trial(self, name: str, trial_id: int) -> Trial:
        raw = self.redis.hgetall(self.trial_key(name, trial_id))
        if not raw:
            raise KeyError(f"task {name} has no trial {trial_id}")
        return self._trial_from_hash(raw)

    def get_trials(self, name: str, count: int | None = None) -> list[Trial]:
        """Return every trial of a task, in id order, read in one round trip."""
        if count is None:
            value = self.redis.hget(self.task_key(name), "next_trial")
            count = int(value) if value else 0
        with self.redis.pipeline(transaction=False) as pipe:
            for trial_id in range(count):
                pipe.hgetall(self.trial_key(name, trial_id))
            raws = pipe.execute()
        return [self._trial_from_hash(raw) for raw in raws if raw]

    def get_trials_by_id(self, name: str, trial_ids: Iterable[int]) -> list[Trial]:
        """Return the trials with these ids, in one round trip; ids without a trial are left out."""
        with self.redis.pipeline(transaction=False) as pipe:
            for trial_id in trial_ids:
                pipe.hgetall(self.trial_key(name, trial_id))
            raws = pipe.execute()
        return [self._trial_from_hash(raw) for raw in raws if raw]

    def dispatched_attempts(self, name: str, trial_ids: list[int]) -> list[int]:
        """For each trial, the attempt whose Celery message was last sent (0 for none), in one round trip."""
        with self.redis.pipeline(transaction=False) as pipe:
            for trial_id in trial_ids:
                pipe.hget(self.trial_key(name, trial_id), "dispatched_attempt")
            values = pipe.execute()
        return [int(v) if v else 0 for v in values]

    def trial_extras(self, name: str, trial_id: int) -> dict[str, str]:
        """Fields of a trial that the Trial record leaves out (dispatched, stop, result_dir)."""
        raw = self.redis.hmget(self.trial_key(name, trial_id), ["dispatched", "stop", "result_dir",
                                                                 "dispatched_attempt"])
        keys = ["dispatched", "stop", "result_dir", "dispatched_attempt"]
        return {k: (v.decode() if v else "") for k, v in zip(keys, raw)}

    @staticmethod
    def _trial_from_hash(raw: dict[bytes, bytes]) -> Trial:
        def text(field: str) -> str:
            value = raw.get(field.encode())
            return value.decode() if value else ""

        def number(field: str) -> float | None:
            value = text(field)
            return float(value) if value else None

        exit_code = text("exit_code")
        return Trial(id=int(text("id")), config=json.loads(text("config") or "{}"), state=TrialState(text("state")),
                     attempt=int(text("attempt") or 1), metric=number("metric"),
                     metrics=json.loads(text("metrics") or "{}"), steps=json.loads(text("steps") or "[]"),
                     reason=text("reason") or None, exit_code=int(exit_code) if exit_code else None,
                     worker=text("worker") or None, created=number("created"), started=number("started"),
                     ended=number("ended"), meta=json.loads(text("meta") or "{}"),
                     usage=json.loads(text("usage") or "{}"))

    def claim(self, name: str, trial_id: int, attempt: int, worker: str, lease_ttl: float,
              result_dir: str = "") -> "Claim":
        """Take a QUEUED attempt for ``worker`` and start its lease.

        Returns:
            A :class:`Claim` whose ``status`` is ``"ok"``; ``"stale"`` when the attempt is not current;
            ``"missing"``; or the trial's state when it is not QUEUED (another worker runs it, or it has ended).
            An ``"ok"`` claim carries the trial's configuration and meta and the task's creation time and code hash,
            which saves the worker two round trips.
        """
        result = self._claim(keys=[self.trial_key(name, trial_id), self.lease_key(name, trial_id), self.events_key,
                                   self.task_key(name)],
                             args=[attempt, worker, _now(), int(lease_ttl * 1000), result_dir, name, trial_id])
        if not isinstance(result, list):
            return Claim(result.decode())
        _status, config, meta, created, code = (v.decode() if isinstance(v, bytes) else v for v in result)
        return Claim("ok", json.loads(config or "{}"), json.loads(meta or "{}"), float(created or 0.0),
                     code or None)

    def heartbeat(self, name: str, trial_id: int, attempt: int, worker: str, lease_ttl: float) -> str:
        """Renew the lease. Returns ``"ok"``, ``"stop"`` (a stop was requested) or ``"lost"`` (the attempt is no
        longer this worker's: it must kill its process and write nothing)."""
        result = self._heartbeat(keys=[self.trial_key(name, trial_id), self.lease_key(name, trial_id)],
                                 args=[attempt, worker, int(lease_ttl * 1000)])
        return result.decode()

    def report_steps(self, name: str, trial_id: int, attempt: int, steps: list[dict[str, Any]]) -> bool:
        """Replace the intermediate results of a running attempt; ``False`` when the attempt is not current."""
        result = self._report_steps(keys=[self.trial_key(name, trial_id), self.events_key],
                                    args=[attempt, json.dumps(steps), name, trial_id])
        return bool(result)

    def finish(self, name: str, trial_id: int, attempt: int, state: TrialState, metric: float | None = None,
               metrics: dict[str, Any] | None = None, reason: str | None = None, exit_code: int | None = None,
               usage: dict[str, Any] | None = None, steps: list[dict[str, Any]] | None = None,
               log: bytes | None = None) -> str:
        """Record the end of a running attempt, once. Returns ``"ok"`` or why nothing was written.

        A trial with a stop request that did not finish normally ends STOPPED with the stop reason. ``log``, the
        tail of the training log, is stored in the same step.
        """
        result = self._finish(
            keys=[self.trial_key(name, trial_id), self.lease_key(name, trial_id), self.events_key,
                  self._k("log", name, trial_id)],
            args=[attempt, state.value, "" if metric is None else repr(float(metric)), json.dumps(metrics or {}),
                  reason or "", "" if exit_code is None else exit_code, _now(), json.dumps(usage or {}),
                  json.dumps(steps or []), name, trial_id, (log or b"")[-LOG_CAP_BYTES:]])
        return result.decode()

    def requeue_if_lost(self, name: str, trial_id: int, max_attempts: int) -> str:
        """Re-queue a RUNNING attempt whose lease expired, or fail it after ``max_attempts``."""
        result = self._requeue(keys=[self.trial_key(name, trial_id), self.lease_key(name, trial_id)],
                               args=[max_attempts, _now()])
        return result.decode()

    def stop_trial(self, name: str, trial_id: int, reason: str) -> str:
        """Stop a QUEUED trial now, or ask the worker of a RUNNING one to stop it."""
        result = self._stop_trial(keys=[self.trial_key(name, trial_id)], args=[reason, _now()])
        return result.decode()

    # --- logs ---------------------------------------------------------------------------------------------------

    def set_log(self, name: str, trial_id: int, text: bytes) -> None:
        self.redis.set(self._k("log", name, trial_id), text[-LOG_CAP_BYTES:])

    def get_log(self, name: str, trial_id: int) -> bytes | None:
        return self.redis.get(self._k("log", name, trial_id))

    # --- code archives ------------------------------------------------------------------------------------------

    def put_code(self, data: bytes) -> str:
        """Store a code archive once by its SHA-256; returns the hash.

        An archive that no task uses expires after :data:`UNUSED_CODE_TTL` seconds; ``create_task`` keeps it for
        as long as a task refers to it, and ``delete_task`` removes it with the last such task.
        """
        digest = hashlib.sha256(data).hexdigest()
        key = self._k("code", digest)
        if not self.redis.set(key, data, nx=True, ex=UNUSED_CODE_TTL):
            if not self.redis.exists(self._k("code-users", digest)):
                self.redis.expire(key, UNUSED_CODE_TTL)
        return digest

    def get_code(self, digest: str) -> bytes | None:
        return self.redis.get(self._k("code", digest))

    # --- events and the coordinator lock ------------------------------------------------------------------------

    def wait_events(self, last_id: str, timeout: float) -> tuple[str, list[dict[str, str]]]:
        """Block up to ``timeout`` seconds for events after ``last_id``; returns the new last id and the events."""
        reply = self.redis.xread({self.events_key: last_id}, block=max(1, int(timeout * 1000)), count=1000)
        events = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                last_id = entry_id.decode()
                events.append({k.decode(): v.decode() for k, v in fields.items()})
        return last_id, events

    def latest_event_id(self) -> str:
        entries = self.redis.xrevrange(self.events_key, count=1)
        return entries[0][0].decode() if entries else "0-0"

    def acquire_lock(self, owner: str, ttl: float) -> bool:
        """Take or renew the coordinator lock for ``owner``."""
        key = self._k("coordinator")
        if self.redis.set(key, owner, nx=True, px=int(ttl * 1000)):
            return True
        with self.redis.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) != owner.encode():
                    pipe.unwatch()
                    return False
                pipe.multi()
                pipe.pexpire(key, int(ttl * 1000))
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def release_lock(self, owner: str) -> None:
        key = self._k("coordinator")
        if self.redis.get(key) == owner.encode():
            self.redis.delete(key)
