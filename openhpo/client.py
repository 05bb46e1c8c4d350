"""Python client of the openhpo REST API.

Example::

    import openhpo

    with openhpo.Client("http://127.0.0.1:8000", token="...") as client:
        name = client.submit("examples/digits/tpe.json", code="examples/digits")
        status = client.wait(name)
        print(status["best"]["values"])
        print(client.trials(name).sort_values("metric").head())

Every failed request raises :class:`OpenHPOHTTPError` with the HTTP status and the server's message;
a server that cannot be reached raises :class:`OpenHPOConnectionError`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import httpx

from hpo_core.errors import OpenHPOError

if TYPE_CHECKING:
    import pandas

__all__ = ["Client", "OpenHPOConnectionError", "OpenHPOHTTPError", "API_PREFIX", "DEFAULT_URL"]

#: Base path of the WMLA routes on the server.
API_PREFIX = "/platform/rest/deeplearning/v1"
#: Server address when neither the ``url`` argument nor ``OPENHPO_URL`` gives one.
DEFAULT_URL = "http://127.0.0.1:8000"
#: Task states after which a task changes no more.
ENDED_STATES = frozenset({"FINISHED", "FAILED", "STOPPED"})


class OpenHPOHTTPError(OpenHPOError):
    """The server returned an error status.

    Attributes:
        status: the HTTP status code.
        message: the server's message (the ``message`` of its JSON error body, else the body's text).
        code: the server's stable error code, e.g. ``task_not_found``, when it sent one.
        field: the JSON path of the rejected field of an invalid task definition, when the server named one.
        method: the request's method.
        url: the request's URL.
    """

    def __init__(self, status: int, message: str, *, code: str | None = None, field: str | None = None,
                 method: str = "", url: str = ""):
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.method = method
        self.url = url
        super().__init__(f"HTTP {status}" + (f" {code}" if code else "") + f": {message} ({method} {url})")


class OpenHPOConnectionError(OpenHPOError):
    """The server could not be reached, or the request timed out."""

    code = "connection_error"


class Client:
    """A client of one openhpo API server; use it as a context manager, or call :meth:`close`.

    Args:
        url: the server's address, e.g. ``http://127.0.0.1:8000``; ``OPENHPO_URL`` or ``DEFAULT_URL`` when ``None``.
        token: the API token; ``OPENHPO_API_TOKEN`` when ``None``. Sent as ``Authorization: Bearer``.
        user: sent as ``X-User``, the creator name of submitted tasks when the token is the administrator's.
        timeout: seconds to wait for each request.
        transport: an httpx transport to use instead of the network (tests pass one that calls the app).
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, user: str | None = None,
                 timeout: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.url = (url or os.environ.get("OPENHPO_URL") or DEFAULT_URL).rstrip("/")
        token = token if token is not None else os.environ.get("OPENHPO_API_TOKEN")
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if user:
            headers["X-User"] = user
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    # --- lifecycle ----------------------------------------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._http.close()

    # --- transport ----------------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("/health") else f"{API_PREFIX}{path}"
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise OpenHPOConnectionError(f"{method} {self.url}{url} timed out ({exc}); the server may be busy, "
                                         "or raise the client's timeout") from None
        except httpx.TransportError as exc:
            raise OpenHPOConnectionError(f"cannot reach the openhpo API at {self.url} ({exc}); check the URL "
                                         "(--url or OPENHPO_URL) and that `openhpo api` runs there") from None
        if response.status_code >= 400:
            raise _http_error(response)
        return response

    # --- tasks --------------------------------------------------------------------------------------------------

    def submit(self, spec: Mapping[str, Any] | str | os.PathLike, code: str | os.PathLike | bytes | None = None,
               *, name: str | None = None) -> str:
        """Submit a task and return its name.

        Args:
            spec: the task definition (WMLA's submit body), or the path of a JSON file holding it.
            code: the model code: a directory (sent as a tar.gz), a ``.py`` script, a tar or tar.gz archive, or
                archive bytes. ``None`` sends no code, for tasks whose ``modelSpec`` runs a command.
            name: the task name (``hpoName``); the server generates one when neither this nor the spec gives one.

        Raises:
            OpenHPOHTTPError: 400 for an invalid definition (``field`` names it), 409 for a taken name, 413 for
                code over the server's limit.
        """
        body = _load_spec(spec)
        if name is not None:
            body["hpoName"] = name
        # A part without a file name is a plain form field, so the request is multipart also without code.
        parts: dict[str, tuple[str | None, bytes | str, str]] = {"data": (None, json.dumps(body), "text/plain")}
        if code is not None:
            filename, content = _code_payload(code)
            parts["file"] = (filename, content, "application/octet-stream")
        return _created_name(self._request("POST", "/hypersearch", files=parts))

    def upload_code(self, code: str | os.PathLike | bytes) -> str:
        """Upload model code once and return its hash, for :meth:`submit_with_hash`."""
        filename, content = _code_payload(code)
        response = self._request("POST", "/code", files={"file": (filename, content, "application/octet-stream")})
        return response.json()["codeHash"]

    def submit_with_hash(self, spec: Mapping[str, Any] | str | os.PathLike, code_hash: str, *,
                         name: str | None = None) -> str:
        """Submit a task that runs code uploaded before with :meth:`upload_code`; returns the task name."""
        body = _load_spec(spec)
        body["codeHash"] = code_hash
        if name is not None:
            body["hpoName"] = name
        return _created_name(self._request("POST", "/hypersearch", json=body))

    def get(self, name: str) -> dict[str, Any]:
        """Return the task's status: WMLA's task-state object with every experiment and the best one."""
        return self._request("GET", f"/hypersearch/{name}").json()

    def list(self, state: str | None = None) -> list[dict[str, Any]]:
        """Return the status of every task the token may see, oldest first, or only of those in ``state``."""
        params = {"state": state} if state else None
        return self._request("GET", "/hypersearch", params=params).json()

    def wait(self, name: str, *, timeout: float | None = None, poll: float = 2.0,
             progress: bool = True) -> dict[str, Any]:
        """Poll the task until it ends and return its final status.

        Args:
            timeout: seconds to wait at most; ``None`` waits as long as it takes.
            poll: seconds between status requests.
            progress: show a progress bar on standard error (rich).

        Raises:
            TimeoutError: the task had not ended after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[detail]}"))
        with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
            row = None
            while True:
                status = self.get(name)
                total = _max_jobs(status)
                if row is None:
                    row = bar.add_task(name, total=total, detail="")
                best = status.get("best")
                detail = f"{status['state'].lower()}, running {status['running']}"
                if best:
                    detail += f", best {best['metricVal']:.5g} (trial {best['id']})"
                bar.update(row, completed=status["complete"], detail=detail)
                if status["state"] in ENDED_STATES:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"task {name} is still {status['state']} after {timeout} s")
                time.sleep(poll)

    def stop(self, name: str, force: bool = False) -> None:
        """Stop a task: running trials are stopped; ``force`` ends the task at once instead of waiting for them.

        Raises:
            OpenHPOHTTPError: 400 when the task has ended already.
        """
        self._request("PUT", f"/hypersearch/{name}/force" if force else f"/hypersearch/{name}")

    def restart(self, name: str) -> dict[str, Any]:
        """Restart a STOPPED or FAILED task, keeping its ended trials; returns its status."""
        return self._request("PUT", f"/hypersearch/{name}/restart").json()

    def delete(self, name: str) -> None:
        """Delete an ended task with its trials.

        Raises:
            OpenHPOHTTPError: 409 while the task runs; stop it first.
        """
        self._request("DELETE", f"/hypersearch/{name}")

    def delete_all(self) -> dict[str, Any]:
        """Delete every ended task of the caller; returns ``{"deleted": [...], "skipped": [...]}``, where skipped
        lists the tasks that still run."""
        return self._request("DELETE", "/hypersearch").json()

    # --- trials -------------------------------------------------------------------------------------------------

    def best(self, name: str) -> dict[str, Any] | None:
        """Return the best experiment so far (``values`` contains its hyperparameters), or ``None`` before any
        result."""
        return self.get(name).get("best")

    def trials(self, name: str) -> "pandas.DataFrame":
        """Return the task's experiments as a DataFrame: one row per trial, one ``param_<name>`` column per
        hyperparameter, and columns id, state, metric (NaN without a value), attempt, start, end, duration (s),
        worker, reason.

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas
        except ImportError:
            raise ImportError("Client.trials needs pandas: pip install 'openhpo[pandas]' (or pip install pandas)") \
                from None
        status = self.get(name)
        rows = []
        for experiment in status["experiments"]:
            has_value = experiment["state"] in ("FINISHED", "STOPPED") and experiment["metricVal"] != 9999.99
            row: dict[str, Any] = {
                "id": experiment["id"], "state": experiment["state"],
                "metric": experiment["metricVal"] if has_value else float("nan"),
                "attempt": experiment.get("attempt"), "start": experiment.get("startTime"),
                "end": experiment.get("endTime"), "duration": experiment.get("duration"),
                "worker": experiment.get("worker"), "reason": experiment.get("reason"),
            }
            row.update({f"param_{key}": value for key, value in experiment.get("values", {}).items()})
            rows.append(row)
        frame = pandas.DataFrame(rows)
        for column in ("start", "end"):
            if column in frame:
                frame[column] = pandas.to_datetime(frame[column])
        return frame

    def exec(self, name: str, trial: int) -> dict[str, Any]:
        """Return one trial as a WMLA exec: state, args, attempt, worker, result directory."""
        return self._request("GET", f"/execs/{name}-{trial}").json()

    def logs(self, name: str, trial: int) -> str:
        """Return the training log of a trial's latest attempt (its last 1 MiB), also while it runs."""
        return self._request("GET", f"/execs/{name}-{trial}/log", headers={"Accept": "text/plain"}).text

    def result(self, name: str, trial: int, path: str | os.PathLike | None = None) -> Path:
        """Download a trial's result directory as a zip to ``path`` (default ``<name>-<trial>.zip``)."""
        response = self._request("GET", f"/execs/{name}-{trial}/result", headers={"Accept": "application/zip"})
        target = Path(path) if path is not None else Path(f"{name}-{trial}.zip")
        target.write_bytes(response.content)
        return target

    # --- service ------------------------------------------------------------------------------------------------

    def algorithms(self) -> list[dict[str, Any]]:
        """Return the built-in algorithms and the installed plugins."""
        return self._request("GET", "/hypersearch/algorithm").json()

    def health(self) -> dict[str, Any]:
        """Return the server's health: ``{"status": "ok", "redis": "ok", "version": ...}``."""
        try:
            return self._request("GET", "/health").json()
        except OpenHPOHTTPError as exc:
            if exc.status == 503:
                return {"status": "unavailable", "redis": exc.message}
            raise


def _http_error(response: httpx.Response) -> OpenHPOHTTPError:
    code = response.headers.get("X-Error-Code")
    field = None
    message = response.text.strip() or response.reason_phrase
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("detail") or body.get("redis") or message)
            code = body.get("code", code)
            field = body.get("field")
    return OpenHPOHTTPError(response.status_code, message, code=code, field=field, method=response.request.method,
                            url=str(response.request.url))


def _created_name(response: httpx.Response) -> str:
    body = response.json()
    return body if isinstance(body, str) else body["hpoName"]


def _max_jobs(status: dict[str, Any]) -> int | None:
    try:
        total = int(status.get("algoDef", {}).get("maxJobNum", -1))
    except (TypeError, ValueError):
        return None
    return total if total > 0 else None


def _load_spec(spec: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        return json.loads(json.dumps(spec))  # a deep copy, and a check that it is JSON
    path = Path(spec)
    try:
        text = path.read_text()
    except OSError as exc:
        raise OpenHPOError(f"cannot read task definition {path}: {exc.strerror}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OpenHPOError(f"task definition {path} is not valid JSON: {exc.msg} at line {exc.lineno} column "
                           f"{exc.colno}") from None
    if not isinstance(body, dict):
        raise OpenHPOError(f"task definition {path} must hold a JSON object, not {type(body).__name__}")
    return body


def _code_payload(code: str | os.PathLike | bytes) -> tuple[str, bytes]:
    """Return the file name and the bytes to upload for ``code``."""
    if isinstance(code, bytes):
        return "code.tar.gz", code
    path = Path(code)
    if path.is_dir():
        from workers.code import pack_directory

        return f"{path.resolve().name}.modelDir.tar", pack_directory(path)
    try:
        return path.name, path.read_bytes()
    except OSError as exc:
        raise OpenHPOError(f"cannot read code {path}: {exc.strerror}; give a directory, a .py script or a tar.gz")\
            from None
