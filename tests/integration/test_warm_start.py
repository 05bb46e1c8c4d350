"""Trials forked from the worker's warm interpreter behave like freshly started scripts."""

from __future__ import annotations

import pytest

from hpo_core.records import TrialState
from tests.conftest import SCRIPTS, script_body

pytestmark = pytest.mark.integration

SPACE = [{"name": "code", "type": "Discrete", "dataType": "INT", "discreteIntVal": [0, 4]}]
ADDITIONAL = {name: "latest" for name in ("preloaded", "main", "argv_ok", "cwd_ok", "path_ok")}


@pytest.mark.parametrize("warm_imports, preloaded", [("torch", 1.0), ("", 0.0)])
def test_warm_and_cold_start_behave_alike(deployment, warm_imports, preloaded):
    deployment.start_worker(concurrency=1, OPENHPO_WARM_IMPORTS=warm_imports)
    deployment.start_coordinator()
    body = script_body("warm_probe.py", "--flag", "value", max_jobs=2, parallel=1, space=SPACE,
                       algorithm="Random", additionalMetrics=ADDITIONAL)
    name = deployment.submit(body, SCRIPTS)

    assert deployment.wait_task(name, timeout=120) == "FINISHED", deployment.logs()
    trials = {t.config["code"]: t for t in deployment.store.get_trials(name)}
    ok = trials[0]
    assert ok.state is TrialState.FINISHED
    assert ok.metrics == {"preloaded": preloaded, "main": 1.0, "argv_ok": 1.0, "cwd_ok": 1.0, "path_ok": 1.0}
    log = deployment.store.get_log(name, ok.id).decode()
    assert "probe" in log
    assert "to stderr" in log
    failed = trials[4]
    assert failed.state is TrialState.FAILED
    assert failed.exit_code == 4
    assert "script exited with code 4" in failed.reason
