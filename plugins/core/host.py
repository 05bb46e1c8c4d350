"""The process that runs one search-algorithm plugin, driven by JSON lines on stdin and stdout.

:class:`hpo_core.algorithms.plugin.PluginSearcher` starts it as ``python -P -m plugins.core.host`` and sends
one request per line; the host writes one reply line for each. A plugin that raises gets an error reply, and one
that hangs or crashes costs only this process, which the searcher kills and replaces.

Requests:

* ``{"op": "check", "source": SOURCE}``: import the plugin and check that it defines ``PluginOptimizer``.
* ``{"op": "init", "source": SOURCE, "name": str, "hyper_parameters": list, "kwargs": dict, "state": any}``:
  create the optimizer, then pass it ``state`` through ``set_state`` unless ``state`` is ``null``.
* ``{"op": "search", "number_samples": int, "results": list}``: call ``search`` and then ``get_state``.

``SOURCE`` is ``{"kind": "directory", "path": ...}`` for ``<path>/optimizer.py``, or ``{"kind": "entry_point",
"name": ...}`` for an entry point of the ``openhpo.algorithms`` group that names the optimizer class or a module
that defines ``PluginOptimizer``.

Replies are ``{"ok": true, ...}``, with ``configs`` and ``state`` for ``search``, or ``{"ok": false, "error":
"<what failed>", "traceback": "..."}``. The plugin's own output (``print`` and the ``plugins.core.logger``
records) goes to stderr, one ``LEVEL message`` line per record, so it never mixes with the replies.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

ENTRY_POINT_GROUP = "openhpo.algorithms"
CLASS_NAME = "PluginOptimizer"


class HostError(Exception):
    """A request that the host cannot carry out, with the reason to send back."""


def plugin_frame(exc: BaseException, root: Path | None) -> str:
    """Return ``FILE:LINE in FUNCTION()`` for the innermost traceback frame in a file under ``root``.

    A ``SyntaxError`` of a plugin file has no frame in that file, so its own file and line are used. Returns
    ``""`` when ``root`` is ``None`` or no frame lies under it.
    """
    if root is None:
        return ""
    root = root.resolve()
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve().is_relative_to(root):
        return f"{exc.filename}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve().is_relative_to(root):
            return f"{frame.filename}:{frame.lineno} in {frame.name}()"
    return ""


def failure_text(what: str, exc: BaseException, root: Path | None) -> str:
    """Describe a plugin's exception: what raised it, where in the plugin's files, and the fix."""
    text = f"{what} raised {type(exc).__name__}: {exc}"
    where = plugin_frame(exc, root)
    if where:
        text += f" at {where}"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (f"{text}; install the package that provides module {exc.name!r} in the Python environment "
                "where the openhpo coordinator runs (and the API server, which imports plugins to install them)")
    return f"{text}; fix the exception raised there"


def _json_default(value: Any) -> Any:
    """Convert the numpy values and sets that plugins often return into JSON types."""
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} value {value!r} is not JSON serialisable")


def load_class(source: dict[str, Any]) -> type:
    """Import the plugin that ``source`` names and return its ``PluginOptimizer`` class.

    Raises:
        HostError: the plugin cannot be imported or defines no ``PluginOptimizer`` with a ``search`` method.
    """
    if source.get("kind") == "directory":
        directory = Path(source["path"])
        path = directory / "optimizer.py"
        if not path.is_file():
            raise HostError(f"{path} not found")
        # Helper modules next to optimizer.py import by their plain names, as they do under WMLA.
        sys.path.insert(0, str(directory))
        spec = importlib.util.spec_from_file_location("optimizer", path)
        assert spec is not None and spec.loader is not None  # a .py file always has a source loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["optimizer"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            raise HostError(failure_text(f"importing {path}", exc, directory)) from exc
        where = str(path)
    elif source.get("kind") == "entry_point":
        name = source["name"]
        matches = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not matches:
            raise HostError(f"no entry point {name!r} in group {ENTRY_POINT_GROUP}")
        entry_point = next(iter(matches))
        try:
            module = entry_point.load()
        except BaseException as exc:
            # The plugin's files are unknown until its module is imported, so no frame is picked out here.
            raise HostError(failure_text(f"loading entry point {entry_point.value}", exc, None)) from exc
        where = f"entry point {entry_point.value}"
    else:
        raise HostError(f"unknown plugin source {source!r}")

    cls = module if isinstance(module, type) else getattr(module, CLASS_NAME, None)
    if not isinstance(cls, type):
        raise HostError(f"{where} defines no class {CLASS_NAME}; define a class named {CLASS_NAME} that subclasses "
                        f"plugins.core.base_plugin_opt.BasePluginOptimizer, or rename your optimizer class to "
                        f"{CLASS_NAME}")
    if not callable(getattr(cls, "search", None)):
        raise HostError(f"{CLASS_NAME} in {where} has no search() method; define search(self, number_samples, "
                        "last_exp_results) returning a list of {name: value} dicts")
    return cls


def plugin_root(cls: type) -> Path | None:
    """Return the directory of the file that defines ``cls``, whose frames count as the plugin's own code."""
    try:
        return Path(inspect.getfile(cls)).parent
    except (TypeError, OSError):  # a class without a source file
        return None


class Host:
    """The request handler for one plugin instance."""

    def __init__(self) -> None:
        self.optimizer: Any = None
        #: Directory of the plugin's files, used to point error messages at the plugin's own frame.
        self.root: Path | None = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "check":
            load_class(request["source"])
            return {"ok": True}
        if op == "init":
            cls = load_class(request["source"])
            self.root = plugin_root(cls)
            self.optimizer = self._call(f"{CLASS_NAME}.__init__()", cls, request["name"],
                                        request["hyper_parameters"], **request["kwargs"])
            if request.get("state") is not None:
                self._call("set_state()", self.optimizer.set_state, request["state"])
            return {"ok": True}
        if op == "search":
            if self.optimizer is None:
                raise HostError("search before init")
            configs = self._call("search()", self.optimizer.search, request["number_samples"], request["results"])
            get_state = getattr(self.optimizer, "get_state", None)
            state = self._call("get_state()", get_state) if callable(get_state) else None
            return {"ok": True, "configs": configs, "state": state}
        raise HostError(f"unknown request {op!r}")

    def _call(self, what: str, function, *args, **kwargs) -> Any:
        try:
            return function(*args, **kwargs)
        except BaseException as exc:  # SystemExit too: the plugin must not end the host silently
            raise HostError(failure_text(what, exc, self.root)) from exc


def _reply(out: TextIO, message: dict[str, Any]) -> None:
    try:
        text = json.dumps(message, default=_json_default)
    except (TypeError, ValueError) as exc:
        text = json.dumps({"ok": False, "error": f"the plugin returned a value that is not JSON: {exc}"})
    out.write(text + "\n")
    out.flush()


def main() -> None:
    # Replies go to the original stdout; everything the plugin prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

    host = Host()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = host.handle(json.loads(line))
        except HostError as exc:
            cause = exc.__cause__
            detail = "".join(traceback.format_exception(cause)) if cause is not None else ""
            message = {"ok": False, "error": str(exc), "traceback": detail}
        except Exception as exc:  # a malformed request: report it rather than die
            message = {"ok": False, "error": f"invalid request: {type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()}
        _reply(replies, message)


if __name__ == "__main__":
    main()
