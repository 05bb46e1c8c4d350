"""The health route, the only one that needs no token (container health checks call it)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from openhpo.api.deps import StoreDep
from openhpo.api.schemas import Health

router = APIRouter(tags=["health"])


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openhpo")
    except PackageNotFoundError:
        return "unknown"


@router.get("/health", summary="Check the server and its Redis", response_model=Health,
            responses={503: {"model": Health, "description": "Redis is unreachable"}})
def health(store: StoreDep) -> JSONResponse:
    try:
        store.redis.ping()
    except Exception as exc:  # any failure to reach Redis makes the service unavailable, whatever its kind
        return JSONResponse(Health(status="unavailable", redis=f"{type(exc).__name__}: {exc}",
                                   version=package_version()).model_dump(), status_code=503)
    return JSONResponse(Health(status="ok", redis="ok", version=package_version()).model_dump())
