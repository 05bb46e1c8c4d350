"""Submitting a task to the store: validation, naming, code upload."""

from __future__ import annotations

import difflib
import getpass
import json
import secrets
import time
from pathlib import Path
from typing import Any

from broker.store import RedisStore
from hpo_core.errors import SpecError, TaskExistsError
from hpo_core.spec import BUILTIN_ALGORITHMS, TaskSpec, check_name


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "user"


def generate_name(creator: str) -> str:
    """A WMLA-style task name, ``<user>-hpo-<digits>``; the user part is reduced to the safe alphabet."""
    safe = "".join(c for c in creator if c.isalnum() or c in "_.-").lstrip("_.-") or "user"
    return f"{safe[:64]}-hpo-{int(time.time() * 1000)}{secrets.randbelow(1000):03d}"


def load_spec_file(path: Path) -> dict[str, Any]:
    """Read a task definition from a JSON file.

    Raises:
        SpecError: the file is missing or not valid JSON.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SpecError(str(path), f"cannot be read ({exc.strerror})", fix="give the path of a JSON task "
                        "definition") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(str(path), f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                        fix="fix the JSON syntax") from None
    return body


def check_algorithm(spec: TaskSpec) -> None:
    """Build the task's searcher once, so that an unknown algorithm or invalid ``algoParams`` fail at submit time.

    Raises:
        SpecError: naming the algorithm or the ``algoParams`` entry.
    """
    from hpo_core.algorithms import check_param_names, create_searcher
    from hpo_core.algorithms.plugin import default_plugin_dir, find_plugin, list_plugins, read_timeout
    from hpo_core.algorithms.schedulers import create_scheduler

    if spec.algorithm in BUILTIN_ALGORITHMS.values():
        check_param_names(spec)
        searcher = create_searcher(spec)
        close = getattr(searcher, "close", None)
        if callable(close):
            close()
    elif find_plugin(spec.algorithm) is None:
        builtin = sorted(set(BUILTIN_ALGORITHMS.values()))
        plugins = sorted(info.name for info in list_plugins())
        close = difflib.get_close_matches(spec.algorithm, builtin + plugins, n=1, cutoff=0.6)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise SpecError("algoDef.algorithm", "is not a built-in algorithm or an installed plugin", spec.algorithm,
                        f"{guess}Built in: {', '.join(builtin)}. Installed plugins: {', '.join(plugins) or 'none'} "
                        f"(in {default_plugin_dir().resolve()} and the openhpo.algorithms entry points); install "
                        "the plugin first")
    else:
        read_timeout(spec)
    # The early-stopping rule applies to every algorithm, plugins included.
    create_scheduler(spec)


def stored_definition(spec: TaskSpec, body: dict[str, Any]) -> dict[str, Any]:
    """The request body as the task stores it: with a ``RandomSeed`` for a built-in algorithm that had none.

    The seed is fixed at submit time, in the stored definition, so that a restarted coordinator proposes what the
    first one would have proposed and the search can be repeated.
    """
    stored = dict(body)
    if spec.seed is None and spec.algorithm in BUILTIN_ALGORITHMS.values():
        algo = dict(stored["algoDef"])
        params = algo.get("algoParams") or []
        seed = {"name": "RandomSeed", "value": str(secrets.randbelow(2**31))}
        algo["algoParams"] = {**params, "RandomSeed": seed["value"]} if isinstance(params, dict) else \
            [*params, seed]
        stored["algoDef"] = algo
    return stored


def submit(store: RedisStore, body: dict[str, Any], code: bytes | None, creator: str) -> str:
    """Validate ``body``, store the code archive and create the task; returns the task name.

    Raises:
        SpecError: the definition or its algorithm settings are invalid (nothing is stored).
        TaskExistsError: ``hpoName`` is taken.
    """
    spec = TaskSpec.parse(body)
    check_algorithm(spec)
    if spec.model.main and code is None:
        raise SpecError("file", "is missing: --model-main names a script but no code was uploaded",
                        fix="upload the model directory as a tar.gz, or use a plain command line")
    digest = store.put_code(code) if code is not None else None
    stored = stored_definition(spec, body)
    # A generated name can collide with a concurrent submit in the same millisecond: draw another.
    for _ in range(5):
        name = spec.name or generate_name(creator)
        check_name(name)
        stored["hpoName"] = name
        try:
            store.create_task(name, stored, creator, digest)
            return name
        except TaskExistsError:
            if spec.name:
                raise
    raise TaskExistsError(name)
