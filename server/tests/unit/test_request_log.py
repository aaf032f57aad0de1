"""Log lines written while a request runs carry its request id (and nothing leaks into the next request)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import structlog

from spooled_server.api.envelope import RequestEnvelope
from spooled_server.config import Settings
from spooled_server.logging import configure_logging


def _scope(request_id: str | None) -> dict[str, Any]:
    headers = [(b"host", b"x")]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode()))
    return {"type": "http", "method": "GET", "path": "/api/v1/thing", "headers": headers, "state": {}}


def test_log_lines_carry_the_request_id() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        _check_request_ids()
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _check_request_ids() -> None:
    configure_logging(Settings.from_env({"LOG_LEVEL": "info", "SPOOLED_LOG_JSON": "true"}))
    out = io.StringIO()
    logging.getLogger().handlers[0].setStream(out)  # type: ignore[attr-defined]
    logger = structlog.stdlib.get_logger("spooled_server.test")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        logger.info("handling", step=scope["path"])
        logging.getLogger("spooled_server.plain").info("plain stdlib line")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def call(request_id: str | None) -> list[tuple[bytes, bytes]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await RequestEnvelope(app)(_scope(request_id), None, send)
        return list(sent[0]["headers"])

    async def main() -> list[tuple[bytes, bytes]]:
        await call("req-one")
        minted = await call(None)
        logger.info("outside any request")
        return minted

    minted_headers = asyncio.run(main())
    minted = dict(minted_headers)[b"x-request-id"].decode()
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    by_event = [(line["event"], line.get("request_id")) for line in lines]
    assert by_event == [
        ("handling", "req-one"),
        ("plain stdlib line", "req-one"),
        ("handling", minted),
        ("plain stdlib line", minted),
        ("outside any request", None),
    ]
