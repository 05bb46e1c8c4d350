"""The separate process that runs a search-algorithm plugin, and the JSON-lines exchange with it.

A plugin is user code, so it runs in a child process (:mod:`plugins.core.host`) that the coordinator can kill:
a plugin that raises, returns garbage, crashes the interpreter or never returns costs that process, never the
coordinator. Each request has a deadline. When a request fails in any way, the process is killed, and the next
request starts a new one.

The exchange uses ``select`` on pipes and process groups, so it needs a POSIX system.
"""

from __future__ import annotations

import collections
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any

import structlog

import plugins
from hpo_core.errors import PluginError

log = structlog.get_logger("openhpo.plugin")

#: Lines of the plugin's stderr kept to explain a crash.
STDERR_TAIL_LINES = 20
# A traceback in an error reply is cut to its last lines, where the plugin's own frames are.
_TRACEBACK_LINES = 12
_LOG_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error", "CRITICAL": "critical"}


class _TimedOut(Exception):
    pass


class _Exited(Exception):
    pass


def _forward_stderr(stream: IO[bytes], label: str, tail: collections.deque) -> None:
    """Copy the plugin's stderr into our log, one event per line, keeping the last lines in ``tail``."""
    for raw in iter(stream.readline, b""):
        text = raw.decode("utf-8", "replace").rstrip()
        if not text:
            continue
        tail.append(text)
        level, _, message = text.partition(" ")
        method = _LOG_LEVELS.get(level)
        if method is None:
            method, message = "info", text
        getattr(log, method)("plugin output", plugin=label, line=message)
    stream.close()


def _kill(process: subprocess.Popen) -> None:
    """Kill the host and anything it started (it leads its own process group), then reap it."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.error("plugin process did not exit after SIGKILL", pid=process.pid)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()


#: Name of the log that receives a plugin host's lines when the coordinator runs it, as error messages give it.
COORDINATOR_LOG = "the coordinator's log (the terminal, under openhpo run)"


class PluginProcess:
    """One host process for one plugin, started on the first request and replaced after any failure.

    Args:
        label: how error messages name the plugin, e.g. ``plugin 'cmaes'``.
        cwd: the working directory of the process (the plugin's directory), or ``None`` for ours.
        log_name: the log that receives this process's log lines, named in error messages that point to the
            full traceback there.
    """

    def __init__(self, label: str, cwd: str | None = None, log_name: str = COORDINATOR_LOG):
        self.label = label
        self.cwd = cwd
        self.log_name = log_name
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._stderr_thread: threading.Thread | None = None
        self._buffer = b""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """The exit status of a host process that ended by itself; ``None`` while it runs or after :meth:`close`."""
        return self._process.poll() if self._process is not None else None

    def start(self) -> None:
        """Start the host process; a running one is killed first."""
        self.close()
        env = dict(os.environ)
        # The host imports plugins.core from wherever this process found it, installed or not.
        root = str(Path(plugins.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        # -P keeps the working directory (the plugin's directory) off sys.path until the host has imported
        # plugins.core, so a plugin's own "plugins" folder cannot replace it.
        self._process = subprocess.Popen(
            [sys.executable, "-P", "-m", "plugins.core.host"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=self.cwd, env=env, bufsize=0, start_new_session=True)
        self._buffer = b""
        self.stderr_tail.clear()
        self._stderr_thread = threading.Thread(
            target=_forward_stderr, args=(self._process.stderr, self.label, self.stderr_tail),
            name=f"{self.label} stderr", daemon=True)
        self._stderr_thread.start()
        self._finalizer = weakref.finalize(self, _kill, self._process)
        log.debug("plugin process started", plugin=self.label, pid=self._process.pid)

    def close(self) -> None:
        """Kill the host process if it runs; the next request starts a new one."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._process = None
        self._buffer = b""

    def request(self, message: dict[str, Any], what: str, timeout: float) -> dict[str, Any]:
        """Send one request and return the reply, killing the process on any failure.

        Args:
            message: the request, see :mod:`plugins.core.host`.
            what: the plugin call it makes, for error messages, e.g. ``search()``.
            timeout: seconds to wait for the reply.

        Raises:
            PluginError: the plugin raised, timed out, exited, or sent a reply that is not JSON.
        """
        if not self.running:
            self.start()
        assert self._process is not None  # started above
        deadline = time.monotonic() + timeout
        try:
            self._write(json.dumps(message).encode("utf-8") + b"\n", deadline)
            line = self._read_line(deadline)
        except _TimedOut:
            self.close()
            raise PluginError(f"{self.label}: {what} timed out after {timeout:g} s; make it return sooner, or "
                              f"raise the PluginTimeout algoParam (seconds)") from None
        except _Exited:
            try:
                code: int | None = self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # it closed stdout but lives on
                code = None
            if self._stderr_thread is not None:
                self._stderr_thread.join(timeout=1)  # it ends at the dead process's end of stderr
            self.close()
            raise PluginError(f"{self.label}: the plugin process exited with code {code} during {what}"
                              f"{self._tail_text()}") from None
        try:
            reply = json.loads(line)
        except ValueError:
            self.close()
            raise PluginError(f"{self.label}: invalid reply during {what}: {line[:200]!r}") from None
        if not reply.get("ok"):
            self.close()
            error = reply.get("error")
            full_trace = str(reply.get("traceback") or "").strip()
            if not full_trace:
                raise PluginError(f"{self.label}: {error}")
            log.error("plugin call failed", plugin=self.label, call=what, error=error, exception=full_trace)
            trace = full_trace.splitlines()[-_TRACEBACK_LINES:]
            raise PluginError(f"{self.label}: {error}. The full traceback is in {self.log_name}.\n"
                              + "\n".join(trace))
        return reply

    def _tail_text(self) -> str:
        if not self.stderr_tail:
            return ""
        return "; last output:\n" + "\n".join(self.stderr_tail)

    def _write(self, data: bytes, deadline: float) -> None:
        assert self._process is not None and self._process.stdin is not None
        fd = self._process.stdin.fileno()
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _TimedOut
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise _Exited from None
            view = view[written:]

    def _read_line(self, deadline: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _TimedOut
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise _Exited
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace")
