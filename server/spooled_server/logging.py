"""Structured logs: JSON lines with the request id bound per request (structlog over the stdlib).

Every line logged while a request is handled also names the organization (once authenticated) and the job
of a `/jobs/{job_id}...` route, read from the request scope that api/envelope.py publishes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

from .config import Settings

REQUEST_SCOPE: ContextVar[dict[str, Any] | None] = ContextVar("spooled_request_scope", default=None)


def add_request_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    scope = REQUEST_SCOPE.get()
    if scope is None:
        return event_dict
    state = scope.get("state") or {}
    request_id = state.get("request_id")
    if request_id is not None:
        event_dict.setdefault("request_id", request_id)
    principal = state.get("principal")
    org_id = getattr(principal, "org_id", None)
    if org_id is not None:
        event_dict.setdefault("org_id", str(org_id))
    job_id = (scope.get("path_params") or {}).get("job_id")
    if job_id is not None:
        event_dict.setdefault("job_id", str(job_id))
    return event_dict


def configure_logging(settings: Settings) -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("asyncio", "_granian", "granian.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # granian gives its own loggers private plain-text handlers; in this (worker) process they write JSON too.
    for name in ("_granian", "granian.access", "litestar"):
        own = logging.getLogger(name)
        own.handlers[:] = []
        own.propagate = True


def json_formatter() -> logging.Formatter:
    """A stdlib formatter writing the same JSON lines (for dictConfig users such as granian)."""
    shared: list[structlog.typing.Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
    )


def granian_log_config() -> dict[str, Any]:
    """granian's `log_dictconfig`: its main-process lines ("Starting granian", "Listening at") as JSON too.

    Usage: `Server(..., log_dictconfig=granian_log_config())` in the CLI.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "spooled_server.logging.json_formatter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                                 "stream": "ext://sys.stderr"}},
        "loggers": {
            "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "granian.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
