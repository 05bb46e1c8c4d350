"""Shared fixtures: the machine's real Redis, real Celery workers and coordinators in subprocesses.

Integration tests use their own Redis database (``OPENHPO_TEST_REDIS_URL``, default db 11 on 127.0.0.1:6379) and a
key prefix unique to each test, and delete every key they created when they end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
import redis

from broker.store import RedisStore

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tests" / "scripts"
TEST_REDIS_URL = os.environ.get("OPENHPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def live_processes(fragment: str) -> list[int]:
    """Pids of live processes whose environment, command line or working directory mentions ``fragment``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if "State:\tZ" in status:
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        # A trial forked from the warm interpreter keeps the zygote's command line and initial environment, so
        # it is found by its working directory.
        if fragment.encode() in cmdline or fragment.encode() in environ or fragment in cwd:
            found.append(int(entry.name))
    return found


class Deployment:
    """An openhpo deployment made of subprocesses on the test Redis, under a unique key prefix."""

    def __init__(self, tmp_path: Path, redis_url: str = TEST_REDIS_URL):
        self.redis_url = redis_url
        self.prefix = f"openhpo-test-{uuid.uuid4().hex[:10]}"
        self.queue = f"{self.prefix}.trials"
        self.work_dir = tmp_path / "work"
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.client = redis.Redis.from_url(redis_url)
        self.store = RedisStore(self.client, self.prefix)
        self.workers: list[subprocess.Popen] = []
        self.coordinators: list[subprocess.Popen] = []
        self.others: list[subprocess.Popen] = []
        self._count = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "OPENHPO_REDIS_URL": self.redis_url,
            "OPENHPO_KEY_PREFIX": self.prefix,
            "OPENHPO_QUEUE": self.queue,
            "OPENHPO_WORK_DIR": str(self.work_dir),
            "OPENHPO_HEARTBEAT_INTERVAL": "0.5",
            "OPENHPO_LEASE_TTL": "1.5",
            "OPENHPO_POLL_INTERVAL": "0.2",
            "OPENHPO_VISIBILITY_TIMEOUT": "60",
            "OPENHPO_LOG_LEVEL": "INFO",
            "OPENHPO_COORDINATOR_LOCK_TTL": "2",
            # Trials fork from a warm interpreter as in production, preloading a cheap module instead of torch.
            "OPENHPO_WARM_IMPORTS": "json",
            "PYTHONPATH": str(REPO),
        })
        env.update(extra)
        return env

    def _spawn(self, argv: list[str], label: str, **extra: str) -> subprocess.Popen:
        self._count += 1
        log = open(self.log_dir / f"{label}-{self._count}.log", "wb")
        return subprocess.Popen(argv, env=self.env(**extra), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True)

    def start_worker(self, concurrency: int = 1, **extra: str) -> subprocess.Popen:
        process = self._spawn([sys.executable, "-m", "celery", "-A", "workers.tasks", "worker", "--pool", "prefork",
                               "--concurrency", str(concurrency), "-Q", self.queue, "--without-gossip",
                               "--without-mingle", "--loglevel", "INFO",
                               "-n", f"w{self._count + 1}-{self.prefix}@%h"], "worker", **extra)
        self.workers.append(process)
        return process

    def start_coordinator(self, **extra: str) -> subprocess.Popen:
        process = self._spawn([sys.executable, "-m", "openhpo.cli", "coordinator"], "coordinator", **extra)
        self.coordinators.append(process)
        return process

    def spawn(self, argv: list[str], label: str, **extra: str) -> subprocess.Popen:
        """Start another process of the deployment (an API server, say); it is ended with the deployment."""
        process = self._spawn(argv, label, **extra)
        self.others.append(process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process's whole group (a Celery worker and its pool children)."""
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def submit(self, body: dict[str, Any], code_dir: Path | None = None, creator: str = "tester") -> str:
        from openhpo.submission import submit
        from workers.code import pack_directory

        code = pack_directory(code_dir) if code_dir is not None else None
        return submit(self.store, body, code, creator)

    def wait_task(self, name: str, timeout: float = 120, states=("FINISHED", "FAILED", "STOPPED")) -> str:
        def ended():
            state = self.store.get_task(name).state.value
            return state if state in states else None

        return wait_for(ended, timeout, what=f"task {name} to reach one of {states}; logs in {self.log_dir}")

    def logs(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in
                         sorted(self.log_dir.glob("*.log")))

    def close(self) -> None:
        for process in self.coordinators + self.workers + self.others:
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        keys = list(self.client.scan_iter(f"{self.prefix}*", count=1000))
        keys += list(self.client.scan_iter(f"_kombu.binding.{self.queue}*", count=100))
        if keys:
            self.client.delete(*keys)
        self.client.close()


@pytest.fixture
def deployment(tmp_path: Path):
    """A fresh deployment; its processes are ended and its Redis keys deleted after the test."""
    try:
        redis.Redis.from_url(TEST_REDIS_URL).ping()
    except redis.ConnectionError as exc:
        raise RuntimeError(f"the integration tests need Redis at {TEST_REDIS_URL} ({exc}); start it with "
                           "`redis-server --daemonize yes --port 6379 --save ''`") from None
    dep = Deployment(tmp_path)
    yield dep
    dep.close()


def script_body(script: str, *script_args: str, algorithm: str = "Random", max_jobs: int = 4, parallel: int = 2,
                space: list[dict[str, Any]] | None = None, objective_metric: str = "loss",
                objective: str = "minimize", **algo: Any) -> dict[str, Any]:
    """A task definition that runs ``tests/scripts/<script>`` with a small search space."""
    body = {
        "modelSpec": {"args": f"--exec-start PyTorch --model-main {script} {' '.join(script_args)}".strip()},
        "algoDef": {"algorithm": algorithm, "maxJobNum": max_jobs, "maxParalleJobNum": parallel,
                    "objectiveMetric": objective_metric, "objective": objective,
                    "algoParams": [{"name": "RandomSeed", "value": "3"}], **algo},
        "hyperParams": space if space is not None else [
            {"name": "x", "type": "Range", "dataType": "DOUBLE", "minDbVal": -2, "maxDbVal": 2},
            {"name": "n", "type": "Range", "dataType": "INT", "minIntVal": 1, "maxIntVal": 8, "step": "1"},
            {"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam"]},
        ],
    }
    return json.loads(json.dumps(body))
