"""A warm Python interpreter that starts trial scripts by forking.

Importing torch takes seconds, and a trial script that imports it would pay that at every start. The zygote
imports the modules named on its command line once, then waits for launch requests on standard input, one JSON
object per line::

    {"argv": ["/path/train.py", "--epochs", "3"], "cwd": "...", "env": {...}, "log": "/path/log/stdout"}

For each request it forks a child that becomes the trial: a new session (so the worker can kill its process group),
SIGKILL when the zygote dies, the request's working directory, environment, ``sys.argv`` and log file, then the
script run as ``__main__``. The zygote answers ``{"pid": N}`` at once and ``{"exit": N, "code": C}`` when the child
ends, with ``C`` negative for a signal, as ``subprocess`` reports it.

Run it as ``python -m workers.zygote torch numpy``; it prints ``{"ready": true}`` once the imports are done.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import json
import os
import runpy
import select
import signal
import sys
import threading
import traceback

_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker's lease still re-queues a lost trial
        pass


def _run_child(request: dict, channel_fds: list[int]) -> None:
    """In the forked child: become the trial and never return."""
    code = 1
    try:
        os.setsid()
        _set_parent_death_signal()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        for fd in channel_fds:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # Line buffering, as PYTHONUNBUFFERED asks of a fresh interpreter, so the log follows the training.
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True, write_through=True)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # The zygote's own exit handlers (torch's compiler caches and loggers) took about 50 ms per trial and
        # clean up nothing the trial made, so they are dropped. DataLoader's exit flag is kept: its worker
        # processes read it to shut down quietly when the interpreter exits.
        atexit._clear()  # noqa: SLF001
        data_utils = sys.modules.get("torch.utils.data._utils")
        if data_utils is not None and hasattr(data_utils, "_set_python_exit_flag"):
            atexit.register(data_utils._set_python_exit_flag)
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        # What a normal interpreter exit does: wait for non-daemon threads, run atexit handlers.
        threading._shutdown()  # noqa: SLF001 - the documented way to join non-daemon threads is private
        atexit._run_exitfuncs()  # noqa: SLF001
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF if code >= 0 else 1)


def _write(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        _write({"exit": pid, "code": code})


def serve(preload: list[str]) -> None:
    _set_parent_death_signal()
    for module in preload:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            _write({"warning": f"cannot preload {module}: {exc}"})
    # SIGCHLD wakes select() through this pipe, so exits are reported without threads in the zygote.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.fileno()
    _write({"ready": True, "pid": os.getpid()})
    buffer = b""
    while True:
        try:
            readable, _, _ = select.select([stdin, wake_read], [], [])
        except InterruptedError:
            continue
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap()
        if stdin not in readable:
            continue
        chunk = os.read(stdin, 65536)
        if not chunk:
            return  # the worker closed the channel: exit, and the children die with us
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _run_child(request, [stdin, sys.stdout.fileno(), wake_read, wake_write])
            _write({"pid": pid})
        _reap()


if __name__ == "__main__":
    serve(sys.argv[1:])
