"""Elastic distributed trials end to end: real Celery workers, real Redis, torch elastic with gloo on the CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from broker.store import RedisStore
from edt.store import GangStore, gang_id
from hpo_core.records import TrialState
from tests.conftest import REPO, SCRIPTS, wait_for

pytestmark = pytest.mark.integration

DIGITS_DDP = REPO / "examples" / "digits_ddp"
DIGITS = REPO / "examples" / "digits" / "train.py"
FAKE_NVML = REPO / "tests" / "fake_nvml"
#: Short gathering and recovery times, so that the tests stay fast.
EDT_ENV = {"OPENHPO_EDT_GATHER_TIMEOUT": "4", "OPENHPO_EDT_YIELD_DELAY": "1", "OPENHPO_EDT_SETTLE_TIME": "0.5",
           "OPENHPO_EDT_LINGER": "2", "OPENHPO_EDT_RESULT_GRACE": "5", "OMP_NUM_THREADS": "1"}
#: Hyperparameters of the accuracy comparison: Adam at a learning rate where the digits MLP trains steadily.
FIXED_CONFIG = {"learning_rate": 0.002, "hidden": 128, "dropout": 0.1, "optimizer": "adam", "batch_size": 32}


def _grid_body(args: str, config: dict[str, Any], metric: str = "accuracy", objective: str = "maximize",
               jobs: int = 1, parallel: int = 1) -> dict[str, Any]:
    """A task definition that runs ``jobs`` trials of one fixed configuration."""
    params = [{"name": key, "dataType": "STR" if isinstance(value, str) else
               "INT" if isinstance(value, int) else "DOUBLE", "fixedVal": str(value)}
              for key, value in config.items()]
    return {
        "modelSpec": {"args": args},
        "algoDef": {"algorithm": "ExperimentGridSearch", "maxJobNum": jobs, "maxParalleJobNum": parallel,
                    "objectiveMetric": metric, "objective": objective},
        "experiments": [{"id": i, "hyperParams": params} for i in range(jobs)],
    }


def _start(deployment, workers: int, **extra: str) -> None:
    for _ in range(workers):
        deployment.start_worker(concurrency=1, **EDT_ENV, **extra)
    deployment.start_coordinator()


def _gang(deployment, name: str, trial: int = 0, attempt: int = 1):
    gangs = GangStore(deployment.store)
    return gangs, gang_id(name, trial, attempt)


def _running_gang(deployment, name: str, members: int, trial: int = 0) -> dict[int, dict[str, Any]]:
    """Wait until ``members`` members of the trial's gang run a launcher; return their records by slot."""
    gangs, gid = _gang(deployment, name, trial)

    def launched():
        found = gangs.members(gid)
        running = {slot: info for slot, info in found.items() if info.get("launcher_pid")}
        return running if len(running) >= members else None

    return wait_for(launched, 60, what=f"{members} launched members; logs in {deployment.log_dir}")


def _children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _worker_of(deployment, pool_pid: int) -> subprocess.Popen:
    """The deployment's Celery worker whose pool process is ``pool_pid``."""
    status = Path(f"/proc/{pool_pid}/status").read_text()
    parent = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
    return next(worker for worker in deployment.workers if worker.pid == parent)


def _terminal_events(store: RedisStore, name: str, trial: int) -> list[str]:
    events = store.redis.xrange(store.events_key)
    return [fields[b"event"].decode() for _id, fields in events
            if fields.get(b"task") == name.encode() and fields.get(b"trial") == str(trial).encode()
            and fields[b"event"] in (b"FINISHED", b"FAILED", b"STOPPED")]


def _single_process_accuracy(tmp_path: Path, epochs: int) -> float:
    """Best validation accuracy of examples/digits/train.py run as one plain process with FIXED_CONFIG."""
    run_dir = tmp_path / "single"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps(FIXED_CONFIG))
    env = {**os.environ, "RESULT_DIR": str(run_dir), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(DIGITS), "--epochs", str(epochs)], cwd=run_dir, env=env, check=True,
                   capture_output=True, timeout=120)
    entries = json.loads((run_dir / "val_dict_list.json").read_text())
    return max(entry["accuracy"] for entry in entries)


# --- gathering rules, on the real Redis without workers -----------------------------------------------------------

def test_gather_older_short_gang_gets_slots(deployment):
    gangs = GangStore(deployment.store)
    older, younger = gang_id("t", 0, 1), gang_id("t", 1, 1)
    info = {"worker": "test"}

    assert gangs.join(older, 0, "a0", info, 5.0, 2, 2, priority=1.0) == "gathering"
    assert gangs.join(younger, 0, "b0", info, 5.0, 2, 2, priority=2.0) == "gathering"
    assert gangs.join(younger, 0, "other", info, 5.0, 2, 2, priority=2.0) == "taken"

    # Both gangs hold one worker slot: the younger one gives its slot back, the older one keeps waiting.
    assert gangs.gather(younger, 0, "b0", info, 5.0, 0.0, "owner-b").state == "yield"
    assert gangs.gather(older, 0, "a0", info, 5.0, 0.0, "owner-a").state == "wait"
    gangs.leave(younger, 0, "b0")

    assert gangs.join(older, 1, "a1", info, 5.0, 2, 2, priority=1.0) == "gathering"
    formed = gangs.gather(older, 1, "a1", info, 5.0, 0.0, "owner-a")
    assert formed.state == "host"
    assert formed.live == 2
    state = gangs.read(older)
    assert state.phase == "running"
    assert state.host == 1
    assert state.generation == 1
    assert state.owner == "owner-a"
    assert gangs.gather(older, 0, "a0", info, 5.0, 0.0, "owner-a").state == "running"

    # The older gang no longer gathers, so the younger one may wait for its members.
    assert gangs.join(younger, 1, "b1", info, 5.0, 2, 2, priority=2.0) == "gathering"
    assert gangs.gather(younger, 1, "b1", info, 5.0, 0.0, "owner-b").state == "wait"


def test_gather_ignores_gang_of_dead_members(deployment):
    gangs = GangStore(deployment.store)
    older, younger = gang_id("t", 0, 1), gang_id("t", 1, 1)
    info = {"worker": "test"}
    gangs.join(older, 0, "a0", info, 0.3, 2, 2, priority=1.0)
    gangs.join(younger, 0, "b0", info, 5.0, 2, 2, priority=2.0)
    assert gangs.gather(younger, 0, "b0", info, 5.0, 0.0, "owner-b").state == "yield"

    time.sleep(0.5)  # the older gang's only member stops renewing its lease

    assert gangs.gather(younger, 0, "b0", info, 5.0, 0.0, "owner-b").state == "wait"
    assert deployment.client.zrange(gangs.gathering_key, 0, -1) == [younger.encode()]


def test_take_over_only_after_host_lease_expires(deployment):
    gangs = GangStore(deployment.store)
    gid = gang_id("t", 0, 1)
    info = {"worker": "test"}
    gangs.join(gid, 0, "m0", info, 0.3, 1, 2, priority=1.0)
    gangs.join(gid, 1, "m1", info, 5.0, 1, 2, priority=1.0)
    assert gangs.gather(gid, 0, "m0", info, 0.3, 0.0, "owner").state == "host"
    assert gangs.publish(gid, 1, 0, "127.0.0.1:1")
    assert gangs.take_over(gid, 1, 1, max_restarts=1) == ("alive", 1)

    time.sleep(0.5)

    assert gangs.take_over(gid, 1, 1, max_restarts=1) == ("host", 2)
    assert gangs.take_over(gid, 1, 0, max_restarts=1) == ("moved", 2)
    assert not gangs.publish(gid, 1, 0, "127.0.0.1:2")
    assert gangs.read(gid).endpoint == ""
    assert gangs.publish(gid, 2, 1, "127.0.0.1:3")
    assert gangs.read(gid).endpoint == "127.0.0.1:3"
    deployment.client.delete(gangs.lease_key(gid, 1))
    assert gangs.take_over(gid, 2, 0, max_restarts=1) == ("exhausted", 2)


# --- whole trials --------------------------------------------------------------------------------------------------

def test_two_member_trial_matches_single_process(deployment, tmp_path):
    epochs = 15
    _start(deployment, workers=2)
    args = f"--exec-start edtPyTorch --model-main train.py --edt-options maxWorkers=2,minWorkers=2 --epochs {epochs}"
    name = deployment.submit(_grid_body(args, FIXED_CONFIG), DIGITS_DDP)
    single = _single_process_accuracy(tmp_path, epochs)

    assert deployment.wait_task(name, timeout=150) == "FINISHED", deployment.logs()
    trial = deployment.store.get_trial(name, 0)
    assert trial.state is TrialState.FINISHED, trial.reason
    assert abs(trial.metric - single) <= 0.02, (trial.metric, single)
    assert [step["steps"] for step in trial.steps] == list(range(1, epochs + 1))
    assert {step["world_size"] for step in trial.steps} == {2}
    members = trial.usage["members"]
    assert [member["slot"] for member in members] == [0, 1]
    assert len({member["worker"] for member in members}) == 2
    assert trial.usage["edt"]["formed_with"] == 2
    assert _terminal_events(deployment.store, name, 0) == ["FINISHED"]


@pytest.mark.parametrize("victim", ["member", "host"])
def test_killed_member_trial_completes_once(deployment, victim):
    epochs = 12
    _start(deployment, workers=3)
    args = (f"--exec-start edtPyTorch --model-main train.py --edt-options maxWorkers=2,minWorkers=1 "
            f"--epochs {epochs} --epoch-seconds 0.4")
    name = deployment.submit(_grid_body(args, FIXED_CONFIG), DIGITS_DDP)
    members = _running_gang(deployment, name, members=2)
    wait_for(lambda: len(deployment.store.get_trial(name, 0).steps) >= 3, 90, what="3 epochs")
    gangs, gid = _gang(deployment, name)
    host = gangs.read(gid).host
    slot = host if victim == "host" else next(s for s in members if s != host)
    killed_worker = members[slot]["worker"]
    launcher = members[slot]["launcher_pid"]
    training = _children(launcher)
    assert training, "the launcher has no training process"

    deployment.kill(_worker_of(deployment, members[slot]["pid"]))

    for pid in [launcher, *training]:
        wait_for(lambda: not _alive(pid), 10, what=f"process {pid} of the killed member to end")
    assert deployment.wait_task(name, timeout=150) == "FINISHED", deployment.logs()
    trial = deployment.store.get_trial(name, 0)
    assert trial.state is TrialState.FINISHED, trial.reason
    assert trial.attempt == 1
    assert [step["steps"] for step in trial.steps] == list(range(1, epochs + 1))
    assert trial.metric > 0.9
    assert _terminal_events(deployment.store, name, 0) == ["FINISHED"]
    gang = gangs.read(gid)
    assert gang.replacements == 1
    # The third worker took the replacement member message and joined the group.
    replacement = next(member for member in trial.usage["members"] if member["slot"] == slot)
    assert replacement["worker"] != killed_worker
    if victim == "host":
        assert gang.generation == 2
        assert gang.restarts == 1
    else:
        assert gang.generation == 1


def test_stop_kills_every_member_process(deployment):
    _start(deployment, workers=2)
    args = "--exec-start edtPyTorch --model-main ddp_steps.py --edt-options maxWorkers=2 --steps 600 --step-seconds 0.1"
    name = deployment.submit(_grid_body(args, {"x": 2.0}, metric="loss", objective="minimize"), SCRIPTS)
    members = _running_gang(deployment, name, members=2)
    pids = [info["launcher_pid"] for info in members.values()]
    wait_for(lambda: all(_children(pid) for pid in pids), 60, what="training processes of both members")
    pids += [child for pid in pids for child in _children(pid)]
    wait_for(lambda: len(deployment.store.get_trial(name, 0).steps) >= 2, 60, what="2 steps")

    deployment.store.request_stop(name)

    assert deployment.wait_task(name, timeout=60) == "STOPPED", deployment.logs()
    trial = deployment.store.get_trial(name, 0)
    assert trial.state is TrialState.STOPPED
    assert trial.metric == pytest.approx(4.0)
    for pid in pids:
        wait_for(lambda: not _alive(pid), 15, what=f"member process {pid} to end")


def test_wide_trials_on_few_workers_finish(deployment):
    _start(deployment, workers=3)
    args = ("--exec-start edtPyTorch --model-main ddp_steps.py --edt-options maxWorkers=2,minWorkers=2 "
            "--steps 10 --step-seconds 0.2")
    name = deployment.submit(_grid_body(args, {"x": 1.0}, metric="loss", objective="minimize", jobs=2,
                                        parallel=2), SCRIPTS)

    assert deployment.wait_task(name, timeout=150) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(name)
    assert [t.state for t in trials] == [TrialState.FINISHED, TrialState.FINISHED]
    for trial in trials:
        assert {step["world_size"] for step in trial.steps} == {2}
        assert trial.attempt == 1


def test_members_get_own_fake_gpus(deployment):
    fake_path = os.pathsep.join([str(FAKE_NVML), str(REPO)])
    _start(deployment, workers=2, PYTHONPATH=fake_path, FAKE_NVML_GPUS="4")
    args = "--exec-start edtPyTorch --model-main ddp_steps.py --edt-options maxWorkers=2 --steps 15 --step-seconds 0.1"
    name = deployment.submit(_grid_body(args, {"x": 3.0}, metric="loss", objective="minimize"), SCRIPTS)

    assert deployment.wait_task(name, timeout=120) == "FINISHED", deployment.logs()
    trial = deployment.store.get_trial(name, 0)
    result_dir = Path(deployment.store.trial_extras(name, 0)["result_dir"])
    seen = [json.loads(path.read_text()) for path in (result_dir / "processes").glob("*.json")]
    devices = {entry["slot"]: entry["cuda_visible_devices"] for entry in seen}
    assert sorted(devices) == ["0", "1"]
    assert devices["0"] != devices["1"]
    gpus = trial.usage["gpus"]
    assert sorted(gpu["slot"] for gpu in gpus) == [0, 1]
    assert len({gpu["index"] for gpu in gpus}) == 2
    assert all(gpu["samples"] >= 1 for gpu in gpus)
    from openhpo.status import task_status

    assert task_status(deployment.store, name)["experiments"][0]["usage"]["gpus"] == gpus
