"""OpenAPI descriptions of the error responses, shared by the routers."""

from __future__ import annotations

from typing import Any

from openhpo.api.schemas import ErrorBody

_DESCRIPTIONS = {
    400: "invalid request: the body names the field and the fix",
    401: "no token, or an unknown one",
    403: "a user token acting on another user's task",
    404: "no such task, trial or algorithm",
    409: "conflict with the current state (name taken, task still running, not restartable)",
    413: "code archive or body over the configured limit",
    415: "content type neither multipart/form-data nor application/json",
    501: "not available in this installation",
    503: "the Redis store is unavailable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` argument of a route for these error statuses, plus 503, which every route may return."""
    return {status: {"model": ErrorBody, "description": _DESCRIPTIONS[status]} for status in (*statuses, 503)}
