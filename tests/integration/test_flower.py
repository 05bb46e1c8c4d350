"""Flower, started as compose.yaml starts it, lists trial tasks with their task, trial, attempt and params."""

from __future__ import annotations

import ast
import sys

import httpx
import pytest

from openhpo.local import free_port
from tests.conftest import SCRIPTS, script_body, wait_for

pytestmark = pytest.mark.integration


def test_flower_lists_trials_with_arguments(deployment):
    port = free_port()
    deployment.spawn([sys.executable, "-m", "celery", "-A", "workers.tasks", "flower", f"--port={port}",
                      "--address=127.0.0.1"], "flower", FLOWER_BASIC_AUTH="admin:flower-secret")
    deployment.start_worker()
    deployment.start_coordinator()
    base = f"http://127.0.0.1:{port}"
    auth = ("admin", "flower-secret")

    def flower_sees_worker() -> bool:
        try:
            response = httpx.get(f"{base}/api/workers", params={"refresh": "1"}, auth=auth, timeout=5)
        except httpx.TransportError:
            return False
        return response.status_code == 200 and any(deployment.prefix in name for name in response.json())

    wait_for(flower_sees_worker, 30, interval=0.5, what=f"Flower to list the worker; logs in {deployment.log_dir}")
    assert httpx.get(f"{base}/api/tasks", timeout=5).status_code == 401

    name = deployment.submit(script_body("ok.py", max_jobs=2, parallel=2), SCRIPTS)
    assert deployment.wait_task(name, timeout=60) == "FINISHED"

    def listed_trials() -> list[dict]:
        tasks = httpx.get(f"{base}/api/tasks", auth=auth, timeout=5).json()
        trials = [task for task in tasks.values() if task["name"] == "openhpo.run_trial"
                  and task["state"] == "SUCCESS"]
        return trials if len(trials) == 2 else []

    trials = wait_for(listed_trials, 20, interval=0.5, what="Flower to list both trial tasks")
    kwargs = sorted((ast.literal_eval(task["kwargs"]) for task in trials), key=lambda k: k["trial"])
    assert [k["trial"] for k in kwargs] == [0, 1]
    assert {k["task"] for k in kwargs} == {name}
    assert {k["attempt"] for k in kwargs} == {1}
    stored = {trial.id: trial.config for trial in deployment.store.get_trials(name)}
    assert [k["params"] for k in kwargs] == [stored[0], stored[1]]
