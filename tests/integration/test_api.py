"""The REST API served by uvicorn, with a coordinator and Celery workers on the real Redis."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile

import httpx
import pytest

from tests.conftest import REPO, SCRIPTS, script_body, wait_for
from tests.integration.apiserver import (DIGITS, PREFIX, TOKEN, digits_body, live_processes, model_dir_tar,
                                        start_api)

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _submit(url: str, body: dict, archive: bytes | None, filename: str = "model.modelDir.tar",
            headers: dict | None = None) -> httpx.Response:
    files = {"file": (filename, archive, "application/octet-stream")} if archive is not None else None
    return httpx.post(f"{url}{PREFIX}/hypersearch", headers=headers or AUTH, data={"data": json.dumps(body)},
                      files=files, timeout=30)


def _status(url: str, name: str) -> dict:
    response = httpx.get(f"{url}{PREFIX}/hypersearch/{name}", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _wait_state(url: str, name: str, states: tuple[str, ...], timeout: float = 120) -> dict:
    return wait_for(lambda: (lambda s: s if s["state"] in states else None)(_status(url, name)), timeout,
                    interval=0.3, what=f"task {name} to reach {states}")


def test_api_digits_task_end_to_end(deployment):
    deployment.start_coordinator()
    deployment.start_worker()
    deployment.start_worker()
    url = start_api(deployment)

    response = _submit(url, digits_body(max_jobs=2), model_dir_tar(DIGITS), "digits.modelDir.tar",
                       headers={**AUTH, "X-User": "alice"})
    assert response.status_code == 200, response.text
    created = response.json()
    name = created["uid"]
    assert name.startswith("alice-hpo-")
    assert created["hpoName"] == name
    assert created["href"] == f"{PREFIX}/hypersearch/{name}"

    status = _wait_state(url, name, ("FINISHED", "FAILED", "STOPPED"), timeout=150)
    assert status["state"] == "FINISHED", deployment.logs()
    assert status["creator"] == "alice"
    assert status["progress"] == "2/2"
    assert status["complete"] == 2
    assert status["failed"] == 0
    assert 0.0 < status["best"]["metricVal"] <= 1.0
    assert {e["state"] for e in status["experiments"]} == {"FINISHED"}

    listed = httpx.get(f"{url}{PREFIX}/hypersearch", headers=AUTH, params={"state": "FINISHED"}).json()
    assert name in [task["hpoName"] for task in listed]

    app_id = status["best"]["appId"]
    exec_info = httpx.get(f"{url}{PREFIX}/execs/{app_id}", headers=AUTH).json()
    assert exec_info["state"] == "FINISHED"
    assert exec_info["userName"] == "alice"
    assert "--epochs 3" in exec_info["args"]
    assert exec_info["hyperParams"] == status["best"]["values"]

    log = httpx.get(f"{url}{PREFIX}/execs/{app_id}/log", headers=AUTH)
    assert log.status_code == 200
    assert log.headers["content-type"].startswith("text/plain")
    assert "epoch 3/3" in log.text

    def result_entries() -> tuple[set[str], dict]:
        response = httpx.get(f"{url}{PREFIX}/execs/{app_id}/result", headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/zip"
        assert f"size={len(response.content)}" in response.headers["content-disposition"]
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            return set(archive.namelist()), json.loads(archive.read("val_dict_list.json"))

    local_names, local_steps = result_entries()
    assert {"val_dict_list.json", "log/stdout", "_submitted_code/digits/train.py",
            "_submitted_code/digits/config.json"} <= local_names
    assert len(local_steps) == 3

    # Without the worker's directory (as on another host) the API sends the zip the worker stored in Redis.
    shutil.rmtree(deployment.work_dir / name)
    stored_names, stored_steps = result_entries()
    assert stored_names == local_names
    assert stored_steps == local_steps

    assert httpx.delete(f"{url}{PREFIX}/hypersearch/{name}", headers=AUTH).status_code == 204
    assert httpx.get(f"{url}{PREFIX}/hypersearch/{name}", headers=AUTH).status_code == 404
    assert httpx.get(f"{url}{PREFIX}/execs/{app_id}/result", headers=AUTH).status_code == 404
    assert not list(deployment.client.scan_iter(f"{deployment.prefix}:result:{name}:*"))


def test_api_stop_restart_delete(deployment):
    deployment.start_coordinator()
    deployment.start_worker()
    deployment.start_worker()
    url = start_api(deployment)
    body = script_body("sleep.py", "--seconds", "60", max_jobs=4, parallel=2)
    body["hpoName"] = "sleepy"

    # A single script is accepted as the whole model directory.
    response = _submit(url, body, (SCRIPTS / "sleep.py").read_bytes(), "sleep.py")
    assert response.status_code == 200, response.text
    _wait_state(url, "sleepy", ("RUNNING",))
    wait_for(lambda: _status(url, "sleepy")["running"] == 2, 30, what="two running trials")
    fragment = str(deployment.work_dir / "sleepy")
    wait_for(lambda: len(live_processes(fragment)) >= 2, 15, what="two trial processes")

    stopped_at = time.monotonic()
    assert httpx.put(f"{url}{PREFIX}/hypersearch/sleepy", headers=AUTH).status_code == 204
    wait_for(lambda: not live_processes(fragment), 10, what="trial processes to end after the stop")
    status = _wait_state(url, "sleepy", ("STOPPED",), timeout=10)
    assert time.monotonic() - stopped_at < 10
    assert {e["state"] for e in status["experiments"]} == {"STOPPED"}

    again = httpx.put(f"{url}{PREFIX}/hypersearch/sleepy", headers=AUTH)
    assert again.status_code == 400
    assert again.text == "Error 400: Model tuning sleepy is already stopped."
    assert httpx.put(f"{url}{PREFIX}/hypersearch/sleepy/force", headers=AUTH).status_code == 400

    restarted = httpx.put(f"{url}{PREFIX}/hypersearch/sleepy/restart", headers=AUTH)
    assert restarted.status_code == 200, restarted.text
    assert restarted.json()["state"] in ("SUBMITTED", "RUNNING")
    wait_for(lambda: _status(url, "sleepy")["running"] >= 1, 30, what="a trial running after the restart")
    conflict = httpx.delete(f"{url}{PREFIX}/hypersearch/sleepy", headers=AUTH)
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "state_conflict"

    assert httpx.put(f"{url}{PREFIX}/hypersearch/sleepy/force", headers=AUTH).status_code == 204
    _wait_state(url, "sleepy", ("STOPPED",), timeout=10)
    wait_for(lambda: not live_processes(fragment), 10, what="trial processes to end after the force stop")
    status = _status(url, "sleepy")
    assert len(status["experiments"]) == 4
    assert httpx.delete(f"{url}{PREFIX}/hypersearch/sleepy", headers=AUTH).status_code == 204
    assert httpx.get(f"{url}{PREFIX}/hypersearch/sleepy", headers=AUTH).status_code == 404


def _tar(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_api_auth_and_errors(deployment):
    bob_token = "bob-token-0123456789abcdef"
    url = start_api(deployment, OPENHPO_MAX_ARCHIVE_BYTES="1000000",
                    OPENHPO_API_USERS=json.dumps({"bob": bob_token}))
    tasks = f"{url}{PREFIX}/hypersearch"
    ok_archive = _tar({"model/ok.py": b"print('hi')\n"})
    body = script_body("ok.py")

    # Authentication: /health is open, everything else needs a configured token in one of three forms.
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    missing = httpx.get(tasks)
    assert missing.status_code == 401
    assert missing.json()["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(tasks, headers={"Authorization": "Bearer wrong-token-000000000"}).status_code == 401
    assert httpx.get(tasks, headers={"X-Auth-Token": TOKEN}).status_code == 200
    basic = base64.b64encode(f"carol:{TOKEN}".encode()).decode()
    assert httpx.get(tasks, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert _submit(url, body, ok_archive, headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert [t["creator"] for t in httpx.get(tasks, headers=AUTH).json()] == ["carol"]

    # 404 and 409.
    assert httpx.get(f"{tasks}/no-such-task", headers=AUTH).json()["code"] == "task_not_found"
    assert httpx.get(f"{url}{PREFIX}/execs/no-such-task-0", headers=AUTH).status_code == 404
    assert httpx.get(f"{url}{PREFIX}/execs/nodash", headers=AUTH).status_code == 404
    named = dict(body, hpoName="twice")
    assert _submit(url, named, ok_archive).status_code == 200
    taken = _submit(url, named, ok_archive)
    assert taken.status_code == 409
    assert taken.json()["code"] == "task_exists"

    # 400 names the field and the fix.
    malformed = httpx.post(tasks, headers=AUTH, data={"data": "{not json"}, files={"file": ("m.tar", ok_archive)})
    assert malformed.status_code == 400
    assert malformed.json()["field"] == "data"
    assert "line 1 column 2" in malformed.json()["message"]
    invalid = dict(body, algoDef=dict(body["algoDef"], maxJobNum="many"))
    rejected = _submit(url, invalid, ok_archive)
    assert rejected.status_code == 400
    assert rejected.json()["code"] == "invalid_spec"
    assert rejected.json()["field"] == "algoDef.maxJobNum"
    assert rejected.json()["fix"]
    not_in_archive = _submit(url, script_body("missing.py"), ok_archive)
    assert not_in_archive.status_code == 400
    assert not_in_archive.json()["field"] == "modelSpec.args"
    no_code = _submit(url, body, None)
    assert no_code.status_code == 400
    assert no_code.json()["field"] == "file"
    assert httpx.post(tasks, headers=AUTH, content=b"x", params={}).status_code == 415

    # 413 for an archive over OPENHPO_MAX_ARCHIVE_BYTES, 400 for an unsafe one.
    too_large = _submit(url, body, os.urandom(1_200_000))
    assert too_large.status_code == 413
    assert too_large.json()["code"] == "payload_too_large"
    unsafe = _submit(url, body, _tar({"model/ok.py": b"", "../escape.py": b"import os"}))
    assert unsafe.status_code == 400
    assert unsafe.json()["code"] == "invalid_archive"
    assert "'..'" in unsafe.json()["message"]

    # A user token sees and acts on its own tasks only.
    bob = {"Authorization": f"Bearer {bob_token}"}
    assert httpx.get(tasks, headers=bob).json() == []
    assert httpx.get(f"{tasks}/twice", headers=bob).status_code == 403
    assert httpx.put(f"{tasks}/twice", headers=bob).status_code == 403
    assert _submit(url, dict(body, hpoName="bobs"), ok_archive, headers=bob).status_code == 200
    assert [t["hpoName"] for t in httpx.get(tasks, headers=bob).json()] == ["bobs"]
    assert httpx.get(tasks, headers={**bob, "X-User": "alice"}).status_code == 403

    # Delete-all removes the caller's ended tasks and reports the others; without a coordinator they stay SUBMITTED.
    report = httpx.delete(tasks, headers=bob).json()
    assert report["deleted"] == []
    assert [s["hpoName"] for s in report["skipped"]] == ["bobs"]


def test_api_refuses_to_start_without_token(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENHPO_API")}
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run([sys.executable, "-m", "openhpo.cli", "api", "--port", "1"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no API token configured" in result.stderr
    assert "--insecure-no-auth" in result.stderr
