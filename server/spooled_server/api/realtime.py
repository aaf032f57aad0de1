"""Realtime edge (rest.md §15): SSE streams and the WebSocket, fed by the realtime hub (events/realtime.py).

Credentials come from `Authorization: Bearer`, `X-API-Key`, `?token=` or `?api_key=` (query credentials are
accepted on these routes only). Every failure before the stream starts is an ordinary contract error
response; for the WebSocket it is sent as an HTTP response instead of the upgrade (401/403/429).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, WebSocket, get, websocket
from litestar.response import Stream

from ..core import jobs as core_jobs
from ..core import validation as v
from ..core.auth import Principal
from ..core.context import Core
from ..core.errors import AccessDenied, NotFound, ServiceUnavailable, SpooledError, Unauthorized
from ..events.bus import Event, envelope
from ..events.realtime import Connection, Filter, RealtimeHub, parse_event_names

log = logging.getLogger(__name__)

KEEPALIVE_SECS = 15.0
HEALTH_SECS = 10.0
QUEUE_STATS_SECS = 5.0
JOB_POLL_SECS = 2.0
REAUTH_SECS = 30.0
SSE_MAX_SECS = 30 * 60.0
WS_PING_SECS = 30.0
HEALTH_CACHE_SECS = 5.0
TERMINAL = frozenset(core_jobs.TERMINAL)
_ENCODER = msgspec.json.Encoder()
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


# --- shared plumbing -------------------------------------------------------------------------------------


def _credential(headers: Any, query: Any) -> str | None:
    header = headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return str(value.strip())
    for value in (headers.get("x-api-key"), query.get("token"), query.get("api_key")):
        if value and value.strip():
            return str(value.strip())
    return None


async def _authenticate(core: Core, headers: Any, query: Any) -> tuple[Principal, str]:
    credential = _credential(headers, query)
    if credential is None:
        raise Unauthorized("Missing credentials")
    return await core.auth.credential(credential), credential


def _hub(app: Any) -> RealtimeHub:
    hub = getattr(app.state, "realtime", None)
    if hub is None:
        raise ServiceUnavailable("Realtime is not available")
    return hub  # type: ignore[no-any-return]


def _filter_from_query(principal: Principal, query: Any) -> Filter:
    queue = query.get("queue") or query.get("queue_name") or None
    if queue is not None and not principal.can_access(queue):
        raise AccessDenied(f"API key has no access to queue '{queue}'")
    return Filter(queue=queue, job_id=query.get("job_id") or None, worker_id=query.get("worker_id") or None,
                  events=parse_event_names(query.get("events")))


async def _system_health(app: Any, core: Core) -> dict[str, Any]:
    """Shared by every stream of this replica: at most one database ping per few seconds."""
    cached = getattr(app.state, "realtime_health", None)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return dict(cached[1])
    redis = False
    hook = core.cache_health
    if hook is not None:
        with contextlib.suppress(Exception):
            redis = bool(await hook())
    value = {"database": await core.db.ping(), "redis": redis}
    app.state.realtime_health = (now + HEALTH_CACHE_SECS, value)
    return dict(value)


async def _recheck(core: Core, conn: Connection, credential: str) -> bool:
    """Revoked keys end the stream; a key whose scope changed is applied to later events."""
    try:
        principal = await core.auth.credential(credential)
    except Unauthorized:
        conn.close("credential revoked or expired")
        return False
    except Exception:  # a database blip is not the client's fault: keep the stream
        return True
    conn.principal = principal
    for f in conn.filters:
        if f.queue is not None and not principal.can_access(f.queue):
            conn.close("queue no longer within the key's scope")
            return False
    return True


# --- SSE -------------------------------------------------------------------------------------------------


def _sse_frame(name: str, raw: bytes, *, message_format: bool, event_id: str | None = None) -> bytes:
    parts = []
    if not message_format:
        parts.append(b"event: " + name.encode() + b"\n")
    if event_id:
        parts.append(b"id: " + event_id.encode() + b"\n")
    parts.append(b"data: " + raw + b"\n\n")
    return b"".join(parts)


def _event_frames(events: list[Event], message_format: bool) -> bytes:
    return b"".join(_sse_frame(e.name, e.raw, message_format=message_format, event_id=e.id) for e in events)


def _local_frame(event_type: str, name: str, data: dict[str, Any], message_format: bool) -> bytes:
    return _sse_frame(name, envelope(event_type, data), message_format=message_format)


class _Timers:
    def __init__(self, **intervals: float) -> None:
        now = time.monotonic()
        self.intervals = intervals
        self.due = {name: now + every for name, every in intervals.items()}

    def fire(self, name: str) -> bool:
        now = time.monotonic()
        if now < self.due[name]:
            return False
        self.due[name] = now + self.intervals[name]
        return True

    def until_next(self) -> float:
        return max(0.0, min(self.due.values()) - time.monotonic())


def _sse_response(body: AsyncIterator[bytes]) -> Stream:
    return Stream(body, media_type="text/event-stream", status_code=200, headers=SSE_HEADERS)


@get("/api/v1/events", operation_id="stream_events", include_in_schema=False)
async def stream_events(request: Request[Any, Any, Any]) -> Stream:
    core: Core = request.app.state.core
    hub = _hub(request.app)
    principal, credential = await _authenticate(core, request.headers, request.query_params)
    base = _filter_from_query(principal, request.query_params)
    message_format = request.query_params.get("format") == "message"
    conn = hub.open(principal, "sse", [base])
    last_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    app = request.app

    async def body() -> AsyncIterator[bytes]:
        conn.started = True
        try:
            await hub.ready()
            if last_id:
                hub.replay(conn, last_id)
            yield b": connected\n\n"
            timers = _Timers(keepalive=KEEPALIVE_SECS, health=HEALTH_SECS, auth=REAUTH_SECS, end=SSE_MAX_SECS)
            while True:
                events = conn.drain()
                if events:
                    yield _event_frames(events, message_format)
                    continue
                if conn.closed:
                    yield _local_frame("Error", "error", {"message": conn.close_reason}, message_format)
                    return
                if timers.fire("end"):
                    return
                if timers.fire("health"):
                    health = await _system_health(app, core)
                    yield _local_frame("SystemHealth", "system.health", health, message_format)
                if timers.fire("keepalive"):
                    yield b": keep-alive\n\n"
                if timers.fire("auth"):
                    await _recheck(core, conn, credential)
                    continue
                await conn.wait(timers.until_next())
        finally:
            conn.release()

    return _sse_response(body())


@get("/api/v1/events/jobs/{job_id:str}", operation_id="stream_job_events", include_in_schema=False)
async def stream_job_events(request: Request[Any, Any, Any], job_id: str) -> Stream:
    core: Core = request.app.state.core
    hub = _hub(request.app)
    principal, credential = await _authenticate(core, request.headers, request.query_params)
    message_format = request.query_params.get("format") == "message"
    parsed = v.try_uuid(job_id)
    conn = hub.open(principal, "sse", [Filter(job_id=str(parsed) if parsed else job_id,
                                              events=frozenset({"job.status", "job.progress"}))])

    async def current(job: Any) -> dict[str, Any] | None:
        if job is None:
            return None
        try:
            return await core_jobs.get_job(core, conn.principal, job)
        except NotFound:
            return None

    def status_frame(job: dict[str, Any], old: str, new: str) -> bytes:
        data = {"job_id": job["id"], "queue_name": job["queue_name"], "old_status": old, "new_status": new}
        return _local_frame("JobStatusChange", "job.status", data, message_format)

    async def body() -> AsyncIterator[bytes]:
        conn.started = True
        try:
            await hub.ready()
            yield b": connected\n\n"
            job = await current(parsed)
            if job is None:
                yield _local_frame("Error", "error", {"message": "Job not found"}, message_format)
                return
            status = job["status"]
            yield status_frame(job, "", status)
            if status in TERMINAL:
                return
            timers = _Timers(keepalive=KEEPALIVE_SECS, poll=JOB_POLL_SECS, auth=REAUTH_SECS, end=SSE_MAX_SECS)
            last_push = time.monotonic()
            while True:
                out = []
                for event in conn.drain():
                    if event.name == "job.status":
                        new = _new_status(event)
                        if new is None or new == status:
                            continue  # already reported (by the initial read or the safety-net poll)
                        status = new
                        last_push = time.monotonic()
                    out.append(_sse_frame(event.name, event.raw, message_format=message_format,
                                          event_id=event.id))
                if out:
                    yield b"".join(out)
                    if status in TERMINAL:
                        return
                    continue
                if conn.closed:
                    yield _local_frame("Error", "error", {"message": conn.close_reason}, message_format)
                    return
                if timers.fire("end"):
                    return
                if timers.fire("poll") and time.monotonic() - last_push >= JOB_POLL_SECS:
                    # Safety net for a lost notification: the row is the truth.
                    fresh = await current(parsed)
                    if fresh is None:
                        yield _local_frame("Error", "error", {"message": "Job not found"}, message_format)
                        return
                    if fresh["status"] != status:
                        yield status_frame(fresh, status, fresh["status"])
                        status = fresh["status"]
                        if status in TERMINAL:
                            return
                if timers.fire("keepalive"):
                    yield b": keep-alive\n\n"
                if timers.fire("auth"):
                    await _recheck(core, conn, credential)
                    continue
                await conn.wait(timers.until_next())
        finally:
            conn.release()

    return _sse_response(body())


def _new_status(event: Event) -> str | None:
    data = event.data
    if data is None:
        try:
            data = msgspec.json.decode(event.raw).get("data") or {}
        except msgspec.DecodeError:
            return None
    value = data.get("new_status")
    return str(value) if value is not None else None


@get("/api/v1/events/queues/{name:str}", operation_id="stream_queue_events", include_in_schema=False)
async def stream_queue_events(request: Request[Any, Any, Any], name: str) -> Stream:
    core: Core = request.app.state.core
    hub = _hub(request.app)
    principal, credential = await _authenticate(core, request.headers, request.query_params)
    v.queue_name(name, "name", max_len=255)
    principal.require_queue(name)
    message_format = request.query_params.get("format") == "message"
    # Nothing is pushed on this stream but the periodic stats: a filter that matches no event.
    conn = hub.open(principal, "sse", [Filter(queue=name, events=frozenset())])

    async def stats_frame() -> bytes:
        counts = await core_jobs.job_stats(core, conn.principal, name)
        data = {"queue_name": name, "pending": counts["pending"] + counts["scheduled"],
                "processing": counts["processing"], "completed": counts["completed"],
                "failed": counts["failed"] + counts["deadletter"]}
        return _local_frame("QueueStats", "queue.stats", data, message_format)

    async def body() -> AsyncIterator[bytes]:
        conn.started = True
        try:
            yield b": connected\n\n"
            yield await stats_frame()
            timers = _Timers(keepalive=KEEPALIVE_SECS, stats=QUEUE_STATS_SECS, auth=REAUTH_SECS,
                             end=SSE_MAX_SECS)
            while True:
                if conn.closed:
                    yield _local_frame("Error", "error", {"message": conn.close_reason}, message_format)
                    return
                if timers.fire("end"):
                    return
                if timers.fire("stats"):
                    yield await stats_frame()
                if timers.fire("keepalive"):
                    yield b": keep-alive\n\n"
                if timers.fire("auth"):
                    await _recheck(core, conn, credential)
                    continue
                await conn.wait(timers.until_next())
        finally:
            conn.release()

    return _sse_response(body())


# --- WebSocket -------------------------------------------------------------------------------------------


class _WsSession:
    """One WebSocket: the reader applies commands, the writer sends events, pings and replies."""

    def __init__(self, socket: WebSocket[Any, Any, Any], core: Core, conn: Connection,
                 credential: str) -> None:
        self.socket = socket
        self.core = core
        self.conn = conn
        self.credential = credential
        self.explicit = False
        self.replies: list[bytes] = []

    def reply(self, raw: bytes) -> None:
        self.replies.append(raw)
        self.conn.wake.set()

    def error_event(self, message: str) -> None:
        self.reply(envelope("Error", {"message": message}))

    def _subscribe(self, f: Filter) -> None:
        if not self.explicit:
            self.conn.filters = [f]  # the first explicit subscribe replaces the implicit filter
            self.explicit = True
        elif f not in self.conn.filters:
            self.conn.filters = [*self.conn.filters, f]

    def _unsubscribe(self, f: Filter) -> None:
        self.conn.filters = [existing for existing in self.conn.filters if existing != f]
        self.explicit = True

    def _allowed(self, f: Filter) -> bool:
        return f.queue is None or self.conn.principal.can_access(f.queue)

    def handle(self, text: str) -> None:
        try:
            cmd = json.loads(text)
        except ValueError:
            self.error_event("Invalid JSON command")
            return
        if not isinstance(cmd, dict):
            self.error_event("A command must be a JSON object")
            return
        if "cmd" in cmd:
            self._handle_cmd(cmd)
        elif "type" in cmd:
            self._handle_typed(cmd)
        else:
            self.error_event("Unknown command")

    def _handle_cmd(self, cmd: dict[str, Any]) -> None:
        name = str(cmd.get("cmd", "")).lower()
        if name == "ping":
            self.reply(envelope("Ping"))
            return
        if name not in ("subscribe", "unsubscribe"):
            self.error_event(f"Unknown command: {cmd.get('cmd')}")
            return
        queue, job_id = cmd.get("queue"), cmd.get("job_id")
        if not all(value is None or isinstance(value, str) for value in (queue, job_id)):
            self.error_event("queue and job_id must be strings")
            return
        f = Filter(queue=queue or None, job_id=job_id or None)
        if not self._allowed(f):
            self.error_event(f"API key has no access to queue '{queue}'")
            return
        if name == "subscribe":
            self._subscribe(f)
        else:
            self._unsubscribe(f)

    def _handle_typed(self, cmd: dict[str, Any]) -> None:
        kind = str(cmd.get("type", "")).lower()
        request_id = cmd.get("request_id")

        def error(message: str) -> None:
            self.reply(_ENCODER.encode({"type": "error", "request_id": request_id, "error": message}))

        if kind == "ping":
            self.reply(envelope("Ping"))
            return
        if kind not in ("subscribe", "unsubscribe"):
            error(f"Unknown command type: {cmd.get('type')}")
            return
        raw_filter = cmd.get("filter", {})
        if raw_filter is None:
            raw_filter = {}
        if not isinstance(raw_filter, dict):
            error("filter must be an object")
            return
        fields = {}
        for key in ("queue_name", "queue", "job_id", "worker_id"):
            value = raw_filter.get(key)
            if value is not None and not isinstance(value, str):
                error(f"filter.{key} must be a string")
                return
            fields[key] = value or None
        events = raw_filter.get("events")
        if events is not None and not (isinstance(events, list) and all(isinstance(e, str) for e in events)):
            error("filter.events must be a list of event names")
            return
        f = Filter(queue=fields["queue_name"] or fields["queue"], job_id=fields["job_id"],
                   worker_id=fields["worker_id"], events=parse_event_names(events))
        if not self._allowed(f):
            error(f"API key has no access to queue '{f.queue}'")
            return
        if kind == "subscribe":
            self._subscribe(f)
            self.reply(_ENCODER.encode({"type": "subscribed", "request_id": request_id}))
        else:
            self._unsubscribe(f)
            self.reply(_ENCODER.encode({"type": "unsubscribed", "request_id": request_id}))

    async def read(self) -> None:
        while True:
            message: dict[str, Any] = dict(await self.socket.receive())
            kind = message["type"]
            if kind == "websocket.disconnect":
                break
            if kind != "websocket.receive":
                continue
            text: str | None = message.get("text")
            if text is None:
                data: bytes = message.get("bytes") or b""
                try:
                    text = data.decode()
                except UnicodeDecodeError:
                    self.error_event("Commands must be UTF-8 JSON text")
                    continue
            self.handle(text)
        self.conn.close("client disconnected")

    async def send(self, raw: bytes) -> None:
        await self.socket.send({"type": "websocket.send", "text": raw.decode(), "bytes": None})

    async def write(self) -> tuple[int, str] | None:
        """Returns the close code and reason when the server ends the connection."""
        await self.send(envelope("Ping"))
        timers = _Timers(ping=WS_PING_SECS, auth=REAUTH_SECS)
        conn = self.conn
        while True:
            if self.replies:
                replies, self.replies = self.replies, []
                for raw in replies:
                    await self.send(raw)
            for event in conn.drain():
                await self.send(event.raw)
            if conn.closed:
                if conn.close_reason == "client disconnected":
                    return None
                code = 1013 if conn.overflowed else 1008
                return code, conn.close_reason or ""
            if timers.fire("ping"):
                await self.send(envelope("Ping"))
            if timers.fire("auth"):
                await _recheck(self.core, conn, self.credential)
                continue
            if not self.replies:
                await conn.wait(timers.until_next())


async def _deny(socket: WebSocket[Any, Any, Any], exc: SpooledError) -> None:
    """Refuse the upgrade with the contract's HTTP error (ASGI websocket denial response)."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message, "details": exc.details}
    body.update(exc.extra)
    payload = _ENCODER.encode(body)
    if "websocket.http.response" in (socket.scope.get("extensions") or {}):
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        retry_after = exc.extra.get("retry_after_secs")
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await socket.send({"type": "websocket.http.response.start", "status": exc.status, "headers": headers})
        await socket.send({"type": "websocket.http.response.body", "body": payload, "more_body": False})
    else:  # a server without the extension: close before accepting (the client sees a failed upgrade)
        await socket.send({"type": "websocket.close", "code": 1008, "reason": exc.code})


@websocket("/api/v1/ws", name="open_websocket")
async def open_websocket(socket: WebSocket[Any, Any, Any]) -> None:
    core: Core = socket.app.state.core
    message = await socket.receive()
    if message["type"] != "websocket.connect":
        return
    try:
        hub = _hub(socket.app)
        principal, credential = await _authenticate(core, socket.headers, socket.query_params)
        base = _filter_from_query(principal, socket.query_params)
        conn = hub.open(principal, "ws", [base])
    except SpooledError as exc:
        await _deny(socket, exc)
        return
    conn.started = True
    session = _WsSession(socket, core, conn, credential)
    reader: asyncio.Task[None] | None = None
    try:
        await hub.ready()
        await socket.send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        reader = asyncio.create_task(session.read(), name="ws-reader")
        closing = await session.write()
        if closing is not None:
            with contextlib.suppress(Exception):
                await socket.send({"type": "websocket.close", "code": closing[0], "reason": closing[1][:120]})
    except Exception as exc:  # the client went away mid-send: nothing to tell anyone
        if not _is_disconnect(exc):
            log.warning("websocket session failed", exc_info=True)
    finally:
        conn.release()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def _is_disconnect(exc: BaseException) -> bool:
    name = type(exc).__name__
    return "Disconnect" in name or "Closed" in name or isinstance(exc, (OSError, RuntimeError))


ROUTES = [stream_events, stream_job_events, stream_queue_events, open_websocket]
