"""Errors of the REST API and their mapping to HTTP responses.

Every error response is a JSON object ``{"code", "message"}``, plus ``field`` and ``fix`` for an invalid task
definition, and carries the same code in the ``X-Error-Code`` header. ``code`` is stable and machine-readable;
``message`` is for people. One response keeps WMLA's plain-text body: a stop request for a task that has ended gets
``Error 400: Model tuning <name> is already stopped.``.

::

    OpenHPOError (hpo_core.errors)
    ├── SpecError              400 invalid_spec (ArchiveError: 400 invalid_archive)
    ├── TaskNotFoundError      404 task_not_found
    ├── TaskExistsError        409 task_exists
    ├── StateConflictError     409 state_conflict
    ├── PluginError            400 plugin_error
    └── ApiError               the status and code of each subclass below
        ├── InvalidRequestError    400 invalid_request
        ├── UnauthorizedError      401 unauthorized
        ├── ForbiddenError         403 forbidden
        ├── NotFoundError          404 not_found
        ├── PayloadTooLargeError   413 payload_too_large
        ├── UnsupportedMediaError  415 unsupported_media_type
        ├── NotImplementedYetError 501 not_implemented
        └── StoreUnavailableError  503 store_unavailable
"""

from __future__ import annotations

from typing import Any

import redis
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hpo_core.errors import (OpenHPOError, PluginError, SpecError, StateConflictError, TaskExistsError,
                             TaskNotFoundError)
from workers.code import ArchiveError

log = structlog.get_logger("openhpo.api")

#: Header that repeats the error code, also on the plain-text WMLA responses.
ERROR_CODE_HEADER = "X-Error-Code"


class ApiError(OpenHPOError):
    """An error that only the REST API raises; each subclass fixes its HTTP status."""

    status = 400
    code = "bad_request"


class InvalidRequestError(ApiError):
    status = 400
    code = "invalid_request"


class UnauthorizedError(ApiError):
    status = 401
    code = "unauthorized"


class ForbiddenError(ApiError):
    status = 403
    code = "forbidden"


class NotFoundError(ApiError):
    status = 404
    code = "not_found"


class PayloadTooLargeError(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaError(ApiError):
    status = 415
    code = "unsupported_media_type"


class NotImplementedYetError(ApiError):
    status = 501
    code = "not_implemented"


class StoreUnavailableError(ApiError):
    status = 503
    code = "store_unavailable"


#: HTTP status of each error class of hpo_core; the most specific class wins.
STATUS_BY_ERROR: list[tuple[type[OpenHPOError], int]] = [
    (ArchiveError, 400),
    (SpecError, 400),
    (TaskNotFoundError, 404),
    (TaskExistsError, 409),
    (StateConflictError, 409),
    (PluginError, 400),
]

#: Codes for the HTTP errors that Starlette and FastAPI raise themselves (unknown route, wrong method).
_CODE_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                   405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def already_stopped(name: str) -> PlainTextResponse:
    """Build WMLA's response to a stop request for a task that has ended, with WMLA's body and status."""
    return PlainTextResponse(f"Error 400: Model tuning {name} is already stopped.", status_code=400,
                             headers={ERROR_CODE_HEADER: "already_stopped"})


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(body, status_code=status, headers={ERROR_CODE_HEADER: code, **(headers or {})})


def _status_of(exc: OpenHPOError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


def _code_of(exc: OpenHPOError) -> str:
    return "invalid_archive" if isinstance(exc, ArchiveError) else exc.code


async def _openhpo_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpenHPOError)
    headers = {"WWW-Authenticate": 'Bearer realm="openhpo"'} if isinstance(exc, UnauthorizedError) else None
    if isinstance(exc, SpecError):
        return error_response(_status_of(exc), _code_of(exc), str(exc), headers, field=exc.field, fix=exc.fix)
    return error_response(_status_of(exc), _code_of(exc), str(exc), headers)


def _location(loc: tuple[Any, ...]) -> str:
    """Format a FastAPI error location such as ``("query", "state")`` as ``query.state``, indices in brackets."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(request)"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = _location(tuple(first.get("loc", ())))
    message = f"{field}: {first.get('msg', 'invalid value')}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(400, "invalid_request", message, field=field,
                          fix="correct the value; the OpenAPI schema at /openapi.json lists every parameter")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("store unavailable", path=request.url.path, error=str(exc))
    return error_response(503, StoreUnavailableError.code, f"the Redis store is unavailable ({exc}); "
                          "retry later, and check OPENHPO_REDIS_URL and that Redis is running")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error in request", method=request.method, path=request.url.path, exc_info=exc)
    return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); the server log has "
                          "the traceback")


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every error into a JSON body with a stable code."""
    app.add_exception_handler(OpenHPOError, _openhpo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(redis.RedisError, _redis_error)
    app.add_exception_handler(Exception, _unexpected_error)
