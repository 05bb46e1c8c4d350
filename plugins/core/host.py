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
            raise HostError(f"importing {path} raised {type(exc).__name__}: {exc}") from exc
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
            raise HostError(f"loading entry point {entry_point.value} raised {type(exc).__name__}: {exc}") from exc
        where = f"entry point {entry_point.value}"
    else:
        raise HostError(f"unknown plugin source {source!r}")

    cls = module if isinstance(module, type) else getattr(module, CLASS_NAME, None)
    if not isinstance(cls, type):
        raise HostError(f"{where} defines no class {CLASS_NAME}")
    if not callable(getattr(cls, "search", None)):
        raise HostError(f"{CLASS_NAME} in {where} has no search() method")
    return cls


class Host:
    """The request handler for one plugin instance."""

    def __init__(self) -> None:
        self.optimizer: Any = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "check":
            load_class(request["source"])
            return {"ok": True}
        if op == "init":
            cls = load_class(request["source"])
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

    @staticmethod
    def _call(what: str, function, *args, **kwargs) -> Any:
        try:
            return function(*args, **kwargs)
        except BaseException as exc:  # SystemExit too: the plugin must not end the host silently
            raise HostError(f"{what} raised {type(exc).__name__}: {exc}") from exc


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
