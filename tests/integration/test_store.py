"""The Redis store's contract on the real Redis: code archives' lifetime, trial guards."""

from __future__ import annotations

import pytest

from broker.store import UNUSED_CODE_TTL
from hpo_core.records import TaskState, TrialState

pytestmark = pytest.mark.integration


def test_code_archive_lives_as_long_as_its_tasks(deployment):
    store = deployment.store
    digest = store.put_code(b"archive bytes")
    code_key = store._k("code", digest)
    assert 0 < deployment.client.ttl(code_key) <= UNUSED_CODE_TTL

    for name in ("a-1", "a-2"):
        store.create_task(name, {"hpoName": name}, "tester", digest)
        store.set_task_state(name, [TaskState.SUBMITTED], TaskState.FINISHED)
    assert store.put_code(b"archive bytes") == digest
    assert deployment.client.ttl(code_key) == -1  # used by tasks: no expiry

    store.delete_task("a-1")
    assert store.get_code(digest) == b"archive bytes"
    store.delete_task("a-2")
    assert store.get_code(digest) is None


def test_finish_records_once_per_attempt(deployment):
    store = deployment.store
    store.create_task("t-1", {"hpoName": "t-1"}, "tester")
    store.set_task_state("t-1", [TaskState.SUBMITTED], TaskState.RUNNING)
    (trial_id,) = store.create_trials("t-1", [({"x": 1}, {})])

    assert store.claim("t-1", trial_id, 2, "w1", 5).status == "stale"
    assert store.claim("t-1", trial_id, 1, "w1", 5).status == "ok"
    assert store.claim("t-1", trial_id, 1, "w2", 5).status == "RUNNING"
    assert store.heartbeat("t-1", trial_id, 1, "w2", 5) == "lost"
    assert store.heartbeat("t-1", trial_id, 1, "w1", 5) == "ok"
    assert store.finish("t-1", trial_id, 1, TrialState.FINISHED, metric=0.5) == "ok"
    assert store.finish("t-1", trial_id, 1, TrialState.FINISHED, metric=0.1) == "FINISHED"

    trial = store.get_trial("t-1", trial_id)
    assert trial.metric == 0.5
    assert trial.state is TrialState.FINISHED
