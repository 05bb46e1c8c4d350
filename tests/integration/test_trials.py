"""End-to-end trials on the real Redis with real Celery workers and training subprocesses."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hpo_core.records import TaskState, TrialState
from tests.conftest import SCRIPTS, live_processes, script_body, wait_for

pytestmark = pytest.mark.integration


def _attempt_dir(deployment, name: str, trial_id: int, attempt: int = 1) -> Path:
    return deployment.work_dir / name / str(trial_id) / f"attempt-{attempt}"


def test_task_finishes_with_typed_values(deployment):
    deployment.start_worker(concurrency=2)
    deployment.start_coordinator()
    name = deployment.submit(script_body("ok.py", max_jobs=4, parallel=2), SCRIPTS)

    assert deployment.wait_task(name, timeout=90) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(name)
    assert len(trials) == 4
    assert all(t.state is TrialState.FINISHED for t in trials)
    for trial in trials:
        config = json.loads((_attempt_dir(deployment, name, trial.id) / "_submitted_code" / "scripts" /
                             "config.json").read_text())
        assert type(config["n"]) is int
        assert type(trial.config["n"]) is int
        assert type(config["x"]) is float
        assert config == trial.config
        expected = config["x"] ** 2 + config["n"] ** 2
        assert trial.metric == pytest.approx(expected)
        assert (_attempt_dir(deployment, name, trial.id) / "log" / "stdout").read_text().startswith("loss")

    from openhpo.status import task_status

    status = task_status(deployment.store, name)
    assert status["progress"] == "4/4"
    assert status["best"]["metricVal"] == min(t.metric for t in trials)
    assert isinstance(status["best"]["values"]["n"], int)


@pytest.mark.parametrize("script, args, reason", [
    ("exit_nonzero.py", (), "script exited with code 3"),
    ("no_file.py", (), "val_dict_list.json not found"),
    ("malformed.py", (), "not valid JSON"),
    ("missing_key.py", (), "has the objective metric 'loss'"),
    ("bad_value.py", ("--kind", "nan"), "not a finite number"),
    ("bad_value.py", ("--kind", "inf"), "not a finite number"),
    ("bad_value.py", ("--kind", "string"), "not a finite number"),
    ("bad_value.py", ("--kind", "empty"), "empty list"),
])
def test_failing_trial_records_reason(deployment, script, args, reason):
    deployment.start_worker(concurrency=1)
    deployment.start_coordinator()
    name = deployment.submit(script_body(script, *args, max_jobs=1, parallel=1), SCRIPTS)

    assert deployment.wait_task(name, timeout=60) == "FAILED", deployment.logs()
    (trial,) = deployment.store.get_trials(name)
    assert trial.state is TrialState.FAILED
    assert reason in trial.reason
    assert trial.metric is None
    task = deployment.store.get_task(name)
    assert "every trial failed" in task.reason
    if script == "exit_nonzero.py":
        assert trial.exit_code == 3
        assert "stderr" in trial.reason or "not supported" in trial.reason or trial.reason.count("\n") >= 1


def test_task_goes_on_after_failures(deployment):
    deployment.start_worker(concurrency=2)
    deployment.start_coordinator()
    space = [{"name": "x", "type": "Discrete", "dataType": "INT", "discreteIntVal": [1, 2, 3]},
             {"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam"]}]
    name = deployment.submit(script_body("flaky.py", max_jobs=6, parallel=2, space=space), SCRIPTS)

    assert deployment.wait_task(name, timeout=90) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(name)
    assert len(trials) == 6
    failed = [t for t in trials if t.state is TrialState.FAILED]
    finished = [t for t in trials if t.state is TrialState.FINISHED]
    assert len(failed) == 3 and len(finished) == 3
    assert all(t.config["opt"] == "sgd" and t.exit_code == 3 for t in failed)

    from openhpo.status import task_status

    status = task_status(deployment.store, name)
    assert status["failed"] == 3
    assert status["complete"] == 6
    assert status["best"]["values"] == {"x": 1, "opt": "adam"}
    assert all(e["metricVal"] == 9999.99 for e in status["experiments"] if e["state"] == "FAILED")


@pytest.mark.parametrize("algorithm", ["Random", "Tpe"])
def test_parallel_trials_distinct_and_space_exhausted(deployment, algorithm):
    deployment.start_worker(concurrency=3)
    deployment.start_coordinator()
    space = [{"name": "a", "type": "Discrete", "dataType": "INT", "discreteIntVal": [1, 2, 3]},
             {"name": "b", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["u", "v"]}]
    body = script_body("ok.py", max_jobs=10, parallel=3, space=space, algorithm=algorithm)
    if algorithm == "Tpe":
        body["algoDef"]["algoParams"].append({"name": "WarmUp", "value": "3"})
    name = deployment.submit(body, SCRIPTS)

    assert deployment.wait_task(name, timeout=90) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(name)
    configs = [json.dumps(t.config, sort_keys=True) for t in trials]
    assert len(trials) == 6
    assert len(set(configs)) == 6
    assert deployment.store.get_task(name).reason == "search space exhausted"


def test_worker_killed_mid_trial_runs_again_once(deployment):
    doomed = deployment.start_worker(concurrency=1)
    deployment.start_coordinator()
    name = deployment.submit(script_body("sleep.py", "--seconds", "3", max_jobs=2, parallel=1), SCRIPTS)

    wait_for(lambda: deployment.store.get_trials(name) and
             deployment.store.get_trials(name)[0].state is TrialState.RUNNING, 60, what="trial 0 running")
    attempt_dir = str(_attempt_dir(deployment, name, 0, 1))
    wait_for(lambda: live_processes(attempt_dir), 20, what="the training process of attempt 1")
    killed_at = time.monotonic()
    deployment.kill(doomed, signal.SIGKILL)
    wait_for(lambda: not live_processes(attempt_dir), 10, what="the orphaned training process to die")
    deployment.start_worker(concurrency=1)

    wait_for(lambda: deployment.store.get_trial(name, 0).attempt == 2, 30, what="trial 0 re-queued")
    requeue_delay = time.monotonic() - killed_at
    assert deployment.wait_task(name, timeout=90) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(name)
    assert len(trials) == 2
    first = trials[0]
    assert first.state is TrialState.FINISHED
    assert first.attempt == 2
    assert first.metric is not None
    assert len(first.steps) == 2  # the final result of one attempt, not entries of both
    # Two heartbeat intervals (0.5 s each here) plus the lease (1.5 s) and a coordinator pass, with slack.
    assert requeue_delay < 10


def test_coordinator_restart_loses_and_repeats_nothing(deployment):
    deployment.start_worker(concurrency=2)
    first = deployment.start_coordinator()
    name = deployment.submit(script_body("sleep.py", "--seconds", "0.5", max_jobs=8, parallel=2,
                                         algorithm="Tpe"), SCRIPTS)

    wait_for(lambda: len(deployment.store.get_trials(name)) >= 3, 60, what="three trials created")
    deployment.kill(first, signal.SIGKILL)
    time.sleep(1.0)
    deployment.start_coordinator()

    assert deployment.wait_task(name, timeout=120) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(name)
    assert len(trials) == 8
    assert [t.id for t in trials] == list(range(8))
    assert all(t.state is TrialState.FINISHED for t in trials)
    assert len({json.dumps(t.config, sort_keys=True) for t in trials}) == 8
    assert all(t.attempt == 1 for t in trials)


def test_stop_task_kills_running_trials(deployment):
    deployment.start_worker(concurrency=2)
    deployment.start_coordinator()
    name = deployment.submit(script_body("sleep.py", "--seconds", "60", max_jobs=4, parallel=2), SCRIPTS)

    wait_for(lambda: sum(t.state is TrialState.RUNNING for t in deployment.store.get_trials(name)) == 2, 60,
             what="two trials running")
    dirs = [str(_attempt_dir(deployment, name, i)) for i in (0, 1)]
    wait_for(lambda: all(live_processes(d) for d in dirs), 20, what="both training processes")
    deployment.store.request_stop(name)

    assert deployment.wait_task(name, timeout=20) == "STOPPED", deployment.logs()
    wait_for(lambda: not any(live_processes(d) for d in dirs), 10, what="the training processes to end")
    trials = deployment.store.get_trials(name)
    assert {t.state for t in trials} == {TrialState.STOPPED}
    assert all(t.metric is not None for t in trials)  # each counts with its intermediate value
    with pytest.raises(Exception, match="already stopped"):
        deployment.store.request_stop(name)


def test_trial_timeout_fails_trial(deployment):
    deployment.start_worker(concurrency=1)
    deployment.start_coordinator()
    body = script_body("sleep.py", "--seconds", "30", max_jobs=1, parallel=1, trialTimeout=1.5)
    name = deployment.submit(body, SCRIPTS)

    assert deployment.wait_task(name, timeout=60) == "FAILED", deployment.logs()
    (trial,) = deployment.store.get_trials(name)
    assert trial.state is TrialState.FAILED
    assert "timed out after 1.5 s" in trial.reason


def test_invalid_stored_definition_fails_task(deployment):
    deployment.start_coordinator()
    deployment.store.create_task("broken-1", {"modelSpec": {"args": "python x.py"}, "algoDef": {}}, "tester")

    assert deployment.wait_task("broken-1", timeout=30) == "FAILED"
    assert "algoDef" in deployment.store.get_task("broken-1").reason
    assert deployment.store.get_task("broken-1").state is TaskState.FAILED
