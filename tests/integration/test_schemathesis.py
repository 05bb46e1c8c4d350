"""Property-based tests of the REST API against its own OpenAPI schema (schemathesis).

The app runs in process (ASGI) on the real Redis under a test key prefix, with a task ``Admin-hpo-1`` and its
experiment ``Admin-hpo-1-0`` in store, the names the schema gives as examples. No coordinator runs, so submitted
tasks stay SUBMITTED. Every generated request must get a response that is no 5xx, has a documented status and
content type, and matches the response schema.
"""

from __future__ import annotations

import uuid

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from broker.store import RedisStore
from hpo_core.records import TaskState
from openhpo.api import ApiSettings, create_app
from tests.conftest import TEST_REDIS_URL, script_body

pytestmark = pytest.mark.integration

TOKEN = "schemathesis-token-0123456789"
PREFIX = f"openhpo-test-schema-{uuid.uuid4().hex[:8]}"

app = create_app(ApiSettings(redis_url=TEST_REDIS_URL, key_prefix=PREFIX, api_token=TOKEN,
                             max_archive_bytes=200_000))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]


@pytest.fixture(scope="module", autouse=True)
def example_task():
    """Store the task that the schema's examples name, and delete every key of the prefix afterwards."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    store = RedisStore(client, PREFIX)
    store.create_task("Admin-hpo-1", script_body("ok.py", max_jobs=2), "Admin", None)
    store.set_task_state("Admin-hpo-1", [TaskState.SUBMITTED], TaskState.RUNNING)
    store.create_trials("Admin-hpo-1", [({"x": 0.5, "n": 3, "opt": "sgd"}, {})])
    store.set_log("Admin-hpo-1", 0, b"epoch 1/1\n")
    yield
    keys = list(client.scan_iter(f"{PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_schema(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

