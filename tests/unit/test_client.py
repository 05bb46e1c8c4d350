"""openhpo.Client against an httpx MockTransport, and against the real ASGI app on the test Redis."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tarfile
import uuid
from pathlib import Path

import httpx
import pytest
import redis

import openhpo
from hpo_core.errors import OpenHPOError
from openhpo.client import API_PREFIX, Client, OpenHPOConnectionError, OpenHPOHTTPError
from tests.conftest import SCRIPTS, TEST_REDIS_URL, script_body

TOKEN = "client-test-token-0123456789"


def _status(state: str = "RUNNING", experiments: list | None = None) -> dict:
    return {"hpoName": "t1", "state": state, "running": 0, "queued": 0, "complete": 1, "failed": 0,
            "progress": "1/2", "createtime": "2026-01-01 10:00:00", "creator": "alice", "duration": "00:00:05",
            "algoDef": {"maxJobNum": 2, "objectiveMetric": "loss"}, "experiments": experiments or []}


def _experiment(trial_id: int, state: str, metric: float, **values) -> dict:
    return {"id": trial_id, "state": state, "metricVal": metric, "appId": f"t1-{trial_id}", "attempt": 1,
            "values": values, "startTime": "2026-01-01 10:00:01", "endTime": "2026-01-01 10:00:04",
            "duration": 3.0, "worker": "host:1", "hyperParams": []}


def test_client_sends_token_and_user():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    with Client("http://api.test", TOKEN, user="alice", transport=httpx.MockTransport(handler)) as client:
        assert client.list(state="RUNNING") == []
    assert seen[0].url.path == f"{API_PREFIX}/hypersearch"
    assert seen[0].url.params["state"] == "RUNNING"
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen[0].headers["X-User"] == "alice"


def test_client_reads_url_and_token_from_environment(monkeypatch):
    monkeypatch.setenv("OPENHPO_URL", "http://env.test:9000/")
    monkeypatch.setenv("OPENHPO_API_TOKEN", "env-token")
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200, json=_status()))
    with Client(transport=transport) as client:
        client.get("t1")
    assert str(seen[0].url) == f"http://env.test:9000{API_PREFIX}/hypersearch/t1"
    assert seen[0].headers["Authorization"] == "Bearer env-token"


def test_client_error_carries_status_code_and_field():
    body = {"code": "invalid_spec", "message": "algoDef.maxJobNum: must be an integer", "field": "algoDef.maxJobNum"}
    transport = httpx.MockTransport(lambda request: httpx.Response(400, json=body,
                                                                   headers={"X-Error-Code": "invalid_spec"}))
    with Client("http://api.test", TOKEN, transport=transport) as client:
        with pytest.raises(OpenHPOHTTPError) as caught:
            client.submit({"modelSpec": {}})
    error = caught.value
    assert error.status == 400
    assert error.code == "invalid_spec"
    assert error.field == "algoDef.maxJobNum"
    assert error.message == "algoDef.maxJobNum: must be an integer"
    assert error.method == "POST"
    assert "HTTP 400 invalid_spec" in str(error)


def test_client_error_keeps_plain_text_message():
    text = "Error 400: Model tuning t1 is already stopped."
    transport = httpx.MockTransport(lambda request: httpx.Response(400, text=text,
                                                                   headers={"X-Error-Code": "already_stopped"}))
    with Client("http://api.test", TOKEN, transport=transport) as client:
        with pytest.raises(OpenHPOHTTPError) as caught:
            client.stop("t1")
    assert caught.value.message == text
    assert caught.value.code == "already_stopped"


def test_client_unreachable_server_raises_connection_error():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with Client("http://api.test", TOKEN, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(OpenHPOConnectionError, match="cannot reach the openhpo API at http://api.test"):
            client.get("t1")


def test_client_submit_sends_multipart_with_packed_directory(tmp_path: Path):
    model = tmp_path / "mnist"
    model.mkdir()
    (model / "train.py").write_text("print('train')\n")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(script_body("train.py")))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"uid": "alice-hpo-1", "href": "/x", "hpoName": "alice-hpo-1"})

    with Client("http://api.test", TOKEN, transport=httpx.MockTransport(handler)) as client:
        assert client.submit(spec_path, model, name="custom") == "alice-hpo-1"
    request = seen[0]
    assert request.headers["content-type"].startswith("multipart/form-data")
    content = request.read()
    assert b'name="data"' in content
    assert b'"hpoName": "custom"' in content
    assert b'filename="mnist.modelDir.tar"' in content
    archive_start = content.index(b"\x1f\x8b")  # the gzip magic number opens the packed directory
    with tarfile.open(fileobj=io.BytesIO(content[archive_start:]), mode="r:gz") as archive:
        assert "mnist/train.py" in archive.getnames()


def test_client_submit_without_code_is_still_multipart():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json="classic-name")  # a classic server returns the bare name

    with Client("http://api.test", TOKEN, transport=httpx.MockTransport(handler)) as client:
        assert client.submit({"modelSpec": {"command": "true"}}) == "classic-name"
    assert seen[0].headers["content-type"].startswith("multipart/form-data")
    assert b'name="file"' not in seen[0].read()


def test_client_submit_rejects_unreadable_spec(tmp_path: Path):
    (tmp_path / "bad.json").write_text("{nope")
    with Client("http://api.test", TOKEN, transport=httpx.MockTransport(lambda r: httpx.Response(500))) as client:
        with pytest.raises(OpenHPOError, match="not valid JSON"):
            client.submit(tmp_path / "bad.json")
        with pytest.raises(OpenHPOError, match="cannot read task definition"):
            client.submit(tmp_path / "missing.json")


def test_client_wait_returns_final_status():
    states = iter(["SUBMITTED", "RUNNING", "FINISHED"])
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=_status(next(states))))
    with Client("http://api.test", TOKEN, transport=transport) as client:
        assert client.wait("t1", poll=0.01, progress=False)["state"] == "FINISHED"


def test_client_wait_times_out():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=_status("RUNNING")))
    with Client("http://api.test", TOKEN, transport=transport) as client:
        with pytest.raises(TimeoutError, match="still RUNNING"):
            client.wait("t1", timeout=0.05, poll=0.01, progress=False)


def test_client_trials_dataframe():
    experiments = [_experiment(0, "FINISHED", 0.25, lr=0.1, opt="sgd"),
                   _experiment(1, "FAILED", 9999.99, lr=0.2, opt="adam")]
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=_status("FINISHED", experiments)))
    with Client("http://api.test", TOKEN, transport=transport) as client:
        frame = client.trials("t1")
    assert list(frame["id"]) == [0, 1]
    assert frame.loc[0, "metric"] == 0.25
    assert frame["metric"].isna().tolist() == [False, True]
    assert list(frame["param_lr"]) == [0.1, 0.2]
    assert list(frame["param_opt"]) == ["sgd", "adam"]
    assert str(frame["start"].dtype).startswith("datetime64")


def test_client_trials_without_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=_status()))
    with Client("http://api.test", TOKEN, transport=transport) as client:
        with pytest.raises(ImportError, match=r"pip install 'openhpo\[pandas\]'"):
            client.trials("t1")


def test_client_is_exported_lazily():
    assert openhpo.Client is Client
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        openhpo.Nope  # noqa: B018


class _AppTransport(httpx.BaseTransport):
    """A synchronous transport that calls an ASGI app in process (httpx's ASGITransport is async only)."""

    def __init__(self, app):
        self._transport = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()

        async def call() -> httpx.Response:
            response = await self._transport.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run(call())


@pytest.fixture
def app_client():
    """A Client wired to the real API app on the test Redis, under a key prefix of its own."""
    from openhpo.api import ApiSettings, create_app

    prefix = f"openhpo-test-client-{uuid.uuid4().hex[:8]}"
    connection = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        connection.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"these tests need Redis at {TEST_REDIS_URL}: {exc}")
    app = create_app(ApiSettings(redis_url=TEST_REDIS_URL, key_prefix=prefix, api_token=TOKEN))
    with Client("http://testserver", TOKEN, user="alice", transport=_AppTransport(app)) as client:
        yield client
    keys = list(connection.scan_iter(f"{prefix}*"))
    if keys:
        connection.delete(*keys)
    connection.close()


@pytest.mark.integration
def test_client_round_trip_on_app(app_client: Client):
    name = app_client.submit(script_body("ok.py"), SCRIPTS / "ok.py", name="round-trip")
    assert name == "round-trip"
    status = app_client.get(name)
    assert status["state"] == "SUBMITTED"
    assert status["creator"] == "alice"
    assert [task["hpoName"] for task in app_client.list()] == [name]
    assert app_client.best(name) is None
    assert app_client.algorithms()[0]["type"] == "BUILD_IN"

    code_hash = app_client.upload_code(SCRIPTS / "ok.py")
    assert app_client.submit_with_hash(script_body("ok.py"), code_hash, name="by-hash") == "by-hash"

    with pytest.raises(OpenHPOHTTPError) as caught:
        app_client.delete(name)
    assert caught.value.status == 409
    app_client.stop(name, force=True)
    with pytest.raises(OpenHPOHTTPError) as caught:
        app_client.get("no-such-task")
    assert caught.value.status == 404
    assert caught.value.code == "task_not_found"
    assert app_client.health()["status"] == "ok"


@pytest.mark.integration
def test_client_generated_name_collision_retried(app_client: Client, monkeypatch):
    names = iter(["alice-hpo-1", "alice-hpo-1", "alice-hpo-2"])
    monkeypatch.setattr("openhpo.api.hypersearch.generate_name", lambda creator: next(names))
    body = script_body("ok.py")
    assert app_client.submit(body, SCRIPTS / "ok.py") == "alice-hpo-1"
    assert app_client.submit(body, SCRIPTS / "ok.py") == "alice-hpo-2"
    with pytest.raises(OpenHPOHTTPError) as caught:
        app_client.submit(body, SCRIPTS / "ok.py", name="alice-hpo-1")
    assert caught.value.status == 409
