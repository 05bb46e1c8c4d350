"""openhpo: distributed hyperparameter optimization for PyTorch training scripts, compatible with WMLA HPO.

``openhpo.Client`` talks to a running API server (see :mod:`openhpo.client`). The names below are imported on first
use, so ``import openhpo`` loads neither httpx nor the service packages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openhpo.client import Client, OpenHPOConnectionError, OpenHPOHTTPError

__all__ = ["Client", "OpenHPOConnectionError", "OpenHPOHTTPError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from openhpo import client

        return getattr(client, name)
    raise AttributeError(f"module 'openhpo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
