"""Logging set-up: structlog, JSON lines for services and readable lines on a terminal.

Every service binds ``task`` and ``trial`` (and ``worker`` on workers) to its loggers, so one task's lines can be
followed across processes.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(fmt: str = "json", level: str = "INFO", stream=None) -> None:
    """Configure structlog and the standard library's root logger (Celery logs through it).

    Args:
        fmt: ``"json"`` for one JSON object per line, ``"console"`` for readable lines.
        level: the minimum level, e.g. ``"INFO"``.
        stream: where lines go; standard error by default.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric_level, stream=stream or sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
