"""Algorithms driven by the real coordinator: Hyperband, early stopping, plugins and the time budget."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest

from hpo_core.algorithms.plugin import install_plugin
from hpo_core.records import TrialState
from tests.conftest import REPO, SCRIPTS, script_body, wait_for

pytestmark = pytest.mark.integration


def _hyperband_body(**algo):
    body = script_body("ok.py", algorithm="Hyperband", max_jobs=-1, parallel=3, **algo)
    body["algoDef"]["algoParams"] += [{"name": "ResourceName", "value": "epochs"},
                                      {"name": "ResourceValue", "value": "9"}]
    body["algoDef"]["hyperbandEta"] = 3
    return body


def _config_json(deployment, name, trial):
    path = deployment.work_dir / name / str(trial.id) / f"attempt-{trial.attempt}" / "_submitted_code" / \
        "scripts" / "config.json"
    return json.loads(path.read_text())


def _check_hyperband_run(deployment, name):
    trials = deployment.store.get_trials(name)
    # R = 9, eta = 3: brackets (9@1 -> 3@3 -> 1@9), (5@3 -> 1@9), (3@9).
    assert len(trials) == 22
    assert all(t.state is TrialState.FINISHED for t in trials)
    keys = {json.dumps(t.config, sort_keys=True) for t in trials}
    assert len(keys) == 22
    resources = sorted(t.config["epochs"] for t in trials)
    assert resources == [1] * 9 + [3] * 8 + [9] * 5
    for trial in trials:
        written = _config_json(deployment, name, trial)
        assert type(written["epochs"]) is int
        assert written == trial.config
    by_id = {t.id: t for t in trials}
    for trial in trials:
        parent_id = trial.meta.get("parent")
        if parent_id is None:
            continue
        parent = by_id[parent_id]
        assert parent.config["epochs"] < trial.config["epochs"]
        assert {k: v for k, v in parent.config.items() if k != "epochs"} == \
            {k: v for k, v in trial.config.items() if k != "epochs"}
        rung = [t for t in trials if t.meta.get("bracket") == parent.meta.get("bracket")
                and t.meta.get("rung") == parent.meta.get("rung")]
        promoted = [t for t in trials if t.meta.get("parent") in {r.id for r in rung}]
        best = sorted(rung, key=lambda t: t.metric)[:len(promoted)]
        assert parent in best


def test_hyperband_promotes_best_with_integer_resource(deployment):
    deployment.start_worker(concurrency=3)
    deployment.start_coordinator()
    name = deployment.submit(_hyperband_body(), SCRIPTS)

    assert deployment.wait_task(name, timeout=120) == "FINISHED", deployment.logs()
    _check_hyperband_run(deployment, name)
    assert deployment.store.get_task(name).reason == "every bracket ran"


def test_hyperband_survives_coordinator_restart(deployment):
    deployment.start_worker(concurrency=3)
    first = deployment.start_coordinator()
    name = deployment.submit(_hyperband_body(), SCRIPTS)

    wait_for(lambda: len(deployment.store.get_trials(name)) >= 7, 60, what="the first rung under way")
    deployment.kill(first, signal.SIGKILL)
    time.sleep(1.0)
    deployment.start_coordinator()

    assert deployment.wait_task(name, timeout=150) == "FINISHED", deployment.logs()
    _check_hyperband_run(deployment, name)


def test_median_rule_stops_bad_trials(deployment):
    deployment.start_worker(concurrency=1)
    deployment.start_coordinator()
    body = script_body("curve.py", algorithm="ExperimentGridSearch", max_jobs=-1, parallel=1, space=[])
    del body["hyperParams"]
    body["experiments"] = [{"id": i, "hyperParams": [{"name": "x", "dataType": "DOUBLE", "fixedVal": str(x)}]}
                           for i, x in enumerate([0.1, 0.2, 0.3, 4.0, 0.0, 5.0])]
    body["algoDef"]["algoParams"] += [{"name": "EarlyStopping", "value": "median"},
                                      {"name": "EarlyStoppingGrace", "value": "2"},
                                      {"name": "EarlyStoppingMinTrials", "value": "2"}]
    name = deployment.submit(body, SCRIPTS)

    assert deployment.wait_task(name, timeout=120) == "FINISHED", deployment.logs()
    assert deployment.store.get_task(name).reason == "every experiment ran"
    trials = {t.config["x"]: t for t in deployment.store.get_trials(name)}
    for x in (4.0, 5.0):
        assert trials[x].state is TrialState.STOPPED
        assert trials[x].reason == "early stopped"
        assert trials[x].metric is not None
        assert len(trials[x].steps) < 8
    for x in (0.1, 0.2, 0.3, 0.0):
        assert trials[x].state is TrialState.FINISHED
        assert len(trials[x].steps) == 8

    from openhpo.status import task_status

    assert task_status(deployment.store, name)["best"]["values"] == {"x": 0.0}


def test_invalid_early_stopping_in_stored_task_fails_it(deployment, monkeypatch):
    # A task stored before the submit-time checks existed: the coordinator must fail it with the reason, not
    # run it without early stopping.
    import openhpo.submission

    monkeypatch.setattr(openhpo.submission, "check_algorithm", lambda spec: None)
    deployment.start_worker(concurrency=1)
    deployment.start_coordinator()
    body = script_body("ok.py", algorithm="Random", max_jobs=4, parallel=1)
    body["algoDef"]["algoParams"] += [{"name": "EarlyStopping", "value": "medain"}]
    name = deployment.submit(body, SCRIPTS)

    assert deployment.wait_task(name, timeout=60) == "FAILED", deployment.logs()
    reason = deployment.store.get_task(name).reason
    assert "EarlyStopping" in reason
    assert "medain" in reason
    assert deployment.store.get_trials(name) == []


def test_plugin_runs_and_bad_plugin_fails_task(deployment, tmp_path, monkeypatch):
    plugin_dir = tmp_path / "plugins"
    monkeypatch.setenv("OPENHPO_PLUGIN_DIR", str(plugin_dir))  # submit checks that the plugin is installed
    install_plugin(REPO / "examples" / "plugins" / "random_plugin", "random_plugin", plugin_dir)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "optimizer.py").write_text(
        "from plugins.core.base_plugin_opt import BasePluginOptimizer\n\n\n"
        "class PluginOptimizer(BasePluginOptimizer):\n"
        "    def search(self, number_samples, last_exp_results):\n"
        "        return [{'x': 99.0, 'n': 1, 'opt': 'sgd'}] * number_samples\n")
    install_plugin(bad, "out_of_range", plugin_dir)
    deployment.start_worker(concurrency=2)
    deployment.start_coordinator(OPENHPO_PLUGIN_DIR=str(plugin_dir))

    bad_name = deployment.submit(script_body("ok.py", algorithm="out_of_range", max_jobs=2), SCRIPTS)
    good_name = deployment.submit(script_body("ok.py", algorithm="random_plugin", max_jobs=4), SCRIPTS)

    assert deployment.wait_task(bad_name, timeout=60) == "FAILED", deployment.logs()
    reason = deployment.store.get_task(bad_name).reason
    assert "out_of_range" in reason
    assert "99" in reason
    assert deployment.store.get_trials(bad_name) == []
    assert deployment.wait_task(good_name, timeout=90) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(good_name)
    assert len(trials) == 4
    assert all(-2 <= t.config["x"] <= 2 and type(t.config["n"]) is int for t in trials)


RECORDING_PLUGIN = """
from plugins.core.base_plugin_opt import BasePluginOptimizer


class PluginOptimizer(BasePluginOptimizer):
    def __init__(self, name, hyper_parameters, **kwargs):
        super().__init__(name, hyper_parameters, **kwargs)
        self.calls = 0
        self.seen = []

    def search(self, number_samples, last_exp_results):
        self.seen += last_exp_results
        configs = [{"x": 0.1 * (self.calls + i), "n": 1, "opt": "sgd"} for i in range(number_samples)]
        self.calls += number_samples
        return configs

    def get_state(self):
        return {"calls": self.calls, "seen": self.seen}

    def set_state(self, state):
        self.calls = state["calls"]
        self.seen = state["seen"]
"""


def test_plugin_results_carry_additional_metrics(deployment, tmp_path, monkeypatch):
    plugin_dir = tmp_path / "plugins"
    monkeypatch.setenv("OPENHPO_PLUGIN_DIR", str(plugin_dir))
    source = tmp_path / "recording"
    source.mkdir()
    (source / "optimizer.py").write_text(RECORDING_PLUGIN)
    install_plugin(source, "recording", plugin_dir)
    deployment.start_worker(concurrency=1)
    deployment.start_coordinator(OPENHPO_PLUGIN_DIR=str(plugin_dir))

    body = script_body("ok.py", algorithm="recording", max_jobs=3, parallel=1,
                       additionalMetrics={"accuracy": "maximize"})
    name = deployment.submit(body, SCRIPTS)

    assert deployment.wait_task(name, timeout=90) == "FINISHED", deployment.logs()
    seen = deployment.store.get_task(name).algo_state["plugin_state"]["seen"]
    # search() gets each trial once it has ended; the last trial may end after the last call.
    assert {item["id"] for item in seen} >= {0, 1}
    for item in seen:
        assert item["state"] == "FINISHED"
        assert item["metrics"] == {"accuracy": pytest.approx(1.0 / (1.0 + item["metricVal"]))}


def test_max_run_time_ends_task_finished(deployment):
    deployment.start_worker(concurrency=2)
    deployment.start_coordinator()
    name = deployment.submit(script_body("sleep.py", "--seconds", "60", max_jobs=10, maxRunTime=1), SCRIPTS)

    wait_for(lambda: sum(t.state is TrialState.RUNNING for t in deployment.store.get_trials(name)) == 2, 60,
             what="two trials running")
    # Pretend the task started 61 s ago instead of waiting a minute.
    deployment.client.hset(deployment.store.task_key(name), "started", repr(time.time() - 61))

    assert deployment.wait_task(name, timeout=30) == "FINISHED", deployment.logs()
    trials = deployment.store.get_trials(name)
    assert len(trials) == 2
    assert all(t.state is TrialState.STOPPED and t.reason == "maxRunTime reached" for t in trials)
    assert deployment.store.get_task(name).reason == "maxRunTime reached"
