"""Gang start and rendezvous of elastic distributed trials, through Redis.

A trial with ``max_workers > 1`` runs as a gang. The coordinator sends one member message per worker slot (``slot``
0 to ``max_workers - 1``), and each member runs one node of a torch elastic job (:mod:`edt.launch`). The members
find each other through the gang record in Redis (:mod:`edt.store`).

Life of a gang, for one attempt of the trial:

1. **Gathering.** Each member joins the record with its slot and renews a slot lease while it waits. The gang
   forms when ``max_workers`` members are present, or ``min_workers`` are and ``settle_time`` passed. The member
   whose check forms it becomes the host of generation 1.
2. **No deadlock between gangs.** Waiting members hold Celery worker slots, so gangs that compete for few workers
   could each hold part of what they need forever. Two rules prevent it: a member of a gang short of its minimum
   gives its slot back at once when an older gang (by trial creation time) is also short of its minimum, and every
   member gives its slot back after ``gather_timeout`` seconds. Giving back means leaving the gang and sending
   the member message again after a jittered delay. The oldest short gang therefore gets every slot that frees
   up, and it forms as soon as the cluster has ``min_workers`` free slots.
3. **Host.** The host claims the trial (QUEUED → RUNNING in :mod:`broker.store`), serves a torch TCPStore for the
   rendezvous from its own process on a free port, and publishes ``host:port`` with the generation number. Every
   member then starts its launcher against that endpoint; torch elastic's c10d rendezvous gives the nodes their
   ranks.
4. **Growth and loss.** A member that arrives later joins the running gang, and torch elastic restarts the
   training processes with the larger world. The host drops members whose slot lease expired and sends a
   replacement member message for their slot, at most ``max_restarts`` times per gang. When the host itself is
   lost, its rendezvous store goes with it: a surviving member takes over as the host of the next generation
   (at most ``max_restarts`` times), and every member starts a new launcher, so training resumes from the last
   checkpoint.

Leases with several members:

* Each member holds a **slot lease** (``P:edt:lease:{gang}:{slot}``) that its heartbeat renews. It tells the host
  which members were lost and tells the members whether the host is alive.
* The **trial lease** of :mod:`broker.store` is held by the gang as a whole. Its holder name is the gang's
  ``owner``, set when the gang forms, and every member renews it with that name. It expires only when every
  member is gone; the coordinator then re-queues the trial as a new attempt, like any trial whose worker was lost.
* The trial's result is recorded once through the attempt-guarded ``store.finish``: by the member whose training
  process ended as rank 0, or by the host when that member does not record it in time.

This module holds the Redis side of a member and serves the rendezvous store. The processes of a member (launcher,
heartbeat, stop) are run by :mod:`workers.members`.
"""

from __future__ import annotations

import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import structlog

from broker.store import RedisStore
from edt.settings import EdtSettings
from edt.store import GangState, GangStore, gang_id
from hpo_core.records import TrialState

log = structlog.get_logger("openhpo.edt")


@dataclass(frozen=True)
class MemberOrder:
    """Contents of one member message: the trial attempt, the member's slot and the gang's width."""

    task: str
    trial: int
    attempt: int
    slot: int
    min_workers: int
    max_workers: int
    #: How many times this member gave its worker slot back so far; only used for logging.
    yields: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_workers <= self.max_workers:
            raise ValueError(f"member widths must satisfy 1 <= min_workers <= max_workers, got "
                             f"{self.min_workers} and {self.max_workers}")
        if not 0 <= self.slot < self.max_workers:
            raise ValueError(f"member slot must be in 0..{self.max_workers - 1}, got {self.slot}")

    @property
    def gang(self) -> str:
        return gang_id(self.task, self.trial, self.attempt)

    def kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of the member's Celery message."""
        return {"task": self.task, "trial": self.trial, "attempt": self.attempt, "slot": self.slot,
                "min_workers": self.min_workers, "max_workers": self.max_workers, "yields": self.yields}


@dataclass(frozen=True)
class GatherResult:
    """Outcome of gathering, by ``state``.

    ``host``: the gang formed and this member hosts it. ``running``: it formed with another host, or was already
    running. ``yield``: give the slot back, after ``delay`` seconds. ``ended``: the attempt is over or the gang is
    done. ``lost``: another member took the slot.
    """

    state: str
    delay: float = 0.0
    reason: str = ""
    #: Whether a ``yield`` came from ``gather_timeout`` rather than from an older gang.
    timed_out: bool = False


def advertised_address(redis_url: str, configured: str = "") -> str:
    """Return the address that other members reach this host at.

    ``configured`` wins when set. Otherwise it is the local address of the route to the Redis host, because every
    member reaches Redis. For a Redis on this host that is 127.0.0.1. No packet is sent, because connecting a UDP
    socket only selects the route.
    """
    if configured:
        return configured
    host = urlparse(redis_url).hostname or "127.0.0.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


@dataclass
class GangMember:
    """One member's handle on its gang: the Redis side of joining, gathering, hosting and leaving.

    Args:
        store: the trial store.
        order: the member message.
        settings: gathering and recovery settings.
        lease_ttl: seconds a slot lease lives without renewal (the trial lease TTL).
        info: facts about this member stored with its slot (worker, hostname, pids).
    """

    store: RedisStore
    order: MemberOrder
    settings: EdtSettings
    lease_ttl: float
    info: dict[str, Any] = field(default_factory=dict)
    member_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        self.gangs = GangStore(self.store)
        self.gid = self.order.gang
        self._server: Any = None  # torch TCPStore served by this process while it hosts
        self._address = ""

    # --- trial checks -------------------------------------------------------------------------------------------

    def trial_state(self) -> TrialState | None:
        """Return the trial's state while this member's attempt is current, else ``None``."""
        state, attempt = self.store.redis.hmget(self.store.trial_key(self.order.task, self.order.trial),
                                                ["state", "attempt"])
        if state is None or attempt is None or int(attempt) != self.order.attempt:
            return None
        return TrialState(state.decode())

    def read(self) -> GangState | None:
        return self.gangs.read(self.gid)

    # --- gathering ----------------------------------------------------------------------------------------------

    def join(self, priority: float) -> str:
        """Take this member's slot; returns the gang phase, ``done`` or ``taken`` (see :meth:`GangStore.join`)."""
        return self.gangs.join(self.gid, self.order.slot, self.member_id, self.info, self.lease_ttl,
                               self.order.min_workers, self.order.max_workers, priority)

    def gather(self, owner: str) -> GatherResult:
        """Wait until the gang forms, this member must give its slot back, or the attempt ends."""
        started = time.monotonic()
        bound = log.bind(task=self.order.task, trial=self.order.trial, attempt=self.order.attempt,
                         slot=self.order.slot)
        while True:
            state = self.trial_state()
            if state is None or state.ended:
                return GatherResult("ended", reason="the trial attempt ended while its gang was gathering")
            status = self.gangs.gather(self.gid, self.order.slot, self.member_id, self.info, self.lease_ttl,
                                       self.settings.settle_time, owner)
            if status.state == "host":
                bound.info("gang formed", members=status.live, min_workers=self.order.min_workers,
                           max_workers=self.order.max_workers)
                return GatherResult("host")
            if status.state == "running":
                return GatherResult("running")
            if status.state in ("done", "missing"):
                return GatherResult("ended", reason=f"the gang is {status.state}")
            if status.state == "lost":
                return GatherResult("lost", reason="another member holds this slot")
            if status.state == "yield":
                return GatherResult("yield", delay=self._yield_delay(),
                                    reason=f"older gang {status.older} is short of members")
            waited = time.monotonic() - started
            if waited >= self.settings.gather_timeout:
                return GatherResult("yield", delay=self._yield_delay(),
                                    reason=f"{status.live} of {self.order.min_workers} members gathered in "
                                           f"{waited:.0f} s", timed_out=True)
            time.sleep(self.settings.poll_interval)

    def _yield_delay(self) -> float:
        return self.settings.yield_delay * random.uniform(0.5, 1.5)

    # --- running ------------------------------------------------------------------------------------------------

    def renew(self) -> bool:
        """Renew the slot lease; ``False`` when another member took this slot over."""
        return self.gangs.renew(self.gid, self.order.slot, self.member_id, self.info, self.lease_ttl)

    def host_alive(self, gang: GangState) -> bool:
        if gang.host is None:
            return False
        return bool(self.store.redis.exists(self.gangs.lease_key(self.gid, gang.host)))

    def take_over(self, generation: int, max_restarts: int) -> tuple[str, int]:
        return self.gangs.take_over(self.gid, generation, self.order.slot, max_restarts)

    def start_server(self, address: str) -> None:
        """Start serving a rendezvous store from this process, on a port the kernel chooses, so that two gangs on
        one host never race for a port. Any store this member served before is closed."""
        from datetime import timedelta

        from torch.distributed import TCPStore

        self.close_server()
        self._server = TCPStore(address, 0, is_master=True, multi_tenant=True, wait_for_workers=False,
                                timeout=timedelta(seconds=60))
        self._address = address

    def publish(self, generation: int) -> str | None:
        """Publish the served store as the rendezvous endpoint of ``generation``.

        Returns:
            ``host:port``, or ``None`` (and the store is closed) when this member no longer hosts that generation.
        """
        if self._server is None:
            raise RuntimeError("publish() needs a store started with start_server()")
        endpoint = f"{self._address}:{self._server.port}"
        if not self.gangs.publish(self.gid, generation, self.order.slot, endpoint):
            self.close_server()
            return None
        return endpoint

    def close_server(self) -> None:
        # The TCPStore server stops when its last reference goes.
        self._server = None

    def prune(self, max_replacements: int) -> tuple[list[int], list[int]]:
        return self.gangs.prune(self.gid, max_replacements)

    def end(self, reason: str) -> None:
        self.gangs.end(self.gid, reason)

    def leave(self) -> None:
        self.gangs.leave(self.gid, self.order.slot, self.member_id)
        self.close_server()
