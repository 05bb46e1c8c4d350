"""Settings of the REST API, read from ``OPENHPO_*`` environment variables like the shared ones."""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from broker.settings import Settings

#: User names become the ``creator`` of tasks and the first part of generated task names.
USER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


class ApiSettings(Settings):
    """The shared settings plus those of the API server.

    ``api_token`` (``OPENHPO_API_TOKEN``) is the administrator token: it may act on every task, and the creator of
    what it submits is the ``X-User`` header, the user name of HTTP Basic credentials, or ``api_admin_name``.
    ``api_users`` maps user names to tokens of their own; such a token acts as that user only and lists only that
    user's tasks.
    """

    model_config = SettingsConfigDict(env_prefix="OPENHPO_", extra="ignore")

    #: Per-user tokens as a JSON object ``{"alice": "<token>", ...}`` (``OPENHPO_API_USERS``).
    api_users: dict[str, str] = Field(default_factory=dict)
    #: Creator name for requests made with the administrator token and no X-User header.
    api_admin_name: str = "admin"
    #: Respond to ``POST /hypersearch`` with the bare task name and to ``DELETE /hypersearch`` with 204, as classic
    #: WMLA servers did; a request can ask for the same with ``?classic=true``.
    api_classic_responses: bool = False
    #: Most bytes of a JSON request body (a task definition without code).
    max_json_body_bytes: int = Field(8 * 1024 * 1024, gt=0)

    @field_validator("api_users")
    @classmethod
    def _check_users(cls, users: dict[str, str]) -> dict[str, str]:
        for name, token in users.items():
            if not USER_NAME_PATTERN.match(name):
                raise ValueError(f"user name {name!r} in OPENHPO_API_USERS must be 1-64 letters, digits, '_', "
                                 "'.', '@' or '-'")
            if len(token) < 16:
                raise ValueError(f"the token of user {name!r} in OPENHPO_API_USERS is shorter than 16 characters; "
                                 "generate one with `python -c 'import secrets; print(secrets.token_urlsafe())'`")
        if len(set(users.values())) != len(users):
            raise ValueError("two users in OPENHPO_API_USERS share a token; give each user a token of their own")
        return users

    @field_validator("api_admin_name")
    @classmethod
    def _check_admin_name(cls, name: str) -> str:
        if not USER_NAME_PATTERN.match(name):
            raise ValueError(f"OPENHPO_API_ADMIN_NAME {name!r} must be 1-64 letters, digits, '_', '.', '@' or '-'")
        return name
