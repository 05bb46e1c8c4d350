"""Starting trial scripts from a warm interpreter (:mod:`workers.zygote`) instead of a fresh one.

Each worker process keeps one zygote that has imported ``warm_imports`` (torch by default). A trial whose
``--model-main`` is a Python script is forked from it, so the script's own ``import torch`` is instant. The child
behaves like a process started by ``subprocess``: its own session, its log file as standard output and error,
SIGKILL when the worker dies. Plain command lines, and every trial while the zygote is unavailable, start cold.

Differences a script may notice: modules the zygote imported keep the state they had at import time, so an
environment variable that torch reads at import (not at first use) keeps the worker's value; set such variables on
the worker, or leave ``OPENHPO_WARM_IMPORTS`` empty to start every trial cold.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import structlog

log = structlog.get_logger("openhpo.worker")

#: Seconds the zygote may take to import its modules before the worker gives up on it and starts trials cold.
START_TIMEOUT = 120.0


class WarmChild:
    """A trial process forked by the zygote, with the part of ``subprocess.Popen``'s interface the runner uses."""

    def __init__(self, zygote: "Zygote", pid: int):
        self._zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.exit_code(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self._zygote.exit_code(self.pid, timeout=timeout)
            if code is None:
                raise subprocess.TimeoutExpired(f"trial process {self.pid}", timeout)
            self.returncode = code
        return self.returncode


class Zygote:
    """One warm interpreter owned by one worker process; not shared between threads."""

    def __init__(self, modules: list[str]):
        self.modules = modules
        self._exits: dict[int, int] = {}
        self._buffer = b""
        self._lock = threading.Lock()
        self.process = subprocess.Popen([sys.executable, "-m", "workers.zygote", *modules],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                                        start_new_session=False)
        ready = self._read_message(time.monotonic() + START_TIMEOUT, lambda m: "ready" in m)
        if ready is None:
            self.close()
            raise RuntimeError(f"the warm interpreter did not start within {START_TIMEOUT:g} s")
        log.info("warm interpreter started", pid=self.process.pid, modules=modules)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _read_message(self, deadline: float | None, accept) -> dict | None:
        """Read messages until one satisfies ``accept``; exit notices are recorded on the way."""
        fd = self.process.stdout.fileno()
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                message = json.loads(line)
                if "exit" in message:
                    self._exits[message["exit"]] = message["code"]
                if "warning" in message:
                    log.warning("warm interpreter", message=message["warning"])
                if accept(message):
                    return message
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the warm interpreter exited")
            self._buffer += chunk

    def launch(self, argv: list[str], cwd: str, env: dict[str, str], log_path: str) -> WarmChild:
        request = json.dumps({"argv": argv, "cwd": cwd, "env": env, "log": log_path}) + "\n"
        with self._lock:
            self.process.stdin.write(request.encode())
            self.process.stdin.flush()
            reply = self._read_message(time.monotonic() + 30, lambda m: "pid" in m and "ready" not in m)
        if reply is None:
            raise RuntimeError("the warm interpreter sent no reply to a launch request within 30 s")
        return WarmChild(self, reply["pid"])

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """Return the exit code of child ``pid``, waiting up to ``timeout`` seconds (``None``: without a limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if pid in self._exits:
                return self._exits.pop(pid)
            try:
                message = self._read_message(deadline, lambda m: m.get("exit") == pid)
            except RuntimeError:
                return -signal.SIGKILL  # the zygote died, and its children with it
            if message is None:
                return None
            return self._exits.pop(pid)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class WarmLauncher:
    """Starts trials from a zygote when one is available, and returns ``None`` from :meth:`launch` otherwise."""

    def __init__(self, modules: list[str]):
        self.modules = [m for m in modules if m]
        self._zygote: Zygote | None = None
        self._failed_at = 0.0

    def start(self) -> None:
        """Start the zygote now (at worker start), so that the first trial is warm too."""
        self._get()

    def _get(self) -> Zygote | None:
        if not self.modules:
            return None
        if self._zygote is not None and self._zygote.alive:
            return self._zygote
        if self._zygote is not None:
            log.warning("warm interpreter died; starting another", pid=self._zygote.process.pid)
            self._zygote.close()
            self._zygote = None
        if time.monotonic() - self._failed_at < 60:
            return None  # failed recently: start trials cold for a minute before trying again
        try:
            self._zygote = Zygote(self.modules)
        except (OSError, RuntimeError) as exc:
            log.warning("warm interpreter unavailable; trials start cold", error=str(exc))
            self._failed_at = time.monotonic()
            return None
        return self._zygote

    def launch(self, argv: list[str], cwd: str, env: dict[str, str], log_path: str) -> WarmChild | None:
        """Fork the trial from the zygote; ``None`` when there is no zygote and the caller must start it cold."""
        zygote = self._get()
        if zygote is None:
            return None
        try:
            return zygote.launch(argv, cwd, env, log_path)
        except (OSError, RuntimeError, ValueError) as exc:
            log.warning("warm launch failed; starting the trial cold", error=str(exc))
            zygote.close()
            self._zygote = None
            return None

    def close(self) -> None:
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None
