"""A WMLA HPO notebook's client code, run unchanged against openhpo's API.

The cells below talk to the service the way IBM's WMLA HPO notebooks do. They send ``requests`` with a multipart
``file`` part and a ``data`` part that contains ``json.dumps`` of the body. They read a bare-string task name from
the classic servers, or ``{"uid", "href"}`` from the CPD build, and poll ``GET /hypersearch/{name}`` while the
state is SUBMITTED or RUNNING.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from pathlib import Path

import pytest
import requests

from tests.integration.apiserver import DIGITS, TOKEN, digits_body, start_api

pytestmark = pytest.mark.integration


def make_tarfile(output_filename: str, source_dir: str) -> None:
    with tarfile.open(output_filename, "w:gz") as tar:
        tar.add(source_dir, arcname=os.path.basename(source_dir))


def poll_until_done(base_url: str, hpo_name: str, **request_kwargs) -> dict:
    """The notebooks' monitoring cell: poll until the task leaves SUBMITTED and RUNNING."""
    deadline = time.monotonic() + 150
    while True:
        r = requests.get(f"{base_url}/hypersearch/{hpo_name}", **request_kwargs)
        assert r.ok, r.text
        state = r.json()["state"]
        print(f"{hpo_name}: {state}, progress {r.json()['progress']}")
        if state not in ("SUBMITTED", "RUNNING"):
            return r.json()
        assert time.monotonic() < deadline, f"task {hpo_name} still {state} after 150 s"
        time.sleep(1)


def test_wmla_notebooks_run_unchanged(deployment, tmp_path: Path):
    deployment.start_coordinator()
    deployment.start_worker()
    deployment.start_worker()
    classic_url = start_api(deployment, OPENHPO_API_CLASSIC_RESPONSES="true")
    cpd_url = start_api(deployment)

    # --- classic WMLA 1.2 notebook: HTTP Basic, a <dir>.modelDir.tar, the name as a bare JSON string ---
    base_url = classic_url + "/platform/rest/deeplearning/v1"
    auth = ("Admin", TOKEN)
    model_dir = tmp_path / "digits"
    model_dir.mkdir()
    (model_dir / "train.py").write_text((DIGITS / "train.py").read_text())
    tar_path = str(tmp_path / "digits.modelDir.tar")
    make_tarfile(tar_path, str(model_dir))
    hpo_body = digits_body(max_jobs=2, parallel=1)
    hpo_body["modelSpec"]["sigName"] = "ig-gpu"
    hpo_body["modelSpec"]["args"] = ("--exec-start PyTorch --cs-datastore-meta type=fs --python-version 3.6 "
                                     "--gpuPerWorker 1 --model-main train.py --model-dir digits --epochs 3")

    files = {"file": open(tar_path, "rb")}
    data = {"data": json.dumps(hpo_body)}
    r = requests.post(f"{base_url}/hypersearch", files=files, data=data, auth=auth)
    files["file"].close()
    assert r.ok, r.text
    classic_name = r.json()
    assert isinstance(classic_name, str)
    assert classic_name.startswith("Admin-hpo-")

    # --- CPD 3.5 notebook: a token in X-Auth-Token, one .py file in a part named after it, {uid, href} ---
    cpd_base = cpd_url + "/platform/rest/deeplearning/v1"
    headers = {"X-Auth-Token": TOKEN}
    cpd_body = digits_body(max_jobs=1, parallel=1)
    with open(DIGITS / "train.py", "rb") as script:
        r = requests.post(f"{cpd_base}/hypersearch", headers=headers, files={"train.py": script},
                          data={"data": json.dumps(cpd_body)})
    assert r.ok, r.text
    created = r.json()
    assert set(created) >= {"uid", "href"}
    cpd_name = created["uid"]

    # --- monitoring cells of both notebooks ---
    classic = poll_until_done(base_url, classic_name, auth=auth)
    assert classic["state"] == "FINISHED", deployment.logs()
    assert classic["progress"] == "2/2"
    assert classic["creator"] == "Admin"
    for experiment in classic["experiments"]:
        print(experiment["id"], experiment["state"], experiment["metricVal"],
              {hp["name"]: hp["fixedVal"] for hp in experiment["hyperParams"]})
        assert isinstance(experiment["hyperParams"][0]["fixedVal"], str)
        assert experiment["hyperParams"][0]["dataType"] in ("double", "int", "str")
    best = classic["best"]
    assert best["metricVal"] != 9999.99

    r = requests.get(f"{base_url}/execs/{best['appId']}", auth=auth)
    assert r.ok, r.text
    assert r.json()["state"] == "FINISHED"
    r = requests.get(f"{base_url}/execs/{best['appId']}/log", auth=auth)
    assert r.ok
    assert "epoch 3/3" in r.text
    r = requests.get(f"{base_url}/execs/{best['appId']}/result", auth=auth)
    assert r.ok
    assert "size=" in r.headers["Content-Disposition"]

    cpd = poll_until_done(cpd_base, cpd_name, headers=headers)
    assert cpd["state"] == "FINISHED", deployment.logs()
    assert cpd["best"]["appId"] == f"{cpd_name}-0"
    assert cpd["algoDef"]["algorithm"] == "Random"

    # --- clean-up cells: delete every task of the user; classic servers return 204 ---
    r = requests.delete(f"{base_url}/hypersearch", auth=auth)
    assert r.status_code == 204
    remaining = [task["hpoName"] for task in requests.get(f"{base_url}/hypersearch", auth=auth).json()]
    assert classic_name not in remaining
    assert cpd_name in remaining  # created by the token's default user, admin, not by Admin
