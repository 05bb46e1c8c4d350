"""The exception tree of openhpo.

::

    OpenHPOError
    ├── SpecError            an invalid task definition or search space (HTTP 400)
    ├── TaskNotFoundError    no task of that name (HTTP 404)
    ├── TaskExistsError      a task of that name exists already (HTTP 409)
    ├── StateConflictError   the change is not legal in the current state (HTTP 400 or 409)
    └── PluginError          a search-algorithm plugin failed to load or misbehaved

Every message names the broken rule with the values involved and, where there is one, the fix.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping


class OpenHPOError(Exception):
    """Root of every error that openhpo raises on purpose."""

    #: A stable machine-readable code that the REST API returns beside the message.
    code = "openhpo_error"


class SpecError(OpenHPOError, ValueError):
    """An invalid task definition: names the field, the value and the fix.

    Args:
        field: path of the offending field, e.g. ``hyperParams[2].maxDbVal``.
        message: what is wrong, in a sentence.
        value: the offending value, shown with ``repr``.
        fix: what the user should do instead.
    """

    code = "invalid_spec"
    _MISSING = object()

    def __init__(self, field: str, message: str, value: Any = _MISSING, fix: str | None = None):
        self.field = field
        self.value = None if value is SpecError._MISSING else value
        self.fix = fix
        text = f"{field}: {message}"
        if value is not SpecError._MISSING:
            text += f" (got {value!r})"
        if fix:
            text += f". Fix: {fix}"
        super().__init__(text)


class TaskNotFoundError(OpenHPOError, KeyError):
    code = "task_not_found"

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"no task named {name!r}; list the tasks with `openhpo list`")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class TaskExistsError(OpenHPOError):
    code = "task_exists"

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"a task named {name!r} exists already; choose another hpoName or delete that task")


class StateConflictError(OpenHPOError):
    code = "state_conflict"


class PluginError(OpenHPOError):
    code = "plugin_error"


def misspelling_hint(given: Mapping[str, Any] | Iterable[str], expected: str) -> str:
    """A hint naming a key of ``given`` that looks like a misspelling of the missing key ``expected``, or ``""``."""
    keys = [k for k in given if isinstance(k, str) and k != expected]
    close = difflib.get_close_matches(expected, keys, n=1, cutoff=0.75)
    return f" (found {close[0]!r}: is it a misspelling of {expected!r}?)" if close else ""
