"""The Celery task and the processes of one member of an elastic distributed trial.

A trial whose ``maxWorkers`` is above 1 runs as a gang of members, one Celery message ``openhpo.run_member`` per
worker slot (see :mod:`edt.gang` for how the members gather, elect a host and recover). One member, in one Celery
pool process:

1. takes the GPUs it needs (:mod:`workers.gpus`) and joins its gang. While the gang gathers, the member may give its
   worker slot back: it sends the same message again with a delay and ends the task;
2. once the gang runs, prepares the attempt's ``RESULT_DIR`` (shared by the members on one host, and prepared once
   there) and starts ``python -m edt.launch`` (a torch elastic agent) in a session of its own;
3. every ``heartbeat_interval`` renews its slot lease and the trial lease, samples GPU usage, publishes
   intermediate results, and watches for a stop request, a lost attempt, a new generation and a lost host. The host
   also replaces members whose slot lease expired;
4. when the launcher ends, records the trial through the attempt-guarded ``store.finish`` if it ran as rank 0, or
   if it is the host and the group failed (or rank 0 did not record in time).

Stopping the trial kills every member's launcher, whose agent kills its training processes. A training process also
dies with its agent (:mod:`edt.child`), and a launcher dies with its member's pool process. So a killed worker
leaves no process behind on its host.

The task is idempotent on (task, trial, attempt, slot): a redelivered message whose attempt ended, or whose slot a
live member holds, does nothing.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import structlog
from celery.signals import worker_process_init

import edt
from broker.app import RUN_MEMBER, app
from broker.settings import Settings, get_settings
from broker.store import RedisStore, TaskRecord
from edt.gang import GangMember, MemberOrder, advertised_address
from edt.settings import EdtSettings, get_edt_settings
from edt.store import GangState
from hpo_core.errors import SpecError, TaskNotFoundError
from hpo_core.records import Trial, TrialState
from hpo_core.spec import TaskSpec
from workers import metrics as metrics_mod
from workers.code import ArchiveError
from workers.gpus import ACQUIRE_WAIT_SECONDS, GpuAllocator, GpuLease, NoFreeGpuError
from workers.runner import KILL_GRACE_SECONDS, Outcome, TrialRunner, _die_with_parent, kill_group, worker_id

log = structlog.get_logger("openhpo.worker")

#: Seconds between checks of the launcher process and the result file.
_TICK_SECONDS = 0.2
#: Marker file of a prepared attempt directory; it contains the path of the script's working directory.
_READY_MARKER = ".openhpo-ready"


@dataclass(frozen=True)
class MemberResult:
    """Outcome of a member task. A ``retry_in`` of N means: send the member message again after N seconds."""

    status: str
    retry_in: float | None = None


def max_restarts_of(spec: TaskSpec, default: int) -> int:
    """Read the ``maxRestarts`` key of ``--edt-options`` in ``modelSpec.args``; return ``default`` without one.

    Raises:
        SpecError: the value is not a whole number >= 0.
    """
    tokens = shlex.split(spec.model.args)
    options = ""
    for index, token in enumerate(tokens):
        if token == "--edt-options" and index + 1 < len(tokens):
            options = tokens[index + 1]
        elif token.startswith("--edt-options="):
            options = token.partition("=")[2]
    for part in options.split(","):
        key, _eq, value = part.partition("=")
        if key.strip() != "maxRestarts":
            continue
        try:
            restarts = int(value.strip())
        except ValueError:
            restarts = -1
        if restarts < 0:
            raise SpecError("modelSpec.args --edt-options maxRestarts", "must be a whole number >= 0", value,
                            "write e.g. --edt-options maxWorkers=2,maxRestarts=3")
        return restarts
    return default


def _warm_torch_import() -> None:
    """Import torch.distributed in a background thread while the member gathers.

    The host needs it for its rendezvous store, and the first import in a pool process takes seconds.
    """
    if "torch.distributed" not in sys.modules:
        threading.Thread(target=importlib.import_module, args=("torch.distributed",), name="torch-import",
                         daemon=True).start()


class MemberRunner:
    """Runs gang members for one worker process.

    Args:
        store: the Redis store.
        settings: work directory, heartbeat and lease timing.
        edt_settings: gathering and recovery settings.
        trials: the process's trial runner, whose directory, command and environment rules members share.
        allocator: the GPU allocator, or ``None`` on a CPU host.
        send: sends a member message again, after a delay in seconds.
    """

    def __init__(self, store: RedisStore, settings: Settings, edt_settings: EdtSettings, trials: TrialRunner,
                 allocator: GpuAllocator | None, send: Callable[[MemberOrder, float], None]):
        self.store = store
        self.settings = settings
        self.edt = edt_settings
        self.trials = trials
        self.allocator = allocator
        self.send = send
        self.worker = worker_id()
        self.address = advertised_address(settings.redis_url, edt_settings.host_address)
        self._specs: dict[tuple[str, float], TaskSpec] = {}

    def run(self, order: MemberOrder) -> MemberResult:
        """Run one member message to its end; see the module docstring."""
        bound = log.bind(task=order.task, trial=order.trial, attempt=order.attempt, slot=order.slot,
                         worker=self.worker)
        _warm_torch_import()
        try:
            trial = self.store.get_trial(order.task, order.trial)
        except KeyError:
            return MemberResult("skipped: no such trial")
        if trial.attempt != order.attempt or trial.state.ended:
            bound.info("member skipped", reason="the attempt is no longer current")
            return MemberResult("skipped: the attempt is no longer current")
        try:
            task = self.store.get_task(order.task)
        except TaskNotFoundError:
            return MemberResult("skipped: no such task")
        spec = self._spec(task)
        try:
            max_restarts = max_restarts_of(spec, self.edt.max_restarts)
        except SpecError as exc:
            self.claim_and_fail(order, str(exc), bound)
            return MemberResult("failed: invalid --edt-options")

        gpus: GpuLease | None = None
        gpu_count = 1 if spec.model.gpus_per_worker is None else spec.model.gpus_per_worker
        if self.allocator is not None and gpu_count > 0:
            try:
                gpus = self.allocator.acquire(gpu_count, wait=ACQUIRE_WAIT_SECONDS, owner=order.gang)
            except NoFreeGpuError as exc:
                delay = self.edt.yield_delay
                bound.warning("no free GPU for the member; giving the worker slot back", error=str(exc))
                return MemberResult("yielded: no free GPU", retry_in=delay)
            except ValueError as exc:  # more GPUs per worker than this host has: no retry can help
                self.claim_and_fail(order, str(exc), bound)
                return MemberResult("failed: too many GPUs per worker")
        info = {"worker": self.worker, "hostname": socket.gethostname(), "pid": os.getpid(), "launcher_pid": None}
        member = GangMember(self.store, order, self.edt, self.settings.lease_ttl, info=info)
        membership = _Membership(self, member, spec, task, trial, gpus, max_restarts, bound)
        try:
            phase = member.join(priority=(trial.created or 0.0) + trial.id * 1e-6)
            if phase in ("done", "taken"):
                bound.info("member skipped", reason=f"the gang is {phase}" if phase == "done"
                           else "a live member has this slot")
                return MemberResult(f"skipped: {phase}")
            return membership.run(phase)
        except Exception as exc:  # a fault of ours must not leave the trial RUNNING without its host
            bound.error("gang member crashed in the worker", exc_info=True)
            membership.fail_if_host(f"worker error in member {order.slot}: {type(exc).__name__}: {exc}")
            return MemberResult("failed: worker error")
        finally:
            membership.close()

    def _spec(self, task: TaskRecord) -> TaskSpec:
        key = (task.name, task.created)
        if key not in self._specs:
            self._specs[key] = TaskSpec.parse(task.spec)
        return self._specs[key]

    def claim_and_fail(self, order: MemberOrder, reason: str, bound) -> None:
        """Fail a trial that cannot start, if it is still QUEUED for this attempt."""
        claim = self.store.claim(order.task, order.trial, order.attempt, f"gang/{self.worker}",
                                 self.settings.lease_ttl)
        if claim.status == "ok":
            self.store.finish(order.task, order.trial, order.attempt, TrialState.FAILED, reason=reason)
            bound.warning("trial failed", reason=reason)


class _Membership:
    """The state of one member while it runs: its gang handle, directories, launcher and GPUs."""

    def __init__(self, runner: MemberRunner, member: GangMember, spec: TaskSpec, task: TaskRecord, trial: Trial,
                 gpus: GpuLease | None, max_restarts: int, bound):
        self.runner = runner
        self.store = runner.store
        self.edt = runner.edt
        self.member = member
        self.order = member.order
        self.spec = spec
        self.task = task
        self.trial = trial
        self.gpus = gpus
        self.max_restarts = max_restarts
        self.bound = bound
        self.interval = runner.settings.heartbeat_interval
        self.attempt_dir = (Path(runner.settings.work_dir).resolve() / self.order.task / str(self.order.trial) /
                            f"attempt-{self.order.attempt}")
        self.member_dir = self.attempt_dir / "log" / f"member-{self.order.slot}"
        self.result_path = self.attempt_dir / metrics_mod.RESULT_FILE
        self.log_path = self.member_dir / "stdout"
        self.cwd: Path | None = None
        self.command: list[str] = []
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.launches = 0
        self.rejoins = 0
        self._steps_mtime = 0.0

    # --- main loop ----------------------------------------------------------------------------------------------

    def run(self, phase: str) -> MemberResult:
        if phase == "gathering":
            gathered = self.member.gather(owner=f"gang/{self.runner.worker}")
            if gathered.state == "yield":
                yields = self.order.yields + 1
                # A gang that keeps timing out may never fit the deployment: warn about it, but only now and then.
                level = self.bound.warning if gathered.timed_out and yields % 10 == 1 else self.bound.info
                level("member gives its worker slot back", reason=gathered.reason, retry_in=round(gathered.delay, 2),
                      yields=yields)
                return MemberResult("yielded", retry_in=gathered.delay)
            if gathered.state in ("ended", "lost"):
                self.bound.info("member skipped", reason=gathered.reason)
                return MemberResult(f"skipped: {gathered.reason}")
        return self._run_gang()

    def _run_gang(self) -> MemberResult:
        try:
            with self._keepalive():
                self._prepare()
            self.command = self.runner.trials._command(self.spec, self.cwd)
        except ArchiveError as exc:
            gang = self.member.read()
            if gang is not None and gang.host == self.order.slot:
                self.runner.claim_and_fail(self.order, str(exc), self.bound)
                self.member.end("the trial failed before it started")
                return MemberResult("failed: unusable code")
            return MemberResult("left: unusable code")
        while True:
            gang = self.member.read()
            state = self.member.trial_state()
            if gang is None or gang.phase != "running" or state is None or state.ended:
                return MemberResult("left: the trial attempt or its gang ended")
            if gang.host == self.order.slot and not gang.endpoint:
                result = self._host(gang)
                if result is not None:
                    return result
                continue
            if not gang.endpoint:
                event = self._wait_for_endpoint(gang)
            else:
                event, outcome = self._run_generation(gang)
                if event == "exit":
                    result = self._after_exit(gang, outcome or {})
                    if result is not None:
                        return result
                    continue
            result = self._handle(event, gang)
            if result is not None:
                return result

    def _handle(self, event: str, gang: GangState) -> MemberResult | None:
        """Act on a heartbeat event; ``None`` means: go on with the gang's current generation."""
        if event in ("ok", "changed", "moved"):
            return None
        if event == "host_lost":
            return self._take_over(gang)
        if event == "stop":
            return self._stopped()
        if event == "lost":
            self.bound.warning("member lost its attempt or its slot; launcher killed, nothing recorded")
            return MemberResult("lost")
        if event == "timeout":
            self._kill_launcher()
            self._record_failure(f"timed out after {self.spec.trial_timeout:g} s (algoDef.trialTimeout)")
            return MemberResult("failed: timed out")
        return MemberResult("left: the trial attempt or its gang ended")

    # --- host ---------------------------------------------------------------------------------------------------

    def _host(self, gang: GangState) -> MemberResult | None:
        """Serve the rendezvous store, claim the trial unless another host did, and publish the endpoint."""
        # Starting the store imports torch, which can outlast a lease: keep the leases alive meanwhile.
        with self._keepalive():
            self.member.start_server(self.runner.address)
        state = self.member.trial_state()
        if state is TrialState.QUEUED:
            claim = self.store.claim(self.order.task, self.order.trial, self.order.attempt, gang.owner,
                                     self.runner.settings.lease_ttl, str(self.attempt_dir))
            if claim.status != "ok":
                self.member.end(f"the trial could not be claimed: {claim.status}")
                self.bound.info("member skipped", reason=f"claim returned {claim.status}")
                return MemberResult(f"skipped: claim returned {claim.status}")
            self.bound.info("trial started", gang_owner=gang.owner, generation=gang.generation)
        elif state is not TrialState.RUNNING:
            return MemberResult("left: the trial attempt ended")
        endpoint = self.member.publish(gang.generation)
        if endpoint is not None:
            self.bound.info("rendezvous store served", endpoint=endpoint, generation=gang.generation)
        return None

    def _take_over(self, gang: GangState) -> MemberResult | None:
        outcome, generation = self.member.take_over(gang.generation, self.max_restarts)
        if outcome == "host":
            self.bound.warning("gang host lost; this member hosts the next generation", lost_host=gang.host,
                               generation=generation)
            return None
        if outcome in ("moved", "alive"):
            return None
        if outcome == "exhausted":
            self._record_failure(f"the gang lost its host more than maxRestarts={self.max_restarts} times")
            return MemberResult("failed: host lost too often")
        return MemberResult("left: the gang ended")

    def _host_duties(self) -> None:
        replace, dropped = self.member.prune(self.max_restarts)
        for slot in replace:
            order = MemberOrder(self.order.task, self.order.trial, self.order.attempt, slot, self.order.min_workers,
                                self.order.max_workers)
            self.runner.send(order, 0.0)
            self.bound.warning("gang member lost; replacement sent", lost_slot=slot)
        for slot in dropped:
            self.bound.warning("gang member lost; no replacement left", lost_slot=slot,
                               max_restarts=self.max_restarts)
        text = TrialRunner._read_log(self.log_path)
        if text is not None:
            self.store.set_log(self.order.task, self.order.trial, text)

    def _linger(self) -> None:
        """Keep the rendezvous store up until the other members left, so that their agents shut down cleanly."""
        deadline = time.monotonic() + self.edt.linger
        while time.monotonic() < deadline:
            if self.member.gangs.live_slots(self.member.gid) == [self.order.slot]:
                return
            self.member.renew()
            time.sleep(_TICK_SECONDS)

    # --- one generation -----------------------------------------------------------------------------------------

    def _wait_for_endpoint(self, gang: GangState) -> str:
        next_beat = 0.0
        while True:
            current = self.member.read()
            if current is None or current.phase != "running":
                return "ended"
            if current.generation != gang.generation or current.endpoint:
                return "changed"
            if time.monotonic() >= next_beat:
                event = self._beat(gang.generation)
                if event != "ok":
                    return event
                next_beat = time.monotonic() + self.interval
            time.sleep(self.edt.poll_interval)

    def _run_generation(self, gang: GangState) -> tuple[str, dict[str, Any] | None]:
        """Run this member's launcher against the gang's current endpoint until it ends or an event stops it."""
        self.launches += 1

        outcome_path = self.member_dir / f"outcome-{gang.generation}-{self.launches}.json"
        argv = [sys.executable, "-m", "edt.launch",
                "--endpoint", gang.endpoint,
                "--run-id", f"{self.member.gid}:g{gang.generation}",
                "--min-nodes", str(self.order.min_workers),
                "--max-nodes", str(self.order.max_workers),
                "--max-restarts", str(self.max_restarts),
                "--local-addr", self.runner.address,
                "--join-timeout", str(self.edt.join_timeout),
                "--last-call-timeout", str(self.edt.last_call_timeout),
                "--keep-alive-interval", str(self.edt.keep_alive_interval),
                "--keep-alive-max-attempt", str(self.edt.keep_alive_max_attempt),
                "--log-dir", str(self.member_dir / "elastic"),
                "--outcome", str(outcome_path),
                "--", *self.command]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(argv, cwd=self.cwd, env=self._environment(gang), stdout=log_file,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=_die_with_parent)

        self.member.info["launcher_pid"] = self.process.pid
        self.member.renew()
        self.bound.info("member launched", generation=gang.generation, endpoint=gang.endpoint,
                        host=gang.host == self.order.slot, launcher_pid=self.process.pid)

        next_beat = time.monotonic() + self.interval
        while True:
            try:
                self.process.wait(timeout=_TICK_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            self._report_steps()
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.interval
            event = self._beat(gang.generation)
            if event != "ok":
                self._kill_launcher(grace=0 if event in ("host_lost", "moved") else KILL_GRACE_SECONDS)
                return event, None

        self._kill_launcher(grace=0)
        returncode = self.returncode
        self._report_steps()
        try:
            outcome = json.loads(outcome_path.read_text())
        except (OSError, ValueError):
            outcome = {"ok": False, "kind": "error",
                       "error": f"the launcher exited with code {returncode} and wrote no outcome"}
        return "exit", outcome

    def _after_exit(self, gang: GangState, outcome: dict[str, Any]) -> MemberResult | None:
        """Decide what a finished launcher means for the trial; ``None`` means: run the next generation."""
        current = self.member.read() or gang
        hosting = current.host == self.order.slot
        if outcome.get("ok"):
            rank = outcome.get("rank")
            self.bound.info("member training ended", rank=rank, generation=gang.generation)
            if rank == 0:
                self._record_result()
            elif hosting and not self._wait_for_trial_end(self.edt.result_grace):
                self.bound.warning("the rank 0 member did not record the result; the host records it")
                self._record_result()
            if hosting:
                self._linger()
            return MemberResult("finished")

        error = f"{outcome.get('kind', 'error')}: {outcome.get('error', '')}"
        self.bound.warning("member launcher failed", error=error, generation=gang.generation)
        # The host's failure reason quotes every member's note, so that the root cause shows in the trial record.
        tail = TrialRunner._tail(self.log_path, lines=3)
        note = error + (f" (last output: {tail})" if tail else "")
        self.member.gangs.redis.hset(self.member.gangs.gang_key(self.member.gid), f"failure:{self.order.slot}", note)
        if hosting:
            event = self._beat(gang.generation)
            if event != "ok":
                return self._handle(event, current)
            if outcome.get("kind") == "timeout":
                # Too few members came back after a loss: give the attempt up without a result, so that its lease
                # expires and the coordinator retries the trial, as it does for any trial whose worker was lost.
                self.bound.warning("the group stayed below minWorkers; attempt given up for a retry",
                                   min_workers=self.order.min_workers, error=error)
                self.member.end("too few members to go on")
                return MemberResult("abandoned: too few members")
            if outcome.get("kind") == "closed":
                time.sleep(1.0)  # the member that closed the rendezvous notes its own error first
            self._record_failure("distributed training failed", with_notes=True)
            return MemberResult("failed")

        # Not the host: the host records a group failure; otherwise this member failed alone.
        deadline = time.monotonic() + max(self.edt.failure_grace, 2 * self.runner.settings.lease_ttl)
        while time.monotonic() < deadline:
            event = self._beat(gang.generation)
            if event != "ok":
                return self._handle(event, current)
            time.sleep(self.interval)
        self.rejoins += 1
        if self.rejoins > self.max_restarts:
            return MemberResult("left: the launcher failed too often")
        self.bound.info("member rejoins its gang", rejoins=self.rejoins)
        return None

    def _stopped(self) -> MemberResult:
        self._kill_launcher()
        gang = self.member.read()
        if gang is not None and gang.host == self.order.slot:
            outcome = self.runner.trials._outcome(self.returncode if self.returncode is not None else 0, "stopped",
                                                  self.spec, self.result_path, self.log_path)
            self._finish(outcome)
        return MemberResult("stopped")

    # --- heartbeat ----------------------------------------------------------------------------------------------

    def _beat(self, generation: int) -> str:
        """Renew the leases and check the trial and the gang.

        Returns:
            ``ok``; ``stop`` (a stop was requested); ``lost`` (the attempt or the slot is another's); ``ended``;
            ``moved`` (the gang runs a newer generation); or ``host_lost``.
        """
        try:
            if not self.member.renew():
                return "lost"
            state = self.member.trial_state()
            if state is None or state.ended:
                return "ended"
            gang = self.member.read()
            if gang is None or gang.phase != "running":
                return "ended"
            if state is TrialState.RUNNING:
                beat = self.store.heartbeat(self.order.task, self.order.trial, self.order.attempt, gang.owner,
                                            self.runner.settings.lease_ttl)
                if beat in ("stop", "lost"):
                    return beat
            if gang.generation != generation:
                return "moved"
            if gang.host == self.order.slot:
                if self._timed_out():
                    return "timeout"
                self._host_duties()
            elif not self.member.host_alive(gang):
                return "host_lost"
            self._publish_usage()
        except Exception:  # Redis unreachable for a moment: keep the member, retry on the next beat
            self.bound.warning("member heartbeat failed; retrying", exc_info=True)
        return "ok"

    def _timed_out(self) -> bool:
        """Tell whether the attempt has run longer than ``algoDef.trialTimeout``, counted from the host's claim."""
        if not self.spec.trial_timeout:
            return False
        started = self.store.redis.hget(self.store.trial_key(self.order.task, self.order.trial), "started")
        return bool(started) and time.time() - float(started) > self.spec.trial_timeout

    def _wait_for_trial_end(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            state = self.member.trial_state()
            if state is None or state.ended:
                return True
            self.member.renew()
            self.store.heartbeat(self.order.task, self.order.trial, self.order.attempt,
                                 (self.member.read() or _EMPTY_GANG).owner, self.runner.settings.lease_ttl)
            time.sleep(_TICK_SECONDS)
        return False

    def _report_steps(self) -> None:
        try:
            mtime = self.result_path.stat().st_mtime
        except OSError:
            return
        if mtime == self._steps_mtime:
            return
        steps = metrics_mod.read_steps(self.result_path)
        if steps is not None:
            self._steps_mtime = mtime
            self.store.report_steps(self.order.task, self.order.trial, self.order.attempt, steps)

    def _publish_usage(self) -> None:
        usage: dict[str, Any] = {"worker": self.runner.worker, "hostname": socket.gethostname(),
                                 "launches": self.launches}
        if self.gpus is not None:
            self.gpus.sample()
            usage.update(self.gpus.usage())
        self.member.gangs.set_usage(self.member.gid, self.order.slot, usage)

    # --- directories, environment, processes --------------------------------------------------------------------

    def _prepare(self) -> None:
        """Prepare the attempt directory once per host; later members and launches on this host reuse it."""
        if self.cwd is not None:
            return
        self.attempt_dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.attempt_dir.parent / f".attempt-{self.order.attempt}.lock"
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            marker = self.attempt_dir / _READY_MARKER
            if marker.is_file():
                self.cwd = Path(marker.read_text().strip())
            else:
                self.cwd = self.runner.trials._prepare(self.spec, self.task.code, self.trial.config,
                                                       self.attempt_dir)
                (self.attempt_dir / "checkpoint").mkdir(exist_ok=True)
                marker.write_text(str(self.cwd))
        self.member_dir.mkdir(parents=True, exist_ok=True)

    def _environment(self, gang: GangState) -> dict[str, str]:
        env = self.runner.trials._environment(self.order.task, self.order.trial, self.order.attempt,
                                              self.attempt_dir, self.cwd, self.trial.meta)
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.update({
            "LOG_DIR": str(self.member_dir),
            "DLI_IS_ELASTIC": "true",
            "OPENHPO_EDT_SLOT": str(self.order.slot),
            "OPENHPO_EDT_GENERATION": str(gang.generation),
            "OPENHPO_EDT_MIN_WORKERS": str(self.order.min_workers),
            "OPENHPO_EDT_MAX_WORKERS": str(self.order.max_workers),
        })
        if self.gpus is not None:
            env.update(self.gpus.environment())
        # The launcher and edt.child run as modules, so the edt package must be importable from the script's cwd.
        package_root = str(Path(edt.__file__).resolve().parent.parent)
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if package_root not in paths:
            env["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
        return env

    def _kill_launcher(self, grace: float = KILL_GRACE_SECONDS) -> None:
        if self.process is None:
            return
        kill_group(self.process, grace=grace)
        self.returncode = self.process.returncode
        self.process = None
        self.member.info["launcher_pid"] = None

    @contextmanager
    def _keepalive(self) -> Iterator[None]:
        """Renew the slot lease, and the trial lease once the trial runs, while a blocking step runs."""
        done = threading.Event()

        def renew() -> None:
            while not done.wait(self.interval):
                try:
                    self.member.renew()
                    gang = self.member.read()
                    if gang is not None and gang.owner and self.member.trial_state() is TrialState.RUNNING:
                        self.store.heartbeat(self.order.task, self.order.trial, self.order.attempt, gang.owner,
                                             self.runner.settings.lease_ttl)
                except Exception:  # the main loop reports lasting Redis trouble
                    self.bound.debug("keep-alive beat failed", exc_info=True)

        thread = threading.Thread(target=renew, name="member-keepalive", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    # --- results ------------------------------------------------------------------------------------------------

    def _record_result(self) -> None:
        outcome = self.runner.trials._outcome(0, None, self.spec, self.result_path, self.log_path)
        self._finish(outcome)

    def _record_failure(self, reason: str, with_notes: bool = False) -> None:
        """Record the trial as FAILED; ``with_notes`` adds the members' launcher errors, script failures first."""
        text = reason
        if with_notes:
            fields = self.member.gangs.redis.hgetall(self.member.gangs.gang_key(self.member.gid))
            notes = [(key.decode().partition(":")[2], value.decode()) for key, value in fields.items()
                     if key.startswith(b"failure:")]
            notes.sort(key=lambda note: (not note[1].startswith("script:"), note[0]))
            text += "".join(f"; member {slot}: {note}" for slot, note in notes)
        else:
            tail = TrialRunner._tail(self.log_path)
            if tail:
                text += f"; last output:\n{tail}"
        steps = metrics_mod.read_steps(self.result_path) or []
        self._finish(Outcome(TrialState.FAILED, reason=text, steps=steps))

    def fail_if_host(self, reason: str) -> None:
        """Record ``reason`` as the trial's failure when this member hosts its running gang."""
        try:
            gang = self.member.read()
            if gang is not None and gang.phase == "running" and gang.host == self.order.slot:
                self._finish(Outcome(TrialState.FAILED, reason=reason))
        except Exception:
            self.bound.error("recording the member's failure failed", exc_info=True)

    def _finish(self, outcome: Outcome) -> None:
        usage = self._usage()
        written = self.store.finish(self.order.task, self.order.trial, self.order.attempt, outcome.state,
                                    metric=outcome.metric, metrics=outcome.metrics, reason=outcome.reason,
                                    exit_code=outcome.exit_code, usage=usage, steps=outcome.steps,
                                    log=TrialRunner._read_log(self.log_path))
        self.member.end(f"trial {outcome.state.value.lower()}")
        if outcome.state is TrialState.FAILED:
            self.bound.warning("trial failed", reason=outcome.reason, recorded=written)
        else:
            self.bound.info("trial ended", state=outcome.state.value, metric=outcome.metric, recorded=written,
                            members=len(usage.get("members", [])))

    def _usage(self) -> dict[str, Any]:
        """Build the trial's usage record: the gang's history and every member's GPU samples."""
        self._publish_usage()
        gang = self.member.read() or _EMPTY_GANG
        members = []
        gpus = []
        for slot, entry in sorted(self.member.gangs.usage(self.member.gid).items()):
            members.append({"slot": slot, "worker": entry.get("worker"), "hostname": entry.get("hostname"),
                            "launches": entry.get("launches")})
            gpus += [{**gpu, "slot": slot} for gpu in entry.get("gpus", [])]
        usage: dict[str, Any] = {"edt": {"min_workers": self.order.min_workers,
                                         "max_workers": self.order.max_workers,
                                         "formed_with": gang.formed_size, "generations": gang.generation,
                                         "host_takeovers": gang.restarts, "replacements": gang.replacements},
                                 "members": members}
        if gpus:
            usage["gpus"] = gpus
        return usage

    def close(self) -> None:
        try:
            self._kill_launcher()
        finally:
            if self.gpus is not None:
                self.gpus.release()
            self.member.leave()


_EMPTY_GANG = GangState(phase="", min_workers=1, max_workers=1, generation=0, host=None, endpoint="", owner="",
                        restarts=0, replacements=0, formed_size=0, reason="")


# --- Celery task --------------------------------------------------------------------------------------------------

_runner: MemberRunner | None = None


def _send_member(order: MemberOrder, delay: float) -> None:
    run_member.apply_async(kwargs=order.kwargs(), countdown=delay if delay > 0 else None,
                           queue=get_settings().queue)


def _get_runner() -> MemberRunner:
    global _runner
    if _runner is None:
        settings = get_settings()
        store = RedisStore.from_url(settings.redis_url, settings.key_prefix)
        trials = TrialRunner(store, settings)
        allocator = GpuAllocator.from_environment(settings.work_dir)
        _runner = MemberRunner(store, settings, get_edt_settings(), trials, allocator, _send_member)
    return _runner


@worker_process_init.connect
def _init_process(**_kwargs) -> None:
    global _runner
    _runner = None  # each forked child opens its own Redis connection


@app.task(name=RUN_MEMBER, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_member(task: str, trial: int, attempt: int, slot: int, min_workers: int, max_workers: int,
               yields: int = 0, params: dict | None = None) -> str:
    """Run member ``slot`` of attempt ``attempt`` of the elastic trial ``trial`` of task ``task``.

    ``params`` repeats the trial's hyperparameters so that Flower shows them. A member that gives its worker slot
    back sends this message again with a delay and ends.
    """
    order = MemberOrder(task, int(trial), int(attempt), int(slot), int(min_workers), int(max_workers), int(yields))
    result = _get_runner().run(order)
    if result.retry_in is not None:
        again = MemberOrder(order.task, order.trial, order.attempt, order.slot, order.min_workers,
                            order.max_workers, order.yields + 1)
        _send_member(again, result.retry_in)
    return result.status
