"""Service settings, read from ``OPENHPO_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings shared by the API, the coordinator and the workers.

    Every field can be set with an environment variable of the same name in upper case and prefixed with
    ``OPENHPO_``, e.g. ``OPENHPO_REDIS_URL``.
    """

    model_config = SettingsConfigDict(env_prefix="OPENHPO_", extra="ignore")

    #: Redis holding task and trial records; also the Celery broker unless broker_url is set.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Celery broker; defaults to redis_url.
    broker_url: str | None = None
    #: Prefix of every Redis key that openhpo writes, so several deployments or test runs share one Redis.
    key_prefix: str = "openhpo"
    #: Celery queue that carries trial tasks; ``<key_prefix>.trials`` when unset, so that deployments with their
    #: own key prefix on one Redis never share a queue.
    queue: str = ""
    #: Directory under which workers create one working directory per trial attempt.
    work_dir: Path = Path(".openhpo/work")
    #: Seconds between a running trial's lease renewals.
    heartbeat_interval: float = Field(2.0, gt=0)
    #: Seconds a lease lives without renewal before the coordinator treats the worker as lost.
    lease_ttl: float = Field(3.5, gt=0)
    #: Seconds the broker waits before redelivering an unacknowledged message (a fallback; leases come first).
    visibility_timeout: int = Field(300, gt=0)
    #: Seconds the coordinator sleeps at most between passes when nothing happens.
    poll_interval: float = Field(0.5, gt=0)
    #: Seconds the coordinator lock outlives a coordinator that died; a standby takes over after it.
    coordinator_lock_ttl: float = Field(10.0, gt=0)
    #: Token that API clients send as "Authorization: Bearer" or "X-Auth-Token"; the API refuses to start without.
    api_token: str | None = None
    #: Largest accepted code archive in bytes.
    max_archive_bytes: int = 100 * 1024 * 1024
    #: Most files an uploaded code archive may hold.
    max_archive_files: int = 10_000
    #: Modules a worker's warm interpreter imports once, comma-separated; trial scripts given with --model-main
    #: are forked from it, so they skip those imports. Empty: every trial starts a fresh interpreter.
    warm_imports: str = "torch"
    #: Largest zip of a trial's RESULT_DIR that a worker stores in Redis for the API to serve; 0 stores none.
    max_result_zip_bytes: int = Field(32 * 1024 * 1024, ge=0)
    #: Log format: "json" for services, "console" for a terminal.
    log_format: str = "json"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _default_queue(self) -> "Settings":
        if not self.queue:
            self.queue = f"{self.key_prefix}.trials"
        return self

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
