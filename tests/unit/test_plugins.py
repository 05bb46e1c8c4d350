"""Search-algorithm plugins: loading, the separate process, validation, failures, state and the helpers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from hpo_core.algorithms import create_searcher
from hpo_core.algorithms.base import TrialView
from hpo_core.algorithms.plugin import (IDLE_CALL_LIMIT, PluginInfo, PluginSearcher, check_plugin_name,
                                        default_plugin_dir, delete_plugin, find_plugin, install_plugin,
                                        list_plugins, load_plugin_factory)
from hpo_core.errors import PluginError, SpecError
from hpo_core.records import Objective, Trial, TrialState
from hpo_core.spec import TaskSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"

HYPER_PARAMS = [
    {"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.001, "maxDbVal": 0.1},
    {"name": "units", "type": "Range", "dataType": "INT", "minIntVal": 8, "maxIntVal": 64, "step": "8"},
    {"name": "opt", "type": "Discrete", "dataType": "STR", "discreateStrVal": ["sgd", "adam"]},
]

# A well-behaved plugin that records what it receives in its state, so tests can see it.
GOOD = """
    from plugins.core.base_plugin_opt import BasePluginOptimizer
    from plugins.core.logger import logger

    class PluginOptimizer(BasePluginOptimizer):
        def __init__(self, name, hyper_parameters, **kwargs):
            super().__init__(name, hyper_parameters, **kwargs)
            self.calls = 0
            self.seen = []
            self.init_args = {"name": name, "hyper_parameters": hyper_parameters, "kwargs": kwargs}

        def search(self, number_samples, last_exp_results):
            print("this line must not disturb the host's replies")
            logger.info("search %s", number_samples)
            self.seen += [dict(item) for item in last_exp_results or []]
            configs = []
            for _ in range(number_samples):
                k = self.calls
                self.calls += 1
                configs.append({"lr": round(0.001 + 0.0001 * k, 6), "units": 8 * (1 + k % 8), "opt": "adam"})
            return configs

        def get_state(self):
            return {"calls": self.calls, "seen": self.seen, "init_args": self.init_args}

        def set_state(self, state_dict):
            self.calls = state_dict["calls"]
            self.seen = state_dict["seen"]
"""


def write_plugin(root: Path, name: str, body: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "optimizer.py").write_text(textwrap.dedent(body))
    return directory


def make_spec(algorithm: str, params: dict[str, str] | None = None, hyper_params=None) -> TaskSpec:
    return TaskSpec.parse({
        "modelSpec": {"args": "--model-main train.py"},
        "algoDef": {"algorithm": algorithm, "objectiveMetric": "accuracy", "objective": "maximize",
                    "algoParams": [{"name": k, "value": v} for k, v in (params or {}).items()]},
        "hyperParams": hyper_params if hyper_params is not None else HYPER_PARAMS})


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    root.mkdir()
    return root


def searcher_for(plugin_dir: Path, name: str, body: str, params: dict[str, str] | None = None,
                 hyper_params=None) -> PluginSearcher:
    write_plugin(plugin_dir, name, body)
    searcher = load_plugin_factory(plugin_dir)(make_spec(name, params, hyper_params))
    assert isinstance(searcher, PluginSearcher)
    return searcher


def start(trials: list[TrialView], configs) -> None:
    for config in configs:
        trials.append(TrialView(len(trials), config, TrialState.RUNNING))


def finish_all(trials: list[TrialView]) -> None:
    for i, view in enumerate(trials):
        if view.pending:
            trials[i] = dataclasses.replace(view, state=TrialState.FINISHED, loss=-view.config["lr"])


def plugin_state(searcher: PluginSearcher):
    return searcher.get_state()["plugin_state"]


# --- a good plugin -------------------------------------------------------------------------------------------------


def test_plugin_suggests_validated_configs(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    try:
        suggestion = searcher.suggest(3, [])
        assert suggestion.configs == [{"lr": 0.001, "units": 8, "opt": "adam"},
                                      {"lr": 0.0011, "units": 16, "opt": "adam"},
                                      {"lr": 0.0012, "units": 24, "opt": "adam"}]
        assert suggestion.metas == [{}, {}, {}]
        assert not suggestion.exhausted
    finally:
        searcher.close()


def test_plugin_init_gets_raw_params(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD, {"random_seed": "5", "PluginTimeout": "30",
                                                       "EarlyStopping": "median"})
    try:
        searcher.suggest(1, [])
        init_args = plugin_state(searcher)["init_args"]
        assert init_args["name"] == "good"
        assert init_args["hyper_parameters"] == HYPER_PARAMS
        assert init_args["kwargs"] == {"random_seed": "5"}
        assert searcher.timeout == 30
    finally:
        searcher.close()


def test_plugin_results_delivered_once(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    trials: list[TrialView] = []
    try:
        start(trials, searcher.suggest(2, trials).configs)
        finish_all(trials)
        trials[1] = dataclasses.replace(trials[1], state=TrialState.FAILED, loss=None)
        start(trials, searcher.suggest(2, trials).configs)
        start(trials, searcher.suggest(1, trials).configs)
        seen = plugin_state(searcher)["seen"]
    finally:
        searcher.close()
    assert [item["id"] for item in seen] == [0, 1]
    assert seen[0] == {"id": 0, "hyperParams": {"lr": 0.001, "units": 8, "opt": "adam"}, "metricVal": 0.001,
                       "loss": -0.001, "state": "FINISHED", "metrics": {}}
    assert seen[1]["state"] == "FAILED"
    assert seen[1]["metricVal"] is None
    assert seen[1]["loss"] is None


def test_trial_view_copies_metrics():
    trial = Trial(id=0, config={"lr": 0.01}, state=TrialState.FINISHED, metric=0.9,
                  metrics={"loss": 0.3, "lr": 0.01})
    view = TrialView.from_trial(trial, Objective.MAXIMIZE, "accuracy")
    assert view.metrics == {"loss": 0.3, "lr": 0.01}
    assert view.loss == -0.9


def test_plugin_results_carry_metrics(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    trials: list[TrialView] = []
    try:
        start(trials, searcher.suggest(1, trials).configs)
        trials[0] = dataclasses.replace(trials[0], state=TrialState.FINISHED, loss=-0.5,
                                        metrics={"loss": 0.3, "lr": 0.001})
        searcher.suggest(1, trials)
        seen = plugin_state(searcher)["seen"]
    finally:
        searcher.close()
    assert [item["id"] for item in seen] == [0]
    assert seen[0]["metrics"] == {"loss": 0.3, "lr": 0.001}
    assert seen[0]["metricVal"] == 0.5


def test_plugin_state_round_trip(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    trials: list[TrialView] = []
    try:
        start(trials, searcher.suggest(3, trials).configs)
        finish_all(trials)
        start(trials, searcher.suggest(1, trials).configs)
        state = json.loads(json.dumps(searcher.get_state()))
    finally:
        searcher.close()
    assert state["delivered"] == [0, 1, 2]

    restored = load_plugin_factory(plugin_dir)(make_spec("good"))
    try:
        restored.set_state(state)
        finish_all(trials)
        suggestion = restored.suggest(1, trials)
        assert suggestion.configs == [{"lr": 0.0014, "units": 40, "opt": "adam"}]
        assert [item["id"] for item in plugin_state(restored)["seen"]] == [0, 1, 2, 3]
    finally:
        restored.close()


def test_plugin_restart_logged(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    trials: list[TrialView] = []
    try:
        start(trials, searcher.suggest(1, trials).configs)
        process = searcher._process._process
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        with capture_logs() as logs:
            start(trials, searcher.suggest(1, trials).configs)
    finally:
        searcher.close()
    assert plugin_state(searcher)["calls"] == 2  # set_state() gave the new process the count of the old one
    restarts = [entry for entry in logs if entry["event"] == "plugin process restarted"]
    assert len(restarts) == 1
    assert restarts[0]["log_level"] == "warning"
    assert restarts[0]["plugin"] == "good"
    assert restarts[0]["task"] == searcher.spec.name
    assert restarts[0]["cause"] == f"the previous process exited with code {-signal.SIGKILL}"
    assert restarts[0]["state"] == "restored by set_state()"


def test_plugin_first_start_not_logged(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    try:
        with capture_logs() as logs:
            searcher.suggest(1, [])
    finally:
        searcher.close()
    assert [entry for entry in logs if entry["event"] == "plugin process restarted"] == []


def test_plugin_state_version_checked(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    with pytest.raises(PluginError, match="version 99"):
        searcher.set_state({"version": 99})


def test_plugin_check_starts_optimizer(plugin_dir):
    searcher = searcher_for(plugin_dir, "good", GOOD)
    try:
        searcher.check()
    finally:
        searcher.close()


# --- plugins that misbehave ----------------------------------------------------------------------------------------

RAISES = """
    from plugins.core.base_plugin_opt import BasePluginOptimizer

    class PluginOptimizer(BasePluginOptimizer):
        def search(self, number_samples, last_exp_results):
            if number_samples == 3:
                raise ValueError("cannot propose three")
            return [{"lr": 0.01, "units": 8, "opt": "sgd"}][:number_samples]
"""


def test_plugin_raise_is_plugin_error(plugin_dir):
    searcher = searcher_for(plugin_dir, "raises", RAISES)
    with capture_logs() as logs, pytest.raises(PluginError) as info:
        searcher.suggest(3, [])
    message = str(info.value)
    first_line = message.splitlines()[0]
    path = plugin_dir / "raises" / "optimizer.py"
    line = path.read_text().splitlines().index('            raise ValueError("cannot propose three")') + 1
    assert "plugin 'raises'" in first_line
    assert "search() raised ValueError: cannot propose three" in first_line
    assert f"at {path.resolve()}:{line} in search()" in first_line
    assert "fix the exception raised there" in first_line
    assert "The full traceback is in the coordinator's log (the terminal, under openhpo run)." in first_line
    assert "optimizer.py" in message.splitlines()[-3]  # the traceback's last lines follow
    failures = [entry for entry in logs if entry["event"] == "plugin call failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert failures[0]["call"] == "search()"
    assert failures[0]["exception"].startswith("Traceback (most recent call last):")
    assert "ValueError: cannot propose three" in failures[0]["exception"]


def test_plugin_raise_names_plugin_frame(plugin_dir):
    body = """
        import json

        from plugins.core.base_plugin_opt import BasePluginOptimizer

        def parse(text):
            return json.loads(text)

        class PluginOptimizer(BasePluginOptimizer):
            def search(self, number_samples, last_exp_results):
                return parse("{not json")
    """
    searcher = searcher_for(plugin_dir, "bad_json", body)
    with pytest.raises(PluginError) as info:
        searcher.suggest(1, [])
    first_line = str(info.value).splitlines()[0]
    path = (plugin_dir / "bad_json" / "optimizer.py").resolve()
    line = path.read_text().splitlines().index("    return json.loads(text)") + 1
    # The json module's frames are deeper, but they are not the plugin's code.
    assert f"raised JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1) " \
           f"at {path}:{line} in parse()" in first_line


def test_plugin_recovers_after_raise(plugin_dir):
    searcher = searcher_for(plugin_dir, "raises", RAISES)
    try:
        with pytest.raises(PluginError):
            searcher.suggest(3, [])
        assert searcher.suggest(1, []).configs == [{"lr": 0.01, "units": 8, "opt": "sgd"}]
    finally:
        searcher.close()


@pytest.mark.parametrize("returned, expected", [
    ('[{"lr": "fast", "units": 8, "opt": "sgd"}]', "item 0.lr: 'fast' is not a finite number"),
    ('[{"lr": 0.5, "units": 8, "opt": "sgd"}]', "item 0.lr: 0.5 is outside [0.001, 0.1]"),
    ('[{"lr": 0.01, "units": 12, "opt": "sgd"}]', "item 0.units: 12 is not on the grid"),
    ('[{"lr": 0.01, "units": 8, "opt": "lbfgs"}]', "item 0.opt: 'lbfgs' is not one of ['sgd', 'adam']"),
    ('[{"lr": 0.01, "units": 8, "opt": "sgd", "momentum": 0.9}]', "item 0: names parameters not in the search "
                                                                   "space: ['momentum']"),
    ('[{"lr": 0.01, "units": 8}]', "item 0: has no value for ['opt']"),
    ('[{"lr": 0.01, "units": 8, "opt": "sgd"}, [0.01, 8, "sgd"]]', "item 1: must be an object"),
    ('None', "search() returned NoneType None"),
    ('{"lr": 0.01}', "search() returned dict"),
    ('[{"lr": float("nan"), "units": 8, "opt": "sgd"}]', "item 0.lr: nan is not a finite number"),
])
def test_plugin_bad_values_rejected(plugin_dir, returned, expected):
    body = f"""
        from plugins.core.base_plugin_opt import BasePluginOptimizer

        class PluginOptimizer(BasePluginOptimizer):
            def search(self, number_samples, last_exp_results):
                return {returned}
    """
    searcher = searcher_for(plugin_dir, "bad_values", body)
    with pytest.raises(PluginError) as info:
        searcher.suggest(2, [])
    assert "plugin 'bad_values'" in str(info.value)
    assert expected in str(info.value)


def test_plugin_hang_times_out(plugin_dir):
    body = """
        import time
        from plugins.core.base_plugin_opt import BasePluginOptimizer

        class PluginOptimizer(BasePluginOptimizer):
            def search(self, number_samples, last_exp_results):
                time.sleep(3600)
    """
    searcher = searcher_for(plugin_dir, "hangs", body, {"PluginTimeout": "1"})
    assert searcher.timeout == 1
    # Start the plugin with a generous limit, so that only search() runs against the 1 s one.
    searcher.timeout = 30
    searcher.check()
    searcher.timeout = 1
    started = time.monotonic()
    with pytest.raises(PluginError, match=r"plugin 'hangs': search\(\) timed out after 1 s"):
        searcher.suggest(1, [])
    assert time.monotonic() - started < 5
    assert not searcher._process.running


def test_plugin_crash_reports_exit_code(plugin_dir):
    body = """
        import os, sys
        from plugins.core.base_plugin_opt import BasePluginOptimizer

        class PluginOptimizer(BasePluginOptimizer):
            def search(self, number_samples, last_exp_results):
                print("about to crash", file=sys.stderr, flush=True)
                os._exit(3)
    """
    searcher = searcher_for(plugin_dir, "crashes", body)
    with pytest.raises(PluginError, match="exited with code 3 during search") as info:
        searcher.suggest(1, [])
    assert "about to crash" in str(info.value)


def test_plugin_sys_exit_is_plugin_error(plugin_dir):
    body = """
        import sys
        from plugins.core.base_plugin_opt import BasePluginOptimizer

        class PluginOptimizer(BasePluginOptimizer):
            def search(self, number_samples, last_exp_results):
                sys.exit(2)
    """
    searcher = searcher_for(plugin_dir, "exits", body)
    with pytest.raises(PluginError, match="search\\(\\) raised SystemExit"):
        searcher.suggest(1, [])


def test_plugin_init_failure(plugin_dir):
    body = """
        from plugins.core.base_plugin_opt import BasePluginOptimizer

        class PluginOptimizer(BasePluginOptimizer):
            def __init__(self, name, hyper_parameters, **kwargs):
                raise KeyError("random_seed")

            def search(self, number_samples, last_exp_results):
                return []
    """
    searcher = searcher_for(plugin_dir, "bad_init", body)
    with pytest.raises(PluginError, match=r"PluginOptimizer.__init__\(\) raised KeyError"):
        searcher.suggest(1, [])


def test_plugin_import_failure(plugin_dir):
    searcher = searcher_for(plugin_dir, "broken", "def search(:\n")
    with pytest.raises(PluginError, match="importing .*optimizer.py raised SyntaxError") as info:
        searcher.check()
    path = (plugin_dir / "broken" / "optimizer.py").resolve()
    assert f"at {path}:1; fix the exception raised there" in str(info.value)


def test_plugin_missing_module_says_install(plugin_dir):
    searcher = searcher_for(plugin_dir, "needs_module", "import math\nimport numpyy\n")
    with pytest.raises(PluginError) as info:
        searcher.check()
    first_line = str(info.value).splitlines()[0]
    path = (plugin_dir / "needs_module" / "optimizer.py").resolve()
    assert f"raised ModuleNotFoundError: No module named 'numpyy' at {path}:2 in <module>()" in first_line
    assert "install the package that provides module 'numpyy' in the Python environment where the openhpo " \
           "coordinator runs" in first_line
    assert "fix the exception raised there" not in first_line


def test_plugin_missing_class(plugin_dir):
    searcher = searcher_for(plugin_dir, "no_class", "class Optimizer:\n    pass\n")
    with pytest.raises(PluginError, match="defines no class PluginOptimizer") as info:
        searcher.suggest(1, [])
    assert "define a class named PluginOptimizer that subclasses plugins.core.base_plugin_opt." \
           "BasePluginOptimizer, or rename your optimizer class to PluginOptimizer" in str(info.value)


def test_plugin_state_not_json(plugin_dir):
    body = """
        from plugins.core.base_plugin_opt import BasePluginOptimizer

        class PluginOptimizer(BasePluginOptimizer):
            def search(self, number_samples, last_exp_results):
                return []

            def get_state(self):
                return {"rng": object()}
    """
    searcher = searcher_for(plugin_dir, "bad_state", body)
    with pytest.raises(PluginError, match="not JSON"):
        searcher.suggest(1, [])


def test_plugin_timeout_param_rejected(plugin_dir):
    write_plugin(plugin_dir, "good", GOOD)
    for raw in ("0", "-1", "soon", "inf"):
        with pytest.raises(SpecError, match="PluginTimeout") as info:
            load_plugin_factory(plugin_dir)(make_spec("good", {"PluginTimeout": raw}))
        assert 'write e.g. {"name": "PluginTimeout", "value": "60"}, the default' in str(info.value)


# --- exhaustion and repeats ----------------------------------------------------------------------------------------

EMPTY = """
    from plugins.core.base_plugin_opt import BasePluginOptimizer

    class PluginOptimizer(BasePluginOptimizer):
        def search(self, number_samples, last_exp_results):
            return []
"""


def test_plugin_empty_list_exhausts(plugin_dir):
    searcher = searcher_for(plugin_dir, "empty", EMPTY)
    try:
        running = [TrialView(0, {"lr": 0.01, "units": 8, "opt": "sgd"}, TrialState.RUNNING)]
        assert not searcher.suggest(1, running).exhausted
        ended = [dataclasses.replace(running[0], state=TrialState.FINISHED, loss=0.1)]
        suggestion = searcher.suggest(1, ended)
        assert suggestion.configs == []
        assert suggestion.exhausted
    finally:
        searcher.close()


REPEATS = """
    from plugins.core.base_plugin_opt import BasePluginOptimizer

    class PluginOptimizer(BasePluginOptimizer):
        def search(self, number_samples, last_exp_results):
            return [{"lr": 0.01, "units": 8, "opt": "sgd"}] * number_samples
"""


def test_plugin_repeats_dropped(plugin_dir):
    searcher = searcher_for(plugin_dir, "repeats", REPEATS)
    try:
        assert searcher.suggest(3, []).configs == [{"lr": 0.01, "units": 8, "opt": "sgd"}]
    finally:
        searcher.close()


def test_plugin_only_repeats_fails_task(plugin_dir):
    searcher = searcher_for(plugin_dir, "repeats", REPEATS)
    trials = [TrialView(0, {"lr": 0.01, "units": 8, "opt": "sgd"}, TrialState.FINISHED, loss=0.1)]
    try:
        for _ in range(IDLE_CALL_LIMIT - 1):
            suggestion = searcher.suggest(1, trials)
            assert suggestion.configs == []
            assert not suggestion.exhausted
        with pytest.raises(PluginError, match="only configurations already tried"):
            searcher.suggest(1, trials)
    finally:
        searcher.close()


def test_plugin_extra_configs_cut(plugin_dir):
    body = """
        from plugins.core.base_plugin_opt import BasePluginOptimizer

        class PluginOptimizer(BasePluginOptimizer):
            def search(self, number_samples, last_exp_results):
                return [{"lr": 0.01 * (k + 1), "units": 8, "opt": "sgd"} for k in range(5)]
    """
    searcher = searcher_for(plugin_dir, "extra", body)
    try:
        assert len(searcher.suggest(2, []).configs) == 2
    finally:
        searcher.close()


# --- import paths --------------------------------------------------------------------------------------------------


def test_wmla_import_path():
    from hpo_core.algorithms import plugin_api
    from plugins.core.base_plugin_opt import BasePluginOptimizer
    from plugins.core.logger import logger

    assert plugin_api.BasePluginOptimizer is BasePluginOptimizer
    assert plugin_api.logger is logger
    assert logger.name == "openhpo.plugin"


def test_base_plugin_defaults():
    from plugins.core.base_plugin_opt import BasePluginOptimizer

    class Minimal(BasePluginOptimizer):
        def search(self, number_samples, last_exp_results):
            return []

    optimizer = Minimal("minimal", [{"name": "lr"}], random_seed="3")
    assert optimizer.name == "minimal"
    assert optimizer.hyper_parameters == [{"name": "lr"}]
    assert optimizer.algo_params == {"random_seed": "3"}
    assert optimizer.get_state() is None
    with pytest.raises(TypeError):
        BasePluginOptimizer("abstract", [])  # type: ignore[abstract]


# --- install, list, delete, lookup ---------------------------------------------------------------------------------


def test_install_list_delete(tmp_path, plugin_dir):
    source = write_plugin(tmp_path / "src", "anything", GOOD)
    (source / "helper.txt").write_text("data")
    info = install_plugin(source, "my-algo_1", plugin_dir)
    assert info == PluginInfo("my-algo_1", "directory", str((plugin_dir / "my-algo_1").resolve()))
    assert (plugin_dir / "my-algo_1" / "helper.txt").read_text() == "data"
    assert [p.name for p in list_plugins(plugin_dir)] == ["my-algo_1"]
    assert [p.name for p in plugin_dir.iterdir()] == ["my-algo_1"]  # no staging directory left

    delete_plugin("my-algo_1", plugin_dir)
    assert list_plugins(plugin_dir) == []
    with pytest.raises(PluginError, match="no plugin named 'my-algo_1'"):
        delete_plugin("my-algo_1", plugin_dir)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "x" * 65, "dot.name", "/abs", None])
def test_plugin_names_rejected(tmp_path, plugin_dir, name):
    source = write_plugin(tmp_path / "src", "anything", GOOD)
    with pytest.raises(SpecError, match="1-64 letters"):
        install_plugin(source, name, plugin_dir)
    with pytest.raises(SpecError, match="1-64 letters"):
        delete_plugin(name, plugin_dir)
    with pytest.raises(SpecError, match="1-64 letters"):
        check_plugin_name(name)


def test_install_rejects_builtin_name(tmp_path, plugin_dir):
    source = write_plugin(tmp_path / "src", "anything", GOOD)
    with pytest.raises(SpecError, match="built-in algorithm"):
        install_plugin(source, "hyperband", plugin_dir)


def test_install_rejects_missing_optimizer(tmp_path, plugin_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="contains no optimizer.py"):
        install_plugin(tmp_path / "empty", "empty", plugin_dir)


def test_install_existing_needs_replace(tmp_path, plugin_dir):
    source = write_plugin(tmp_path / "src", "anything", GOOD)
    install_plugin(source, "algo", plugin_dir)
    with pytest.raises(PluginError, match="installed already"):
        install_plugin(source, "algo", plugin_dir)
    with pytest.raises(PluginError, match="installed already"):
        install_plugin(source, "ALGO", plugin_dir)
    (source / "optimizer.py").write_text(textwrap.dedent(EMPTY))
    install_plugin(source, "algo", plugin_dir, replace=True)
    assert "return []" in (plugin_dir / "algo" / "optimizer.py").read_text()
    assert [p.name for p in plugin_dir.iterdir()] == ["algo"]


def test_install_broken_leaves_nothing(tmp_path, plugin_dir):
    source = write_plugin(tmp_path / "src", "anything", "raise ImportError('missing dependency')\n")
    with pytest.raises(PluginError, match="missing dependency"):
        install_plugin(source, "broken", plugin_dir)
    assert list(plugin_dir.iterdir()) == []


def test_factory_unknown_algorithm(plugin_dir):
    with pytest.raises(SpecError, match="not a known algorithm or installed plugin"):
        load_plugin_factory(plugin_dir)(make_spec("nothing_here"))


def test_factory_through_create_searcher(plugin_dir):
    write_plugin(plugin_dir, "MyAlgo", GOOD)
    searcher = create_searcher(make_spec("myalgo"), load_plugin_factory(plugin_dir))
    assert isinstance(searcher, PluginSearcher)
    assert searcher.name == "MyAlgo"


def test_find_plugin_ignores_paths(plugin_dir):
    write_plugin(plugin_dir, "good", GOOD)
    assert find_plugin("good", plugin_dir) is not None
    assert find_plugin("../plugins/good", plugin_dir) is None


def test_default_plugin_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENHPO_PLUGIN_DIR", str(tmp_path))
    assert default_plugin_dir() == tmp_path
    monkeypatch.delenv("OPENHPO_PLUGIN_DIR")
    assert default_plugin_dir() == Path(".openhpo/plugins")


def test_entry_point_plugin(tmp_path, monkeypatch, plugin_dir):
    site = tmp_path / "site"
    package = site / "ep_algo_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(GOOD))
    dist_info = site / "ep_algo_pkg-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-algo-pkg\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[openhpo.algorithms]\nep_algo = ep_algo_pkg:PluginOptimizer\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))

    info = find_plugin("ep_algo", plugin_dir)
    assert info == PluginInfo("ep_algo", "entry_point", "ep_algo_pkg:PluginOptimizer")
    searcher = load_plugin_factory(plugin_dir)(make_spec("ep_algo"))
    try:
        assert len(searcher.suggest(2, []).configs) == 2
    finally:
        searcher.close()
    with pytest.raises(PluginError, match="installed as a Python package"):
        delete_plugin("ep_algo", plugin_dir)


# --- the example plugins -------------------------------------------------------------------------------------------


def run_example(plugin_dir: Path, name: str, hyper_params, rounds: int = 6, slots: int = 3):
    install_plugin(EXAMPLES / name, name, plugin_dir)
    spec = make_spec(name, {"RandomSeed": "3"}, hyper_params)
    searcher = load_plugin_factory(plugin_dir)(spec)
    trials: list[TrialView] = []
    try:
        for _ in range(rounds):
            start(trials, searcher.suggest(slots, trials).configs)
            finish_all(trials)
        state = json.loads(json.dumps(searcher.get_state()))
    finally:
        searcher.close()
    restored = load_plugin_factory(plugin_dir)(spec)
    try:
        restored.set_state(state)
        start(trials, restored.suggest(slots, trials).configs)
    finally:
        restored.close()
    return spec, trials


def test_example_random_plugin(plugin_dir):
    spec, trials = run_example(plugin_dir, "random_plugin", HYPER_PARAMS)
    assert len(trials) == 21
    for view in trials:
        assert spec.space.check_config(view.config, "config") == view.config


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None or importlib.util.find_spec("cmaes") is None,
                    reason="the CMA-ES example needs optuna and cmaes")
def test_example_optuna_cmaes(plugin_dir):
    numeric = [{"name": "lr", "type": "Range", "dataType": "DOUBLE", "minDbVal": -4, "maxDbVal": -1, "power": "10"},
               {"name": "units", "type": "Range", "dataType": "INT", "minIntVal": 8, "maxIntVal": 64, "step": "8"},
               {"name": "dropout", "type": "Range", "dataType": "DOUBLE", "minDbVal": 0.0, "maxDbVal": 0.5,
                "step": "0.05"}]
    spec, trials = run_example(plugin_dir, "optuna_cmaes", numeric)
    assert len(trials) == 21
    for view in trials:
        assert spec.space.check_config(view.config, "config") == view.config
    assert len({spec.space.key(view.config) for view in trials}) == len(trials)
    assert all(math.isfinite(view.config["lr"]) for view in trials)


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None or importlib.util.find_spec("cmaes") is None,
                    reason="the CMA-ES example needs optuna and cmaes")
def test_example_optuna_cmaes_rejects_discrete(plugin_dir):
    install_plugin(EXAMPLES / "optuna_cmaes", "optuna_cmaes", plugin_dir)
    searcher = load_plugin_factory(plugin_dir)(make_spec("optuna_cmaes"))
    with pytest.raises(PluginError, match="DOUBLE and INT Range parameters only"):
        searcher.suggest(1, [])
