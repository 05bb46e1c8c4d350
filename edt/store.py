"""Redis records of elastic trial gangs, beside the trial records of :mod:`broker.store`.

A gang is the set of members that run one attempt of a wide trial together. Its records live under the
:class:`~broker.store.RedisStore`'s prefix ``P`` and are keyed by the gang id ``{task}:{trial}:{attempt}``::

    P:edt:gang:{id}          hash: phase (gathering | running | done), min, max, gen, host, endpoint, owner,
                             restarts, replacements, min_reached, formed, reason
    P:edt:members:{id}       hash: slot -> JSON of the member holding it (id, worker, hostname, pid, launcher_pid)
    P:edt:lease:{id}:{slot}  string: the id of the member holding the slot, with a TTL renewed by its heartbeat
    P:edt:usage:{id}         hash: slot -> JSON of that member's device usage
    P:edt:gathering          sorted set of the ids of gathering gangs, scored by their trial's creation time

Every change is one Lua script, so members racing on the same gang always see a consistent record. A member
counts as present while its slot lease lives; each script that counts members drops the ones whose lease
expired. The gang's phase only moves forward: gathering → running (once, when it forms) → done.
Generations (``gen``) number the rendezvous stores of a running gang: a new host takes over with ``gen + 1``.
The records expire ``keep_seconds`` after their last renewal by the host, so ended gangs clean up after
themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from broker.store import RedisStore

#: Seconds the gang records live after their last renewal.
KEEP_SECONDS = 24 * 3600

_LIVE_MEMBERS = """
local function live_members(members_key, lease_prefix)
  local live = 0
  for _, slot in ipairs(redis.call('HKEYS', members_key)) do
    if redis.call('EXISTS', lease_prefix .. slot) == 1 then
      live = live + 1
    else
      redis.call('HDEL', members_key, slot)
    end
  end
  return live
end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# KEYS: gang, members, gathering. ARGV: slot, member id, info, lease ms, min, max, priority, gang id, key root,
# keep seconds.
_JOIN = _LIVE_MEMBERS + """
local phase = redis.call('HGET', KEYS[1], 'phase')
if phase == 'done' then return {'done'} end
local lease = ARGV[9] .. 'lease:' .. ARGV[8] .. ':' .. ARGV[1]
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[2] then return {'taken'} end
if not phase then
  phase = 'gathering'
  redis.call('HSET', KEYS[1], 'phase', phase, 'min', ARGV[5], 'max', ARGV[6], 'gen', '0', 'host', '',
             'endpoint', '', 'owner', '', 'restarts', '0', 'replacements', '0', 'created', tostring(now()))
end
redis.call('SET', lease, ARGV[2], 'PX', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if phase == 'gathering' then redis.call('ZADD', KEYS[3], ARGV[7], ARGV[8]) end
redis.call('EXPIRE', KEYS[1], ARGV[10])
redis.call('EXPIRE', KEYS[2], ARGV[10])
return {phase}
"""

# KEYS: gang, members, gathering. ARGV: slot, member id, info, lease ms, settle seconds, gang id, key root, owner.
_GATHER = _LIVE_MEMBERS + """
local lease = ARGV[7] .. 'lease:' .. ARGV[6] .. ':' .. ARGV[1]
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[2] then return {'lost'} end
redis.call('SET', lease, ARGV[2], 'PX', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local g = redis.call('HMGET', KEYS[1], 'phase', 'min', 'max', 'min_reached')
if g[1] ~= 'gathering' then return {g[1] or 'missing'} end
local live = live_members(KEYS[2], ARGV[7] .. 'lease:' .. ARGV[6] .. ':')
local t = now()
if live >= tonumber(g[2]) then
  local reached = tonumber(g[4] or '')
  if not reached then
    redis.call('HSET', KEYS[1], 'min_reached', tostring(t))
    reached = t
  end
  if live >= tonumber(g[3]) or t - reached >= tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[1], 'phase', 'running', 'gen', '1', 'host', ARGV[1], 'endpoint', '', 'owner', ARGV[8],
               'formed', tostring(t), 'formed_size', tostring(live))
    redis.call('ZREM', KEYS[3], ARGV[6])
    return {'host', tostring(live)}
  end
  return {'wait', tostring(live)}
end
if g[4] then redis.call('HDEL', KEYS[1], 'min_reached') end
-- An older gang that is still short of its minimum has the first claim on free worker slots.
local rank = redis.call('ZRANK', KEYS[3], ARGV[6])
if rank and rank > 0 then
  for _, other in ipairs(redis.call('ZRANGE', KEYS[3], 0, rank - 1)) do
    local n = live_members(ARGV[7] .. 'members:' .. other, ARGV[7] .. 'lease:' .. other .. ':')
    local other_min = tonumber(redis.call('HGET', ARGV[7] .. 'gang:' .. other, 'min') or '0')
    if n == 0 then
      redis.call('ZREM', KEYS[3], other)
    elseif n < other_min then
      return {'yield', tostring(live), other}
    end
  end
end
return {'wait', tostring(live)}
"""

# KEYS: gang, members, gathering. ARGV: slot, member id, gang id, key root.
_LEAVE = _LIVE_MEMBERS + """
local lease_prefix = ARGV[4] .. 'lease:' .. ARGV[3] .. ':'
if redis.call('GET', lease_prefix .. ARGV[1]) == ARGV[2] then redis.call('DEL', lease_prefix .. ARGV[1]) end
local info = redis.call('HGET', KEYS[2], ARGV[1])
if info and cjson.decode(info)['id'] == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
if redis.call('HGET', KEYS[1], 'phase') == 'gathering' and live_members(KEYS[2], lease_prefix) == 0 then
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[1], 'min_reached')
end
return 'ok'
"""

# KEYS: members. ARGV: slot, member id, info, lease ms, gang id, key root.
_RENEW = """
local lease = ARGV[6] .. 'lease:' .. ARGV[5] .. ':' .. ARGV[1]
local holder = redis.call('GET', lease)
if holder and holder ~= ARGV[2] then return 'lost' end
redis.call('SET', lease, ARGV[2], 'PX', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 'ok'
"""

# KEYS: gang. ARGV: expected generation, slot, gang id, key root, max restarts.
_TAKE_OVER = """
local g = redis.call('HMGET', KEYS[1], 'phase', 'gen', 'host')
if g[1] ~= 'running' then return {g[1] or 'missing', g[2] or ''} end
if g[2] ~= ARGV[1] then return {'moved', g[2]} end
if g[3] ~= '' and redis.call('EXISTS', ARGV[4] .. 'lease:' .. ARGV[3] .. ':' .. g[3]) == 1 then
  return {'alive', g[2]}
end
if tonumber(redis.call('HGET', KEYS[1], 'restarts')) >= tonumber(ARGV[5]) then return {'exhausted', g[2]} end
redis.call('HINCRBY', KEYS[1], 'restarts', 1)
local gen = tostring(tonumber(g[2]) + 1)
redis.call('HSET', KEYS[1], 'gen', gen, 'host', ARGV[2], 'endpoint', '')
return {'host', gen}
"""

# KEYS: gang. ARGV: generation, slot, endpoint.
_PUBLISH = """
local g = redis.call('HMGET', KEYS[1], 'phase', 'gen', 'host')
if g[1] ~= 'running' or g[2] ~= ARGV[1] or g[3] ~= ARGV[2] then return 'moved' end
redis.call('HSET', KEYS[1], 'endpoint', ARGV[3])
return 'ok'
"""

# KEYS: gang, members, usage. ARGV: gang id, key root, max replacements, keep seconds.
_PRUNE = """
local lease_prefix = ARGV[2] .. 'lease:' .. ARGV[1] .. ':'
local replace, dropped = {}, {}
for _, slot in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('EXISTS', lease_prefix .. slot) == 0 then
    redis.call('HDEL', KEYS[2], slot)
    if tonumber(redis.call('HGET', KEYS[1], 'replacements') or '0') < tonumber(ARGV[3]) then
      redis.call('HINCRBY', KEYS[1], 'replacements', 1)
      table.insert(replace, slot)
    else
      table.insert(dropped, slot)
    end
  end
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return {replace, dropped}
"""

# KEYS: gang, gathering. ARGV: gang id, reason.
_END = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'phase', 'done', 'reason', ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
return 'ok'
"""


@dataclass(frozen=True)
class GangState:
    """A gang record as read from Redis; ``host`` is the host's slot, ``None`` before the gang forms."""

    phase: str
    min_workers: int
    max_workers: int
    generation: int
    host: int | None
    endpoint: str
    owner: str
    restarts: int
    replacements: int
    formed_size: int
    reason: str


@dataclass(frozen=True)
class GatherStatus:
    """One check of a gathering gang: ``state`` is ``host`` (the gang formed and this member hosts it),
    ``wait``, ``yield`` (an older gang short of members needs the slot), ``lost`` (another member has the
    slot), or the gang's phase when it is no longer gathering."""

    state: str
    live: int = 0
    older: str | None = None


def gang_id(task: str, trial: int, attempt: int) -> str:
    """Return the id of the gang that runs attempt ``attempt`` of trial ``trial``; task names contain no ``:``."""
    return f"{task}:{trial}:{attempt}"


class GangStore:
    """Gang records next to the trial records of ``store``, under the same key prefix."""

    def __init__(self, store: RedisStore):
        self.store = store
        self.redis = store.redis
        self.root = f"{store.prefix}:edt:"
        self._join = self.redis.register_script(_JOIN)
        self._gather = self.redis.register_script(_GATHER)
        self._leave = self.redis.register_script(_LEAVE)
        self._renew = self.redis.register_script(_RENEW)
        self._take_over = self.redis.register_script(_TAKE_OVER)
        self._publish = self.redis.register_script(_PUBLISH)
        self._prune = self.redis.register_script(_PRUNE)
        self._end = self.redis.register_script(_END)

    # --- keys ---------------------------------------------------------------------------------------------------

    def gang_key(self, gid: str) -> str:
        return f"{self.root}gang:{gid}"

    def members_key(self, gid: str) -> str:
        return f"{self.root}members:{gid}"

    def lease_key(self, gid: str, slot: int) -> str:
        return f"{self.root}lease:{gid}:{slot}"

    def usage_key(self, gid: str) -> str:
        return f"{self.root}usage:{gid}"

    @property
    def gathering_key(self) -> str:
        return f"{self.root}gathering"

    # --- changes ------------------------------------------------------------------------------------------------

    def join(self, gid: str, slot: int, member_id: str, info: dict[str, Any], lease_ttl: float, min_workers: int,
             max_workers: int, priority: float) -> str:
        """Take ``slot`` of the gang, creating the gang record on first use.

        Returns:
            The gang's phase (``gathering``, ``running``), ``done`` when the gang has ended, or ``taken`` when a
            live member has the slot.
        """
        info = {**info, "id": member_id}
        result = self._join(keys=[self.gang_key(gid), self.members_key(gid), self.gathering_key],
                            args=[slot, member_id, json.dumps(info), int(lease_ttl * 1000), min_workers, max_workers,
                                  repr(float(priority)), gid, self.root, KEEP_SECONDS])
        return result[0].decode()

    def gather(self, gid: str, slot: int, member_id: str, info: dict[str, Any], lease_ttl: float, settle: float,
               owner: str) -> GatherStatus:
        """Renew this member's slot lease and check whether the gang can form.

        The gang forms when its live members reach ``max``, or reach ``min`` and ``settle`` seconds passed since
        they first did. The member whose check forms the gang becomes the host of generation 1 and sets
        ``owner``, the holder name of the trial lease that every member renews.
        """
        info = {**info, "id": member_id}
        result = self._gather(keys=[self.gang_key(gid), self.members_key(gid), self.gathering_key],
                              args=[slot, member_id, json.dumps(info), int(lease_ttl * 1000), settle, gid, self.root,
                                    owner])
        state = result[0].decode()
        live = int(result[1]) if len(result) > 1 else 0
        older = result[2].decode() if len(result) > 2 else None
        return GatherStatus(state, live, older)

    def leave(self, gid: str, slot: int, member_id: str) -> None:
        """Give the slot up, if this member still has it. A gathering gang left empty stops gathering."""
        self._leave(keys=[self.gang_key(gid), self.members_key(gid), self.gathering_key],
                    args=[slot, member_id, gid, self.root])

    def renew(self, gid: str, slot: int, member_id: str, info: dict[str, Any], lease_ttl: float) -> bool:
        """Renew the slot lease of a running member; ``False`` when another member took the slot over."""
        info = {**info, "id": member_id}
        result = self._renew(keys=[self.members_key(gid)],
                             args=[slot, member_id, json.dumps(info), int(lease_ttl * 1000), gid, self.root])
        return result == b"ok"

    def take_over(self, gid: str, generation: int, slot: int, max_restarts: int) -> tuple[str, int]:
        """Become the host of generation ``generation + 1`` when the host of ``generation`` lost its lease.

        Returns:
            ``(outcome, generation)``. The outcome is ``host`` with the new generation, or ``alive`` when the
            host still has its lease, or ``moved`` when another member took over already (with the current
            generation). It is ``exhausted`` when the gang replaced its host ``max_restarts`` times already, and
            the gang's phase when the gang is not running.
        """
        result = self._take_over(keys=[self.gang_key(gid)], args=[generation, slot, gid, self.root, max_restarts])
        outcome = result[0].decode()
        current = result[1].decode() if len(result) > 1 and result[1] else "0"
        return outcome, int(current or 0)

    def publish(self, gid: str, generation: int, slot: int, endpoint: str) -> bool:
        """Publish the rendezvous endpoint of ``generation``; ``False`` when this member no longer hosts it."""
        return self._publish(keys=[self.gang_key(gid)], args=[generation, slot, endpoint]) == b"ok"

    def prune(self, gid: str, max_replacements: int) -> tuple[list[int], list[int]]:
        """Drop the members whose slot lease expired and renew the gang records' expiry (the host calls it).

        Returns:
            ``(replace, dropped)``: slots to send a replacement member for, within ``max_replacements`` for the
            whole gang, and lost slots past that limit.
        """
        replace, dropped = self._prune(keys=[self.gang_key(gid), self.members_key(gid), self.usage_key(gid)],
                                       args=[gid, self.root, max_replacements, KEEP_SECONDS])
        return [int(s) for s in replace], [int(s) for s in dropped]

    def end(self, gid: str, reason: str) -> None:
        """Mark the gang done: members that join later do nothing."""
        self._end(keys=[self.gang_key(gid), self.gathering_key], args=[gid, reason])

    def set_usage(self, gid: str, slot: int, usage: dict[str, Any]) -> None:
        self.redis.hset(self.usage_key(gid), str(slot), json.dumps(usage))

    # --- reads --------------------------------------------------------------------------------------------------

    def read(self, gid: str) -> GangState | None:
        raw = self.redis.hgetall(self.gang_key(gid))
        if not raw:
            return None

        def text(name: str) -> str:
            value = raw.get(name.encode())
            return value.decode() if value else ""

        host = text("host")
        return GangState(phase=text("phase"), min_workers=int(text("min") or 1), max_workers=int(text("max") or 1),
                         generation=int(text("gen") or 0), host=int(host) if host else None,
                         endpoint=text("endpoint"), owner=text("owner"), restarts=int(text("restarts") or 0),
                         replacements=int(text("replacements") or 0), formed_size=int(text("formed_size") or 0),
                         reason=text("reason"))

    def members(self, gid: str) -> dict[int, dict[str, Any]]:
        """Return the recorded members by slot, including ones whose lease just expired."""
        return {int(slot): json.loads(info) for slot, info in self.redis.hgetall(self.members_key(gid)).items()}

    def live_slots(self, gid: str) -> list[int]:
        slots = sorted(self.members(gid))
        with self.redis.pipeline(transaction=False) as pipe:
            for slot in slots:
                pipe.exists(self.lease_key(gid, slot))
            alive = pipe.execute()
        return [slot for slot, present in zip(slots, alive) if present]

    def usage(self, gid: str) -> dict[int, dict[str, Any]]:
        return {int(slot): json.loads(value) for slot, value in self.redis.hgetall(self.usage_key(gid)).items()}
