"""Running one trial attempt: working directory, ``config.json``, environment, subprocess, logs and metrics.

The attempt's directory is ``<work_dir>/<task>/<trial>/attempt-<n>`` and is the trial's ``RESULT_DIR``::

    _submitted_code/<model dir>/   a fresh copy of the uploaded code, with config.json; the script's cwd
    log/stdout                     the script's standard output and error
    model/                         MODEL_DIR, for saved models
    val_dict_list.json             written by the script

While the script runs, a heartbeat renews the attempt's lease every ``heartbeat_interval`` seconds and publishes
the entries of ``val_dict_list.json`` written so far. The heartbeat also carries stop requests: on a stop, or when
the lease is lost to a newer attempt, the script's whole process group is killed.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from broker.settings import Settings
from broker.store import LOG_CAP_BYTES, Claim, RedisStore
from hpo_core.records import TrialState
from hpo_core.spec import TaskSpec
from workers import metrics as metrics_mod
from workers.code import ArchiveError, cached_code_dir, model_root
from workers.warm import WarmLauncher
from workers.gpus import ACQUIRE_WAIT_SECONDS, GpuAllocator, GpuLease, NoFreeGpuError

log = structlog.get_logger("openhpo.worker")

#: Seconds between SIGTERM and SIGKILL when a trial's process group is stopped.
KILL_GRACE_SECONDS = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the worker process dies, so no trial outlives a killed worker."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the lease still re-queues the trial
        pass


def kill_group(process: subprocess.Popen, grace: float = KILL_GRACE_SECONDS) -> None:
    """Terminate the process group of ``process``, then kill it after ``grace`` seconds."""
    if process.poll() is not None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # reap children the script left behind
        except (ProcessLookupError, PermissionError):
            pass
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _ExitWatch:
    """Waits for a process to exit and returns at once when it does.

    ``Popen.wait(timeout)`` polls with sleeps of up to 50 ms, which would add tens of milliseconds to every short
    trial; a pidfd (Linux 5.3 and newer) becomes readable the moment the process exits.
    """

    def __init__(self, process: subprocess.Popen):
        self.process = process
        try:
            self.fd: int | None = os.pidfd_open(process.pid)
        except (AttributeError, OSError):  # not Linux, or an old kernel: fall back to polling
            self.fd = None

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; ``True`` once the process has exited (and been reaped)."""
        if self.fd is None:
            try:
                self.process.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        readable, _, _ = select.select([self.fd], [], [], timeout)
        if not readable:
            return False
        self.process.wait()
        return True

    def __enter__(self) -> "_ExitWatch":
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class Outcome:
    state: TrialState
    metric: float | None = None
    metrics: dict[str, Any] | None = None
    reason: str | None = None
    exit_code: int | None = None
    steps: list[dict[str, Any]] | None = None


class TrialRunner:
    """Runs trial attempts for one worker process.

    Args:
        store: the Redis store.
        settings: work directory, heartbeat and lease timing, archive limits.
        gpus: device indices this runner may give the trial (``CUDA_VISIBLE_DEVICES``); ``None`` on CPU.
        allocator: gives each trial GPUs of its own and samples their usage (see :mod:`workers.gpus`); it
            replaces ``gpus``. ``None`` on a CPU host.
    """

    def __init__(self, store: RedisStore, settings: Settings, gpus: list[int] | None = None,
                 allocator: GpuAllocator | None = None, launcher: WarmLauncher | None = None):
        self.store = store
        self.settings = settings
        self.launcher = launcher
        self.gpus = gpus
        self.allocator = allocator
        self._gpu_lease: GpuLease | None = None
        self.worker = worker_id()
        self._specs: dict[tuple[str, float], TaskSpec] = {}

    def _spec(self, name: str, created: float) -> TaskSpec:
        key = (name, created)
        if key not in self._specs:
            self._specs[key] = TaskSpec.parse(self.store.get_task(name).spec)
        return self._specs[key]

    def run(self, task: str, trial_id: int, attempt: int) -> str:
        """Run one attempt if it is still current; returns what happened (``"ok"`` or why it was skipped).

        Idempotent: a redelivered message whose attempt has ended, or is held by a live worker, does nothing.
        """
        bound = log.bind(task=task, trial=trial_id, attempt=attempt, worker=self.worker)
        attempt_dir = Path(self.settings.work_dir).resolve() / task / str(trial_id) / f"attempt-{attempt}"
        claim = self.store.claim(task, trial_id, attempt, self.worker, self.settings.lease_ttl, str(attempt_dir))
        if claim.status != "ok":
            bound.info("trial attempt skipped", reason=claim.status)
            return claim.status
        bound.info("trial started")
        try:
            outcome = self._run_claimed(task, trial_id, attempt, attempt_dir, claim, bound)
        except Exception as exc:  # a fault of ours must not leave the trial RUNNING
            bound.error("trial attempt crashed in the worker", exc_info=True)
            outcome = Outcome(TrialState.FAILED, reason=f"worker error: {type(exc).__name__}: {exc}")
        usage = self._release_gpus()
        if outcome is None:
            return "lost"
        publish_result_zip(self.store, task, trial_id, attempt, attempt_dir, bound,
                           self.settings.max_result_zip_bytes)
        written = self.store.finish(task, trial_id, attempt, outcome.state, metric=outcome.metric,
                                    metrics=outcome.metrics, reason=outcome.reason, exit_code=outcome.exit_code,
                                    steps=outcome.steps, usage=usage,
                                    log=self._read_log(attempt_dir / "log" / "stdout"))
        if outcome.state is TrialState.FAILED:
            bound.warning("trial failed", reason=outcome.reason, exit_code=outcome.exit_code, recorded=written)
        else:
            bound.info("trial ended", state=outcome.state.value, metric=outcome.metric, recorded=written)
        return "ok"

    def _prepare(self, spec: TaskSpec, code: str | None, config: dict[str, Any], attempt_dir: Path) -> Path:
        if attempt_dir.exists():  # left by an earlier delivery of this same attempt that died
            shutil.rmtree(attempt_dir)
        (attempt_dir / "log").mkdir(parents=True)
        (attempt_dir / "model").mkdir()
        if code:
            code_dir = cached_code_dir(Path(self.settings.work_dir).resolve(), code,
                                       lambda: self.store.get_code(code), self.settings.max_archive_bytes,
                                       self.settings.max_archive_files)
            source = model_root(code_dir, spec.model.model_dir)
            cwd = attempt_dir / "_submitted_code" / source.name
            shutil.copytree(source, cwd, symlinks=True)
        else:
            cwd = attempt_dir / "_submitted_code"
            cwd.mkdir()
        (cwd / "config.json").write_text(json.dumps(config, indent=1))
        return cwd

    def _command(self, spec: TaskSpec, cwd: Path) -> list[str]:
        if spec.model.main:
            script = (cwd / spec.model.main).resolve()
            if not script.is_relative_to(cwd.resolve()) or not script.is_file():
                raise ArchiveError(f"--model-main {spec.model.main!r} is not a file in the model directory",
                                   fix="name the entry script as it appears in the uploaded directory")
            return [sys.executable, "-u", str(script), *spec.model.script_args]
        command = list(spec.model.command)
        if command and command[0] in ("python", "python3"):
            command[0] = sys.executable  # the worker's interpreter, where torch and the helpers are installed
        return command

    def _environment(self, task: str, trial_id: int, attempt: int, attempt_dir: Path, cwd: Path,
                     meta: dict[str, Any]) -> dict[str, str]:
        env = dict(os.environ)
        app_id = f"{task}-{trial_id}"
        env.update({
            "RESULT_DIR": str(attempt_dir),
            "LOG_DIR": str(attempt_dir / "log"),
            "MODEL_DIR": str(attempt_dir / "model"),
            "SAVED_MODEL_DIR": str(attempt_dir / "model"),
            "DLI_WORK_DIR": str(cwd),
            "DLI_EXECID": app_id,
            "DLI_RESULT_FS": str(Path(self.settings.work_dir).resolve()),
            "SUBID": str(trial_id),
            "OPENHPO_TASK": task,
            "OPENHPO_TRIAL": str(trial_id),
            "OPENHPO_ATTEMPT": str(attempt),
            "PYTHONUNBUFFERED": "1",
        })
        data_dir = os.environ.get("DLI_DATA_FS")
        if data_dir:
            env["DATA_DIR"] = data_dir
        parent = meta.get("parent")
        if isinstance(parent, int):
            parent_dir = self.store.trial_extras(task, parent).get("result_dir")
            if parent_dir:
                env["OPENHPO_PARENT_RESULT_DIR"] = parent_dir
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in self.gpus)
        return env

    def _run_claimed(self, task: str, trial_id: int, attempt: int, attempt_dir: Path, claim: Claim,
                     bound) -> Outcome | None:
        spec = self._spec(task, claim.task_created)
        try:
            cwd = self._prepare(spec, claim.code, claim.config or {}, attempt_dir)
            command = self._command(spec, cwd)
        except ArchiveError as exc:
            return Outcome(TrialState.FAILED, reason=str(exc))
        env = self._environment(task, trial_id, attempt, attempt_dir, cwd, claim.meta or {})
        gpu_failure = self._acquire_gpus(spec, env, f"{task}:{trial_id}:{attempt}")
        if gpu_failure is not None:
            return gpu_failure
        log_path = attempt_dir / "log" / "stdout"
        result_path = attempt_dir / metrics_mod.RESULT_FILE
        with open(log_path, "wb") as log_file:
            process = None
            if self.launcher is not None and spec.model.main and spec.model.main.endswith(".py"):
                # command is [python, -u, script, args...]; the warm interpreter runs script and args.
                process = self.launcher.launch(command[2:], str(cwd), env, str(log_path))
            if process is None:
                try:
                    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True, preexec_fn=_die_with_parent)
                except OSError as exc:
                    return Outcome(TrialState.FAILED, reason=f"cannot start {command[0]!r}: {exc}")
            stop_reason = self._supervise(process, task, trial_id, attempt, spec, result_path, log_path, bound)
        if stop_reason == "lost":
            bound.warning("trial attempt lost its lease; process killed, nothing recorded")
            return None
        return self._outcome(process.returncode, stop_reason, spec, result_path, log_path)

    def _supervise(self, process: subprocess.Popen, task: str, trial_id: int, attempt: int, spec: TaskSpec,
                   result_path: Path, log_path: Path, bound) -> str | None:
        """Wait for the script while renewing the lease; returns why it was stopped, or ``None``."""
        started = time.monotonic()
        interval = self.settings.heartbeat_interval
        last_mtime = 0.0
        # Intermediate results are checked more often than the lease is renewed.
        tick = min(0.5, interval)
        next_beat = started + interval
        with _ExitWatch(process) as exit_watch:
            while True:
                if exit_watch.wait(tick):
                    kill_group(process, grace=0)
                    return None
                now = time.monotonic()
                try:
                    mtime = result_path.stat().st_mtime
                except OSError:
                    mtime = last_mtime
                if mtime != last_mtime:
                    steps = metrics_mod.read_steps(result_path)
                    if steps is not None:
                        last_mtime = mtime
                        self.store.report_steps(task, trial_id, attempt, steps)
                if spec.trial_timeout and now - started > spec.trial_timeout:
                    bound.warning("trial timed out; killing its processes", timeout=spec.trial_timeout)
                    kill_group(process)
                    return f"timed out after {spec.trial_timeout:g} s (algoDef.trialTimeout)"
                if now < next_beat:
                    continue
                next_beat = now + interval
                try:
                    beat = self.store.heartbeat(task, trial_id, attempt, self.worker, self.settings.lease_ttl)
                except Exception:  # Redis unreachable for a moment: keep the trial, retry on the next beat
                    bound.warning("heartbeat failed; retrying", exc_info=True)
                    continue
                self._publish_log(task, trial_id, log_path)
                self._sample_gpus()
                if beat == "stop":
                    bound.info("stop requested; killing the trial's processes")
                    kill_group(process)
                    return "stopped"
                if beat == "lost":
                    kill_group(process)
                    return "lost"


    @staticmethod
    def _read_log(log_path: Path) -> bytes | None:
        """The last :data:`broker.store.LOG_CAP_BYTES` of the training log, or ``None`` when there is none."""
        try:
            size = log_path.stat().st_size
            with open(log_path, "rb") as handle:
                handle.seek(max(0, size - LOG_CAP_BYTES))
                return handle.read()
        except OSError:
            return None

    def _publish_log(self, task: str, trial_id: int, log_path: Path) -> None:
        text = self._read_log(log_path)
        if text is not None:
            self.store.set_log(task, trial_id, text)

    # --- GPU hooks: a trial's own GPUs and their usage samples (see workers.gpus) ----------------------------

    def _acquire_gpus(self, spec: TaskSpec, env: dict[str, str], owner: str) -> Outcome | None:
        """Give the trial GPUs of its own through ``env``; returns a failed outcome when none are free."""
        count = 1 if spec.model.gpus_per_worker is None else spec.model.gpus_per_worker
        if self.allocator is None or count == 0:
            return None
        try:
            self._gpu_lease = self.allocator.acquire(count, wait=ACQUIRE_WAIT_SECONDS, owner=owner)
        except (NoFreeGpuError, ValueError) as exc:
            return Outcome(TrialState.FAILED, reason=str(exc))
        env.update(self._gpu_lease.environment())
        return None

    def _sample_gpus(self) -> None:
        if self._gpu_lease is not None:
            self._gpu_lease.sample()

    def _release_gpus(self) -> dict[str, Any]:
        """Release the trial's GPUs and return their usage summary for the trial record; empty on the CPU."""
        lease, self._gpu_lease = self._gpu_lease, None
        if lease is None:
            return {}
        lease.release()
        return lease.usage()

    @staticmethod
    def _tail(log_path: Path, lines: int = 8) -> str:
        try:
            text = log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def _outcome(self, returncode: int, stop_reason: str | None, spec: TaskSpec, result_path: Path,
                 log_path: Path) -> Outcome:
        steps = metrics_mod.read_steps(result_path) or []
        if stop_reason is not None:
            # A stopped trial counts with the best value it reported so far, as a finished one does.
            metric = None
            values = [s.get(spec.objective_metric) for s in steps]
            values = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                      and v == v and abs(v) != float("inf")]
            if values:
                metric = min(values) if spec.objective.value == "minimize" else max(values)
            state = TrialState.FAILED if stop_reason.startswith("timed out") else TrialState.STOPPED
            return Outcome(state, metric=metric if state is TrialState.STOPPED else None, reason=stop_reason,
                           exit_code=returncode, steps=steps)
        if returncode != 0:
            tail = self._tail(log_path)
            reason = f"script exited with code {returncode}"
            if returncode < 0:
                reason = f"script killed by signal {-returncode}"
            if tail:
                # The last line of output is usually the exception; it leads so that one-line views show it.
                reason += f": {tail.splitlines()[-1].strip()}\nlast output:\n{tail}"
            return Outcome(TrialState.FAILED, reason=reason,
                           exit_code=returncode, steps=steps)
        try:
            entries = metrics_mod.read_entries(result_path)
            result = metrics_mod.score(entries, spec.objective_metric, spec.objective, spec.additional_metrics)
        except metrics_mod.MetricsError as exc:
            return Outcome(TrialState.FAILED, reason=str(exc), exit_code=returncode, steps=steps)
        return Outcome(TrialState.FINISHED, metric=result.metric, metrics=result.metrics, exit_code=returncode,
                       steps=result.steps)


# --- result archives for API servers on other hosts -------------------------------------------------------------
# An API server that does not share the worker's disk serves GET /execs/{id}/result from a zip of RESULT_DIR that
# the worker stores in Redis at the end of each attempt, up to a size limit.

#: Default largest zipped RESULT_DIR stored in Redis (``Settings.max_result_zip_bytes``, OPENHPO_MAX_RESULT_ZIP_BYTES).
MAX_RESULT_ZIP_BYTES = 32 * 1024 * 1024


def result_zip_key(store: RedisStore, task: str, trial_id: int) -> str:
    """Redis key of a trial's result hash: ``attempt``, and ``zip`` (the archive) or ``error`` (why there is none)."""
    return f"{store.prefix}:result:{task}:{trial_id}"


def zip_directory(directory: Path, output: Any, max_bytes: int | None = None) -> bool:
    """Write ``directory`` as a zip (paths relative to it) to the binary file ``output``.

    Returns:
        ``False``, leaving ``output`` incomplete, as soon as it grows past ``max_bytes``; ``True`` otherwise.
    """
    import zipfile

    # strict_timestamps=False stores files dated before 1980 (extracted from reproducible tarballs) as 1980.
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1,
                         strict_timestamps=False) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue  # links may point anywhere on the worker's disk; sockets and pipes have no content
            archive.write(path, path.relative_to(directory).as_posix())
            if max_bytes is not None and output.tell() > max_bytes:
                return False
    return max_bytes is None or output.tell() <= max_bytes


def publish_result_zip(store: RedisStore, task: str, trial_id: int, attempt: int, attempt_dir: Path, bound,
                       limit: int = MAX_RESULT_ZIP_BYTES) -> None:
    """Store a zip of the attempt's RESULT_DIR in Redis, or the reason it was left out; never raises.

    ``limit`` is the largest zip stored, in bytes (``Settings.max_result_zip_bytes``); 0 stores none.
    """
    import io

    try:
        if limit <= 0:
            return
        key = result_zip_key(store, task, trial_id)
        buffer = io.BytesIO()
        if zip_directory(attempt_dir, buffer, limit):
            store.redis.hset(key, mapping={"attempt": attempt, "zip": buffer.getvalue(), "error": ""})
        else:
            store.redis.hset(key, mapping={"attempt": attempt, "zip": "", "error": f"the zipped result directory "
                                           f"is over OPENHPO_MAX_RESULT_ZIP_BYTES ({limit} bytes)"})
    except Exception:  # the trial's result matters more than its archive: record the trial regardless
        bound.warning("storing the result archive failed", exc_info=True)
