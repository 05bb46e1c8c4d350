"""Search-algorithm plugins: WMLA's ``optimizer.py`` interface, run in a separate process.

A plugin is a directory ``<plugin_dir>/<name>/optimizer.py`` that defines ``class PluginOptimizer`` (a subclass of
``plugins.core.base_plugin_opt.BasePluginOptimizer``), or an installed package that declares an entry point
``<name> = module:PluginOptimizer`` in the ``openhpo.algorithms`` group. ``plugin_dir`` comes from the
``OPENHPO_PLUGIN_DIR`` environment variable, by default ``.openhpo/plugins``. A task selects a plugin with
``algoDef.algorithm = <name>``. Names are 1-64 letters, digits, ``_`` or ``-``, and are never paths.

How openhpo drives a plugin (:class:`PluginSearcher`):

* The plugin runs in its own process (:mod:`hpo_core.algorithms.plugin_process`), created once per task with
  ``PluginOptimizer(name, hyper_parameters, **algoParams)``. ``hyper_parameters`` is the request's
  ``hyperParams`` list as submitted, and every ``algoParams`` value is a string. openhpo reads ``PluginTimeout``
  (seconds per call, default 60) and the ``EarlyStopping*`` parameters itself and does not pass them on.
* Whenever trial slots are free, openhpo calls ``search(number_samples, last_exp_results)``. The results are
  only the trials that ended since the previous call, each one::

      {"id": 3, "hyperParams": {"lr": 0.01}, "metricVal": 0.42, "loss": 0.42, "state": "FINISHED",
       "metrics": {"accuracy": 0.91}}

  ``metricVal`` is the objective in the user's direction and ``loss`` the same value sign-flipped so that lower
  is better. Both are ``None`` when the trial has no result (``FAILED``, or ``STOPPED`` before reporting).
  ``metrics`` holds the values of the task's ``additionalMetrics`` that the trial reported, in the user's
  direction, and is ``{}`` when the task has none.
  ``state`` is ``FINISHED``, ``FAILED`` or ``STOPPED``.
* ``search`` returns a list of ``{name: value}`` dicts. Each is checked against the search space, and an
  invalid one fails the task with a :class:`PluginError` that names the plugin, the item and the value.
  Configurations that repeat an existing trial are dropped. An empty list while no trial is running means the
  search space is exhausted.
* After each ``search``, openhpo calls ``get_state()`` if the plugin defines it and stores the result with its
  own state, which must therefore be JSON-serialisable (numpy arrays and scalars are converted). After a
  coordinator restart, or after the plugin process was replaced, a new ``PluginOptimizer`` gets that state
  through ``set_state()``, and results already delivered are not sent again. A plugin without ``get_state``
  loses what it learnt in memory when its process is replaced.

Any failure of the plugin (an exception, an invalid reply, a crash, a call that runs past the timeout) raises
:class:`PluginError` with the reason, and the next call starts a fresh process from the last good state, which
is logged as a WARNING. When the plugin's code raised, the reason names the file and line of the innermost frame
in the plugin's own files, and the full traceback is logged at ERROR as ``plugin call failed``.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import structlog

from hpo_core.algorithms.base import Searcher, Suggestion, TrialView
from hpo_core.algorithms.plugin_process import PluginProcess
from hpo_core.errors import PluginError, SpecError
from hpo_core.spec import BUILTIN_ALGORITHMS, TaskSpec

log = structlog.get_logger("openhpo.plugin")

PLUGIN_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENTRY_POINT_GROUP = "openhpo.algorithms"
PLUGIN_DIR_ENV = "OPENHPO_PLUGIN_DIR"
DEFAULT_PLUGIN_DIR = ".openhpo/plugins"
#: Seconds one plugin call (start-up and ``__init__`` included) may take, unless ``PluginTimeout`` sets another limit.
DEFAULT_TIMEOUT = 60.0
#: ``algoParams`` that openhpo reads itself and does not pass to the plugin.
RESERVED_PARAMS = frozenset({"PluginTimeout", "EarlyStopping", "EarlyStoppingGrace", "EarlyStoppingMinTrials"})
#: Calls in a row that may propose only repeated configurations, while no trial runs, before the task fails.
IDLE_CALL_LIMIT = 10


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin.

    Attributes:
        name: the algorithm name that selects it.
        kind: ``directory`` for ``<plugin_dir>/<name>/optimizer.py``, ``entry_point`` for an installed package.
        location: the plugin's directory, or the entry point's ``module:attribute``.
    """

    name: str
    kind: str
    location: str

    def source(self) -> dict[str, str]:
        """Describe where the host process finds the plugin."""
        if self.kind == "directory":
            return {"kind": "directory", "path": self.location}
        return {"kind": "entry_point", "name": self.name}


def check_plugin_name(name: Any, field: str = "name") -> str:
    """Return ``name`` if it is a valid plugin name.

    Raises:
        SpecError: not 1-64 letters, digits, ``_`` or ``-``.
    """
    if not isinstance(name, str) or not PLUGIN_NAME_PATTERN.match(name):
        raise SpecError(field, "must be 1-64 letters, digits, '_' or '-'", name,
                        "choose a name such as my_optimizer; a plugin name is never a path")
    return name


def default_plugin_dir() -> Path:
    """Return the plugin directory: ``$OPENHPO_PLUGIN_DIR``, or ``.openhpo/plugins`` under the working directory."""
    return Path(os.environ.get(PLUGIN_DIR_ENV) or DEFAULT_PLUGIN_DIR)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if PLUGIN_NAME_PATTERN.match(entry_point.name):
            found.setdefault(entry_point.name, entry_point)
    return found


def _directory_plugins(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    return {path.name: path for path in sorted(root.iterdir())
            if PLUGIN_NAME_PATTERN.match(path.name) and (path / "optimizer.py").is_file()}


def list_plugins(plugin_dir: str | os.PathLike | None = None) -> list[PluginInfo]:
    """List the installed plugins, sorted by name; a directory plugin hides an entry point of the same name."""
    root = Path(plugin_dir) if plugin_dir is not None else default_plugin_dir()
    found = {name: PluginInfo(name, "directory", str(path.resolve()))
             for name, path in _directory_plugins(root).items()}
    for name, entry_point in _entry_points().items():
        found.setdefault(name, PluginInfo(name, "entry_point", entry_point.value))
    return [found[name] for name in sorted(found)]


def find_plugin(name: str, plugin_dir: str | os.PathLike | None = None) -> PluginInfo | None:
    """Find the plugin that ``name`` selects, matching the exact name first and then ignoring case."""
    if not isinstance(name, str) or not PLUGIN_NAME_PATTERN.match(name):
        return None
    installed = list_plugins(plugin_dir)
    for info in installed:
        if info.name == name:
            return info
    for info in installed:
        if info.name.lower() == name.lower():
            return info
    return None


def check_plugin(info: PluginInfo, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Import a plugin in a separate process and check that it defines ``PluginOptimizer`` with ``search``.

    Raises:
        PluginError: the import failed or timed out, or the class is missing.
    """
    process = PluginProcess(f"plugin {info.name!r}", info.location if info.kind == "directory" else None,
                            log_name="the log of the process that installs the plugin")
    try:
        process.request({"op": "check", "source": info.source()}, "import", timeout)
    finally:
        process.close()


def install_plugin(src_dir: str | os.PathLike, name: str, plugin_dir: str | os.PathLike | None = None, *,
                   replace: bool = False, timeout: float = DEFAULT_TIMEOUT) -> PluginInfo:
    """Copy a plugin directory to ``<plugin_dir>/<name>`` after checking that it imports.

    Args:
        src_dir: a directory with ``optimizer.py`` at its top, and any helper files.
        name: the algorithm name that will select the plugin.
        plugin_dir: where plugins are installed; :func:`default_plugin_dir` when ``None``.
        replace: replace an installed plugin of the same name instead of raising.
        timeout: seconds the import check may take.

    Raises:
        SpecError: an invalid name, a built-in algorithm's name, or no ``optimizer.py`` in ``src_dir``.
        PluginError: a plugin of that name is installed already, or the plugin does not import.
    """
    check_plugin_name(name)
    if name.lower() in BUILTIN_ALGORITHMS:
        raise SpecError("name", "is the name of a built-in algorithm", name, "choose another name for the plugin")
    source = Path(src_dir)
    if not (source / "optimizer.py").is_file():
        raise SpecError("path", "contains no optimizer.py", str(source),
                        "give the plugin directory that has optimizer.py at its top")
    root = Path(plugin_dir) if plugin_dir is not None else default_plugin_dir()
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    clash = [other for other in _directory_plugins(root) if other.lower() == name.lower() and other != name]
    if clash or (target.exists() and not replace):
        raise PluginError(f"a plugin named {(clash or [name])[0]!r} is installed already in {root}; delete it "
                          "first, or install with replace")

    # Copy next to the target, check the copy, then move it in place, so a failed install leaves nothing behind.
    staging = Path(tempfile.mkdtemp(prefix=f".install-{name}-", dir=root))
    try:
        shutil.copytree(source, staging / "plugin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        check_plugin(PluginInfo(name, "directory", str((staging / "plugin").resolve())), timeout)
        if target.exists():
            os.replace(target, staging / "replaced")
        os.replace(staging / "plugin", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("plugin installed", plugin=name, path=str(target))
    return PluginInfo(name, "directory", str(target.resolve()))


def delete_plugin(name: str, plugin_dir: str | os.PathLike | None = None) -> None:
    """Delete the plugin directory ``<plugin_dir>/<name>``.

    Raises:
        SpecError: an invalid name.
        PluginError: no such plugin, or a plugin installed as a Python package, which only pip can remove.
    """
    check_plugin_name(name)
    root = Path(plugin_dir) if plugin_dir is not None else default_plugin_dir()
    target = root / name
    if target.is_dir():
        shutil.rmtree(target)
        log.info("plugin deleted", plugin=name, path=str(target))
        return
    entry_point = _entry_points().get(name)
    if entry_point is not None:
        raise PluginError(f"plugin {name!r} is installed as a Python package (entry point {entry_point.value}); "
                          "uninstall that package with pip")
    raise PluginError(f"no plugin named {name!r} in {root}")


def load_plugin_factory(plugin_dir: str | os.PathLike | None = None) -> Callable[[TaskSpec], Searcher]:
    """Return a factory for :func:`hpo_core.algorithms.create_searcher` that builds plugin searchers.

    The factory looks plugins up on each call, so plugins installed later are found. It raises
    :class:`SpecError` for an algorithm name that no plugin has.
    """

    def create(spec: TaskSpec) -> Searcher:
        info = find_plugin(spec.algorithm, plugin_dir)
        if info is None:
            installed = [p.name for p in list_plugins(plugin_dir)]
            raise SpecError("algoDef.algorithm", "is not a known algorithm or installed plugin", spec.algorithm,
                            f"use one of {sorted(set(BUILTIN_ALGORITHMS.values()))}, or an installed plugin "
                            f"({installed or 'none installed'})")
        return PluginSearcher(spec, info)

    return create


def read_timeout(spec: TaskSpec) -> float:
    """Return the plugin call timeout in seconds from ``algoParams`` ``PluginTimeout``, or the default.

    Raises:
        SpecError: the value is not a positive, finite number.
    """
    raw = spec.algo_params.get("PluginTimeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise SpecError("algoDef.algoParams.PluginTimeout", "must be a positive number of seconds", raw,
                        f'write e.g. {{"name": "PluginTimeout", "value": "{DEFAULT_TIMEOUT:g}"}}, the default')
    return value


class PluginSearcher(Searcher):
    """A searcher that delegates to a user's ``PluginOptimizer`` in a separate process; see the module docstring.

    Args:
        spec: the task definition.
        info: the plugin to run.
        timeout: seconds one plugin call may take; ``PluginTimeout`` in ``algoParams``, or 60, when ``None``.

    Raises:
        SpecError: an invalid ``PluginTimeout``.
    """

    state_version = 1

    def __init__(self, spec: TaskSpec, info: PluginInfo, timeout: float | None = None):
        super().__init__(spec)
        self.name = info.name
        self.info = info
        self.timeout = timeout if timeout is not None else read_timeout(spec)
        raw_params = spec.raw.get("hyperParams") if isinstance(spec.raw, dict) else None
        self.hyper_parameters = raw_params if isinstance(raw_params, list) else self.space.to_wmla()
        self.plugin_kwargs = {k: v for k, v in spec.algo_params.items() if k not in RESERVED_PARAMS}
        self.label = f"plugin {info.name!r}"
        self._process = PluginProcess(self.label, info.location if info.kind == "directory" else None)
        self._delivered: set[int] = set()
        self._plugin_state: Any = None
        self._idle_calls = 0
        self._started = False  # whether a plugin process of this searcher has started before

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Start the plugin and create its optimizer now, so a broken plugin fails before the first trial.

        Raises:
            PluginError: the plugin does not import, or its ``__init__`` or ``set_state`` failed or timed out.
        """
        self._ensure_started()

    def close(self) -> None:
        """Stop the plugin process. A later call starts a new one from the last good state."""
        self._process.close()

    def _ensure_started(self) -> None:
        if self._process.running:
            return
        if self._started:
            exit_code = self._process.exit_code
            cause = f"exited with code {exit_code}" if exit_code is not None else "was stopped after a failed call"
            log.warning("plugin process restarted", task=self.spec.name, plugin=self.info.name,
                        cause=f"the previous process {cause}",
                        state=("restored by set_state()" if self._plugin_state is not None
                               else "none saved, so the plugin starts from scratch"))
        self._process.request({"op": "init", "source": self.info.source(), "name": self.info.name,
                               "hyper_parameters": self.hyper_parameters, "kwargs": self.plugin_kwargs,
                               "state": self._plugin_state},
                              "start-up", self.timeout)
        self._started = True

    # --- search ---------------------------------------------------------------------------------------------------

    def suggest(self, n: int, trials: Sequence[TrialView]) -> Suggestion:
        if n <= 0:
            return Suggestion()
        results = [self._result_item(view) for view in sorted(trials, key=lambda t: t.id)
                   if view.state.ended and view.id not in self._delivered]
        self._ensure_started()
        reply = self._process.request({"op": "search", "number_samples": n, "results": results}, "search()",
                                      self.timeout)
        try:
            proposed = self._validate(reply.get("configs"), n)
        except PluginError:
            self.close()  # the plugin has seen the results, so restart it from the state before this call
            raise
        self._delivered.update(item["id"] for item in results)
        self._plugin_state = reply.get("state")

        taken = {self.space.key(view.config) for view in trials}
        configs = []
        for index, config in enumerate(proposed):
            key = self.space.key(config)
            if key in taken:
                log.warning("plugin proposed a configuration already tried; dropped", plugin=self.info.name,
                            item=index, config=config)
                continue
            taken.add(key)
            configs.append(config)

        running = any(view.pending for view in trials)
        if proposed and not configs and not running:
            self._idle_calls += 1
            if self._idle_calls >= IDLE_CALL_LIMIT:
                raise PluginError(f"{self.label}: search() proposed only configurations already tried, "
                                  f"{self._idle_calls} calls in a row; propose new ones, or return [] when the "
                                  "search space is exhausted")
        else:
            self._idle_calls = 0
        return Suggestion(configs, exhausted=not proposed and not running)

    def _result_item(self, view: TrialView) -> dict[str, Any]:
        # Flipping the sign of a loss again gives back the metric in the user's direction.
        metric = None if view.loss is None else self.spec.objective.to_loss(view.loss)
        return {"id": view.id, "hyperParams": dict(view.config), "metricVal": metric, "loss": view.loss,
                "state": view.state.value, "metrics": dict(view.metrics)}

    def _validate(self, proposed: Any, n: int) -> list[dict[str, Any]]:
        if not isinstance(proposed, list):
            raise PluginError(f"{self.label}: search() returned {type(proposed).__name__} {proposed!r:.200}; "
                              "return a list of {name: value} dicts, or [] when the search space is exhausted")
        if len(proposed) > n:
            log.warning("plugin proposed more configurations than requested; the rest are dropped",
                        plugin=self.info.name, requested=n, proposed=len(proposed))
            proposed = proposed[:n]
        configs = []
        for index, item in enumerate(proposed):
            try:
                configs.append(self.space.check_config(item, f"item {index}"))
            except SpecError as exc:
                raise PluginError(f"{self.label}: search() returned an invalid configuration: {exc}") from None
        return configs

    # --- state ----------------------------------------------------------------------------------------------------

    def get_state(self) -> dict[str, Any]:
        return {"version": self.state_version, "delivered": sorted(self._delivered),
                "plugin_state": self._plugin_state, "idle_calls": self._idle_calls}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore the delivered results and the plugin's own state; the plugin restarts with that state.

        Raises:
            PluginError: a state document of another version.
        """
        if not isinstance(state, dict) or state.get("version") != self.state_version:
            version = state.get("version") if isinstance(state, dict) else None
            raise PluginError(f"{self.label}: stored state has version {version!r}, expected "
                              f"{self.state_version}; the task cannot resume with this openhpo version")
        self._delivered = {int(i) for i in state.get("delivered", [])}
        self._plugin_state = state.get("plugin_state")
        self._idle_calls = int(state.get("idle_calls", 0))
        self.close()
