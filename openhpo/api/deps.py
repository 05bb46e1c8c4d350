"""Dependencies of the routes: settings, the store and the authenticated caller.

A request authenticates with the administrator token or a user token, sent in any of the forms WMLA clients use:
``Authorization: Bearer <token>``, ``X-Auth-Token: <token>``, or HTTP Basic with the token as the password.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer

from broker.store import RedisStore, TaskRecord
from openhpo.api.errors import ForbiddenError, InvalidRequestError, UnauthorizedError
from openhpo.api.settings import USER_NAME_PATTERN, ApiSettings

_bearer = HTTPBearer(auto_error=False, description="The API token: `Authorization: Bearer <token>`.")
_token_header = APIKeyHeader(name="X-Auth-Token", auto_error=False,
                             description="The API token, as WMLA's token login sends it.")
_basic = HTTPBasic(auto_error=False, description="Any user name and the API token as the password, as classic "
                                                 "WMLA clients send credentials.")


@dataclass(frozen=True)
class Caller:
    """The sender of a request.

    Attributes:
        name: the user name recorded as the creator of the tasks this caller submits.
        admin: whether the caller may act on every user's tasks.
    """

    name: str
    admin: bool

    def check_owner(self, task: TaskRecord) -> None:
        """Raise ForbiddenError unless this caller may act on ``task``."""
        if not self.admin and task.creator != self.name:
            raise ForbiddenError(f"task {task.name} belongs to {task.creator}; a user token acts on its own "
                                 "user's tasks only")


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_store(request: Request) -> RedisStore:
    return request.app.state.store


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
StoreDep = Annotated[RedisStore, Depends(get_store)]


def _claimed_name(request: Request, basic: HTTPBasicCredentials | None) -> str | None:
    """Return the user name that the request gives for itself: the X-User header, else the HTTP Basic user."""
    name = request.headers.get("X-User") or (basic.username if basic else None)
    if name is None or name == "":
        return None
    if not USER_NAME_PATTERN.match(name):
        raise InvalidRequestError(f"user name {name[:80]!r} (X-User header or HTTP Basic user) must be 1-64 letters, "
                                  "digits, '_', '.', '@' or '-'; send a plain user name such as alice")
    return name


def get_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token_header: Annotated[str | None, Depends(_token_header)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> Caller:
    """Authenticate the request.

    Raises:
        UnauthorizedError: no token, or a token that is not configured (HTTP 401).
        ForbiddenError: a user token whose request names another user (HTTP 403).
    """
    settings: ApiSettings = request.app.state.settings
    claimed = _claimed_name(request, basic)
    if request.app.state.insecure_no_auth:
        return Caller(name=claimed or settings.api_admin_name, admin=True)

    token = bearer.credentials if bearer is not None else None
    if not token:
        token = token_header
    if not token and basic is not None:
        token = basic.password
    if not token:
        raise UnauthorizedError("authentication required: send the API token as `Authorization: Bearer <token>` "
                                "or `X-Auth-Token: <token>`")
    # compare_digest against every configured token, so the time taken does not tell which token came close.
    matched: Caller | None = None
    if settings.api_token and hmac.compare_digest(token.encode(), settings.api_token.encode()):
        matched = Caller(name=claimed or settings.api_admin_name, admin=True)
    for user, user_token in settings.api_users.items():
        if hmac.compare_digest(token.encode(), user_token.encode()):
            matched = Caller(name=user, admin=False)
    if matched is None:
        raise UnauthorizedError("invalid API token; use the token configured in OPENHPO_API_TOKEN or "
                                "OPENHPO_API_USERS on the server")
    if not matched.admin and claimed is not None and claimed != matched.name:
        raise ForbiddenError(f"this token belongs to user {matched.name}, but the request names user {claimed}; "
                             "drop the X-User header or use that user's token")
    return matched


CallerDep = Annotated[Caller, Depends(get_caller)]
