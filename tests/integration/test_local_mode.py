"""``openhpo run`` in local mode: embedded Redis, local Celery workers, clean shutdown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

from tests.conftest import REPO, SCRIPTS, live_processes, script_body, wait_for

pytestmark = pytest.mark.integration


def _run_cli(tmp_path, body, *extra, marker):
    spec = tmp_path / "code" / "spec.json"
    shutil.copytree(SCRIPTS, tmp_path / "code")
    spec.write_text(json.dumps(body))
    env = dict(os.environ, OPENHPO_TEST_MARKER=marker, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "openhpo.cli", "run", str(spec), "--workers", "2",
                             "--work-dir", str(tmp_path / "work"), *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_prints_best_and_leaves_nothing(tmp_path):
    marker = f"marker-{uuid.uuid4().hex}"
    process = _run_cli(tmp_path, script_body("ok.py", max_jobs=4, parallel=2), "--json", marker=marker)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    status = json.loads(stdout)
    assert status["state"] == "FINISHED"
    assert status["progress"] == "4/4"
    assert len(status["experiments"]) == 4
    assert status["best"]["metricVal"] == min(e["metricVal"] for e in status["experiments"])
    assert "local cluster: Redis redis://127.0.0.1:" in stderr
    assert live_processes(marker) == []


def test_run_table_output(tmp_path):
    marker = f"marker-{uuid.uuid4().hex}"
    process = _run_cli(tmp_path, script_body("ok.py", max_jobs=2, parallel=2), marker=marker)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    assert "best hyperparameters:" in stdout
    assert "FINISHED" in stdout
    assert "maxJobNum reached" in stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_run_interrupted_stops_everything(tmp_path, signum):
    marker = f"marker-{uuid.uuid4().hex}"
    process = _run_cli(tmp_path, script_body("sleep.py", "--seconds", "60", max_jobs=4, parallel=2),
                       marker=marker)
    work = str(tmp_path / "work")
    wait_for(lambda: len([p for p in live_processes(work) if p != process.pid]) >= 4, 60,
             what="training processes running")
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signum, stderr
    assert f"interrupted ({signal.Signals(signum).name})" in stderr
    assert "STOPPED" in stdout
    wait_for(lambda: live_processes(marker) == [], 15, what="every process of the run to end")


def test_run_rejects_invalid_spec_before_starting(tmp_path):
    body = script_body("ok.py")
    body["hyperParams"][0]["maxDbVal"] = -5
    marker = f"marker-{uuid.uuid4().hex}"
    process = _run_cli(tmp_path, body, marker=marker)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 2
    assert "hyperParams[0] (x).minDbVal" in stderr
    assert "swap the bounds" in stderr
    assert "local cluster" not in stderr


def test_cluster_reports_dead_worker(tmp_path):
    from openhpo.local import LocalCluster

    with LocalCluster(workers=1, work_dir=tmp_path / "work", key_prefix=f"t{uuid.uuid4().hex[:8]}") as cluster:
        cluster.check_alive()
        os.killpg(cluster._worker_process.pid, signal.SIGKILL)
        cluster._worker_process.wait(timeout=10)

        with pytest.raises(RuntimeError, match="local Celery worker exited with code -9; see its log"):
            cluster.check_alive()


def test_run_rejects_gang_wider_than_workers(tmp_path):
    body = script_body("ok.py")
    body["modelSpec"]["args"] += " --edt-options maxWorkers=3,minWorkers=3"
    marker = f"marker-{uuid.uuid4().hex}"
    process = _run_cli(tmp_path, body, marker=marker)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 2
    assert "minWorkers: needs more workers than the 2 that this run starts" in stderr
    assert "run with --workers 3 or more" in stderr
