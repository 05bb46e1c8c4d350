"""Settings of elastic distributed trials, read from ``OPENHPO_EDT_*`` environment variables on the workers."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EdtSettings(BaseSettings):
    """Gathering, rendezvous and recovery settings of gang members.

    Every field can be set with an environment variable of the same name in upper case, prefixed with
    ``OPENHPO_EDT_``, e.g. ``OPENHPO_EDT_GATHER_TIMEOUT=60``.
    """

    model_config = SettingsConfigDict(env_prefix="OPENHPO_EDT_", extra="ignore")

    #: Seconds a member waits for its gang to reach the trial's minimum width before it gives its worker slot back.
    gather_timeout: float = Field(30.0, gt=0)
    #: Mean seconds before a member that gave its slot back is delivered again. Each delay is drawn from 0.5 to 1.5
    #: times this value, so that competing gangs do not retry in lockstep.
    yield_delay: float = Field(2.0, gt=0)
    #: Seconds a gang that reached its minimum waits for more members, up to its maximum, before it starts.
    settle_time: float = Field(1.0, ge=0)
    #: Seconds between a gathering member's checks of its gang.
    poll_interval: float = Field(0.2, gt=0)
    #: Restarts of the training processes after a failure (torch elastic's ``max_restarts``), and also the most
    #: times a gang may replace its host or its lost members. ``--edt-options maxRestarts=N`` overrides it.
    max_restarts: int = Field(3, ge=0)
    #: Seconds a rendezvous round waits for the minimum number of nodes, e.g. after a member was lost.
    join_timeout: int = Field(120, ge=1)
    #: Seconds a rendezvous round waits for more nodes once the minimum has joined (an integer for torch).
    last_call_timeout: int = Field(1, ge=1)
    #: Seconds between rendezvous keep-alive beats; a node that misses ``keep_alive_max_attempt`` beats is
    #: dropped from the next round.
    keep_alive_interval: int = Field(1, ge=1)
    keep_alive_max_attempt: int = Field(3, ge=1)
    #: Address that the host's rendezvous store and the rank 0 node are reached at. Empty: the local address
    #: of the route to Redis, which is 127.0.0.1 when Redis runs on this host.
    host_address: str = ""
    #: Seconds the host waits for the rank 0 member to record a successful result before it records it itself.
    result_grace: float = Field(10.0, gt=0)
    #: Seconds the host keeps serving the rendezvous store after its own training ended, so that the other
    #: members' agents can shut down cleanly.
    linger: float = Field(5.0, ge=0)
    #: Seconds a member whose launcher failed waits to learn whether the host failed the trial or was lost itself
    #: (at least twice the lease TTL). After that the member starts its launcher again.
    failure_grace: float = Field(5.0, gt=0)


@lru_cache(maxsize=1)
def get_edt_settings() -> EdtSettings:
    return EdtSettings()
