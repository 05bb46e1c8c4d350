"""Starting a test deployment's API server: ``openhpo api`` under uvicorn on a free port of 127.0.0.1."""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import httpx

from openhpo.local import free_port
from tests.conftest import REPO, live_processes, wait_for  # noqa: F401 - live_processes is re-exported for the API tests

#: Administrator token of the test API servers.
TOKEN = "test-admin-token-0123456789"
#: Base path of the WMLA routes.
PREFIX = "/platform/rest/deeplearning/v1"
DIGITS = REPO / "examples" / "digits"


def start_api(deployment, *extra_args: str, token: str = TOKEN, **env: str) -> str:
    """Start ``openhpo api`` for ``deployment`` and return its base URL once ``/health`` returns 200."""
    port = free_port()
    process = deployment.spawn([sys.executable, "-m", "openhpo.cli", "api", "--port", str(port), *extra_args],
                               "api", OPENHPO_API_TOKEN=token, OPENHPO_LOG_FORMAT="console", **env)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the API server exited with {process.returncode}:\n{deployment.logs()}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 30, interval=0.1, what=f"the API server on port {port}")
    return url


def digits_body(max_jobs: int = 2, parallel: int = 2, epochs: int = 3, **extra) -> dict:
    """The digits example's random search, cut to ``max_jobs`` trials of ``epochs`` epochs."""
    return {
        "modelSpec": {"args": f"--exec-start PyTorch --model-main train.py --epochs {epochs}"},
        "algoDef": {"algorithm": "Random", "maxJobNum": max_jobs, "maxParalleJobNum": parallel,
                    "objectiveMetric": "accuracy", "objective": "maximize",
                    "algoParams": [{"name": "RandomSeed", "value": "5"}]},
        "hyperParams": [
            {"name": "learning_rate", "type": "Range", "dataType": "DOUBLE", "minDbVal": -3, "maxDbVal": -1,
             "power": "10"},
            {"name": "hidden", "type": "Range", "dataType": "INT", "minIntVal": 32, "maxIntVal": 128, "step": "32"},
            {"name": "optimizer", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["adam", "sgd"]},
        ],
        **extra,
    }


def model_dir_tar(directory: Path) -> bytes:
    """A gzip tar of ``directory`` with its name as the top entry, built as WMLA's notebooks build it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(directory, arcname=directory.name,
                    filter=lambda info: None if "__pycache__" in info.name else info)
    return buffer.getvalue()
