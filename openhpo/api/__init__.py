"""The REST API: WMLA's HPO routes under ``/platform/rest/deeplearning/v1``, plus ``/health``.

Build the app with :func:`create_app` and serve it with uvicorn (``openhpo api`` does both). Every route but
``/health`` needs a token; the OpenAPI schema (``/openapi.json``) and its pages (``/docs``, ``/redoc``) are public
because they contain no data.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from broker.settings import Settings
from broker.store import RedisStore
from hpo_core.errors import OpenHPOError
from openhpo.api import algorithms, code, execs, health, hypersearch
from openhpo.api.deps import get_caller
from openhpo.api.errors import install_handlers
from openhpo.api.hypersearch import API_PREFIX
from openhpo.api.schemas import CodeForm, SubmitForm, TaskDefinition
from openhpo.api.settings import ApiSettings

__all__ = ["API_PREFIX", "ApiSettings", "ConfigurationError", "create_app"]

log = structlog.get_logger("openhpo.api")

#: Shortest accepted administrator token.
MIN_TOKEN_LENGTH = 16
#: Words of the placeholders in docs/env.example; a token that contains one was never replaced.
PLACEHOLDER_WORDS = ("replace-me", "change-me")


class ConfigurationError(OpenHPOError):
    """The API cannot start with the settings given."""

    code = "configuration_error"


def _api_settings(settings: Settings | None) -> ApiSettings:
    if settings is None:
        return ApiSettings()
    if isinstance(settings, ApiSettings):
        return settings
    return ApiSettings(**settings.model_dump())


def create_app(settings: Settings | None = None, *, store: RedisStore | None = None,
               insecure_no_auth: bool = False) -> FastAPI:
    """Build the API application.

    Args:
        settings: shared or API settings; read from ``OPENHPO_*`` variables when ``None``.
        store: the Redis store to use; one is opened from ``settings.redis_url`` when ``None``.
        insecure_no_auth: accept requests without a token, every caller acting as administrator. For local
            testing only.

    Raises:
        ConfigurationError: no token is configured and ``insecure_no_auth`` is not set, or the token is too short.
    """
    api_settings = _api_settings(settings)
    if not insecure_no_auth:
        if not api_settings.api_token and not api_settings.api_users:
            raise ConfigurationError("no API token configured: set OPENHPO_API_TOKEN (generate one with `python -c "
                                     "'import secrets; print(secrets.token_urlsafe())'`), or pass --insecure-no-auth "
                                     "to accept every request on a machine only you use")
        if api_settings.api_token and any(word in api_settings.api_token.lower() for word in PLACEHOLDER_WORDS):
            raise ConfigurationError("OPENHPO_API_TOKEN is still the example's placeholder; replace it with a random "
                                     "token, e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`")
        if api_settings.api_token and len(api_settings.api_token) < MIN_TOKEN_LENGTH:
            raise ConfigurationError(f"OPENHPO_API_TOKEN is {len(api_settings.api_token)} characters long; use at "
                                     f"least {MIN_TOKEN_LENGTH} random characters")
    else:
        log.warning("API started without authentication (--insecure-no-auth): anyone who reaches the port can run "
                    "commands through submitted tasks")

    app = FastAPI(
        title="openhpo",
        version=health.package_version(),
        description="Distributed hyperparameter optimization for PyTorch training scripts, with the REST routes "
                    "of IBM WMLA's HPO service. Authenticate with `Authorization: Bearer <token>`, "
                    "`X-Auth-Token: <token>` or HTTP Basic with the token as the password.",
    )
    app.state.settings = api_settings
    app.state.store = store or RedisStore.from_url(api_settings.redis_url, api_settings.key_prefix)
    app.state.insecure_no_auth = insecure_no_auth
    install_handlers(app)

    authenticated = [Depends(get_caller)]
    app.include_router(health.router)
    # The algorithm routes come first: /hypersearch/algorithm would otherwise match /hypersearch/{name}.
    app.include_router(algorithms.router, prefix=API_PREFIX, dependencies=authenticated)
    app.include_router(hypersearch.router, prefix=API_PREFIX, dependencies=authenticated)
    app.include_router(execs.router, prefix=API_PREFIX, dependencies=authenticated)
    app.include_router(code.router, prefix=API_PREFIX, dependencies=authenticated)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            # Routes that parse their body themselves refer to these models by name in openapi_extra.
            for model in (TaskDefinition, SubmitForm, CodeForm):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
