"""Realtime events over Server-Sent Events or WebSocket, with automatic reconnects.

    realtime = client.realtime(type="sse")          # or "websocket"
    realtime.on("job.created", lambda event: print(event.data))
    realtime.connect()
    realtime.subscribe(queue_name="orders")

Handlers receive a :class:`RealtimeEvent` (dotted ``name`` such as ``job.status``, the envelope's
PascalCase ``type``, ``data`` and ``timestamp``). ``on("*")`` sees every event. Connection events:
``connected``, ``disconnected`` (with the error, if any) and ``error``.

Subscriptions: the first ``subscribe`` replaces the initial everything-in-scope view, later ones add
to it, ``unsubscribe`` removes one. Over WebSocket they are commands on the one connection; over SSE each
subscription is its own stream (SSE filters live in the URL). Either way they survive reconnects, and a
reconnecting SSE stream sends ``Last-Event-ID`` so the server can replay what was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload

import httpx
import websockets
import websockets.asyncio.client
import websockets.sync.client

from . import _constants as c
from ._transport import ClientConfig
from .errors import AuthenticationError, AuthorizationError, SpooledError, error_from_response

__all__ = ["AsyncRealtimeClient", "RealtimeClient", "RealtimeEvent", "Subscription"]

#: Envelope ``type`` -> dotted event name (semantics.md §16).
TYPE_NAMES = {
    "JobStatusChange": "job.status",
    "JobCreated": "job.created",
    "JobCompleted": "job.completed",
    "JobFailed": "job.failed",
    "JobProgress": "job.progress",
    "QueueStats": "queue.stats",
    "WorkerHeartbeat": "worker.heartbeat",
    "WorkerRegistered": "worker.registered",
    "WorkerDeregistered": "worker.deregistered",
    "SystemHealth": "system.health",
    "Ping": "ping",
    "Error": "error",
}
ALIASES = {"job.status_changed": "job.status"}
CONNECTION_EVENTS = ("connected", "disconnected", "error")

Kind = Literal["sse", "websocket"]
H = TypeVar("H", bound=Callable[..., Any])


@dataclass(frozen=True)
class RealtimeEvent:
    name: str
    type: str
    data: Mapping[str, Any]
    timestamp: str | None = None
    id: str | None = None

    @classmethod
    def from_envelope(
        cls, envelope: Mapping[str, Any], sse_name: str | None = None, event_id: str | None = None
    ) -> RealtimeEvent:
        kind = str(envelope.get("type") or "")
        name = sse_name or TYPE_NAMES.get(kind) or kind
        data = envelope.get("data")
        return cls(
            name=name,
            type=kind,
            data=data if isinstance(data, Mapping) else {},
            timestamp=envelope.get("timestamp"),
            id=event_id,
        )


@dataclass(frozen=True)
class Subscription:
    queue_name: str | None = None
    job_id: str | None = None
    worker_id: str | None = None
    events: tuple[str, ...] | None = None

    def query(self) -> dict[str, str]:
        params = {
            "queue": self.queue_name,
            "job_id": self.job_id,
            "worker_id": self.worker_id,
            "events": ",".join(self.events) if self.events else None,
        }
        return {k: v for k, v in params.items() if v}

    def ws_filter(self) -> dict[str, Any]:
        f: dict[str, Any] = {
            "queue_name": self.queue_name,
            "job_id": self.job_id,
            "worker_id": self.worker_id,
            "events": list(self.events) if self.events else None,
        }
        return {k: v for k, v in f.items() if v}


def _subscription(
    queue_name: str | None,
    job_id: str | None,
    worker_id: str | None,
    events: list[str] | tuple[str, ...] | None,
) -> Subscription:
    return Subscription(queue_name, job_id, worker_id, tuple(events) if events else None)


@dataclass
class _SseParser:
    """Incremental ``text/event-stream`` parser (one instance per connection)."""

    event: str | None = None
    data: list[str] = field(default_factory=list)
    last_id: str | None = None

    def feed(self, line: str) -> RealtimeEvent | None:
        if line == "":
            if not self.data:
                self.event = None
                return None
            raw, name = "\n".join(self.data), self.event
            self.data, self.event = [], None
            try:
                envelope = json.loads(raw)
            except ValueError:
                return None
            return RealtimeEvent.from_envelope(
                envelope if isinstance(envelope, dict) else {}, name, self.last_id
            )
        if line.startswith(":"):
            return None
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            self.event = value
        elif key == "data":
            self.data.append(value)
        elif key == "id":
            self.last_id = value
        return None


class _Backoff:
    def __init__(self) -> None:
        self.delay = c.REALTIME_INITIAL_BACKOFF

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, c.REALTIME_MAX_BACKOFF)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.delay = c.REALTIME_INITIAL_BACKOFF


def _ws_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://") :] + "/api/v1/ws"
    return "ws://" + base_url.removeprefix("http://") + "/api/v1/ws"


def _fatal(error: BaseException) -> bool:
    """Errors that a reconnect cannot fix."""
    return isinstance(error, AuthenticationError | AuthorizationError)


class _Handlers:
    def __init__(self) -> None:
        self.by_event: dict[str, list[Callable[..., Any]]] = {}

    def add(self, event: str, fn: Callable[..., Any]) -> None:
        self.by_event.setdefault(ALIASES.get(event, event), []).append(fn)

    def remove(self, event: str, fn: Callable[..., Any]) -> None:
        fns = self.by_event.get(ALIASES.get(event, event), [])
        if fn in fns:
            fns.remove(fn)

    def for_event(self, name: str) -> list[Callable[..., Any]]:
        wildcard = self.by_event.get("*", []) if name not in CONNECTION_EVENTS else []
        return [*self.by_event.get(name, []), *wildcard]


# --- blocking client ---------------------------------------------------------------------------------------


class RealtimeClient:
    """Blocking realtime client: reading happens on background threads; handlers run there too."""

    def __init__(
        self,
        config: ClientConfig,
        transport: Kind = "sse",
        *,
        reconnect: bool = True,
        connect_timeout: float = 10.0,
        **initial: Any,
    ) -> None:
        if transport not in ("sse", "websocket"):
            raise ValueError("type must be 'sse' or 'websocket'")
        self.config = config
        self.kind: Kind = transport
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self._handlers = _Handlers()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        first = _subscription(
            initial.get("queue_name"), initial.get("job_id"), initial.get("worker_id"), initial.get("events")
        )
        self._subs: list[Subscription] = [first]
        self._implicit = not first.query()
        self._streams: dict[Subscription, _SyncSseStream] = {}
        self._ws: _SyncWebSocket | None = None

    @overload
    def on(self, event: str, handler: H) -> H: ...
    @overload
    def on(self, event: str, handler: None = None) -> Callable[[H], H]: ...

    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Call ``handler(event)`` for each event named ``event`` (``"*"``: all). Usable as a decorator."""

        def register(fn: H) -> H:
            self._handlers.add(event, fn)
            return fn

        return register(handler) if handler is not None else register

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        self._handlers.remove(event, handler)

    def _dispatch(self, name: str, *args: Any) -> None:
        for fn in self._handlers.for_event(name):
            try:
                fn(*args)
            except Exception as exc:
                if name != "error":
                    self._dispatch("error", exc)

    def connect(self) -> RealtimeClient:
        """Open the connection(s); returns once connected, or raises what stopped the first attempt."""
        self._closed.clear()
        if self.kind == "websocket":
            self._ws = _SyncWebSocket(self)
            self._ws.start(self.connect_timeout)
        else:
            for sub in list(self._subs):
                self._open_sse(sub)
        return self

    def _open_sse(self, sub: Subscription) -> None:
        stream = _SyncSseStream(self, sub)
        self._streams[sub] = stream
        stream.start(self.connect_timeout)

    def subscribe(
        self,
        queue_name: str | None = None,
        *,
        job_id: str | None = None,
        worker_id: str | None = None,
        events: list[str] | None = None,
    ) -> Subscription:
        sub = _subscription(queue_name, job_id, worker_id, events)
        with self._lock:
            replace = self._implicit
            old = list(self._subs) if replace else []
            self._subs = [sub] if replace else [*self._subs, sub]
            self._implicit = False
        if self.kind == "websocket":
            if self._ws is not None:
                self._ws.send_subscribe(sub)
        elif self._streams:  # connected: open the new stream, then drop the ones it replaces
            self._open_sse(sub)
            for gone in old:
                stream = self._streams.pop(gone, None)
                if stream is not None:
                    stream.stop()
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subs:
                self._subs.remove(subscription)
        if self.kind == "websocket":
            if self._ws is not None:
                self._ws.send(
                    {
                        "type": "unsubscribe",
                        "request_id": uuid.uuid4().hex,
                        "filter": subscription.ws_filter(),
                    }
                )
        else:
            stream = self._streams.pop(subscription, None)
            if stream is not None:
                stream.stop()

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs)

    def close(self) -> None:
        self._closed.set()
        for stream in list(self._streams.values()):
            stream.stop()
        self._streams.clear()
        if self._ws is not None:
            self._ws.stop()
            self._ws = None

    disconnect = close

    def __enter__(self) -> RealtimeClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SyncSseStream:
    def __init__(self, owner: RealtimeClient, sub: Subscription) -> None:
        self.owner = owner
        self.sub = sub
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._first_error: BaseException | None = None
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._run, name="spooled-sse", daemon=True)
        self.last_id: str | None = None

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise SpooledError("realtime connect timed out", code="TIMEOUT")
        if self._first_error is not None:
            error, self._first_error = self._first_error, None
            raise error

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()

    def _run(self) -> None:
        cfg = self.owner.config
        headers = {"Accept": "text/event-stream", **cfg.default_headers()}
        backoff = _Backoff()
        # The server sends a keep-alive every 15 s: a read idle for 45 s means a dead connection.
        timeout = httpx.Timeout(cfg.connect_timeout, read=45.0)
        with httpx.Client(base_url=cfg.base_url, timeout=timeout) as http:
            while not self._stop.is_set():
                error: BaseException | None = None
                try:
                    request_headers = dict(headers)
                    if self.last_id:
                        request_headers["Last-Event-ID"] = self.last_id
                    with http.stream(
                        "GET", "/api/v1/events", params=self.sub.query(), headers=request_headers
                    ) as response:
                        self._response = response
                        if response.status_code >= 400:
                            response.read()
                            raise error_from_response(
                                response.status_code, response.content, response.headers
                            )
                        backoff.reset()
                        self._ready.set()
                        self.owner._dispatch("connected")
                        parser = _SseParser()
                        for line in response.iter_lines():
                            event = parser.feed(line)
                            if parser.last_id:
                                self.last_id = parser.last_id
                            if event is not None:
                                self.owner._dispatch(event.name, event)
                except Exception as exc:  # network drop, server restart, HTTP error
                    error = exc
                finally:
                    self._response = None
                if self._stop.is_set():
                    return
                if not self._ready.is_set():
                    self._first_error = error or SpooledError("stream closed", code="STREAM_CLOSED")
                    self._ready.set()
                    return
                self.owner._dispatch("disconnected", error)
                if error is not None and _fatal(error):
                    self.owner._dispatch("error", error)
                    return
                if not self.owner.reconnect:
                    return
                self._stop.wait(backoff.next())


class _SyncWebSocket:
    def __init__(self, owner: RealtimeClient) -> None:
        self.owner = owner
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._first_error: BaseException | None = None
        self._conn: websockets.sync.client.ClientConnection | None = None
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="spooled-ws", daemon=True)

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise SpooledError("realtime connect timed out", code="TIMEOUT")
        if self._first_error is not None:
            error, self._first_error = self._first_error, None
            raise error

    def send(self, message: Mapping[str, Any]) -> None:
        conn = self._conn
        if conn is None:
            return  # sent again from the subscription list on reconnect
        with self._send_lock, contextlib.suppress(websockets.ConnectionClosed):
            conn.send(json.dumps(message))

    def send_subscribe(self, sub: Subscription) -> None:
        self.send({"type": "subscribe", "request_id": uuid.uuid4().hex, "filter": sub.ws_filter()})

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _run(self) -> None:
        cfg = self.owner.config
        backoff = _Backoff()
        while not self._stop.is_set():
            error: BaseException | None = None
            try:
                with websockets.sync.client.connect(
                    _ws_url(cfg.base_url) + _ws_query(self.owner),
                    additional_headers=cfg.default_headers(),
                    open_timeout=cfg.connect_timeout,
                    user_agent_header=None,
                ) as conn:
                    self._conn = conn
                    if not self.owner._implicit:
                        for sub in self.owner.subscriptions():
                            self.send_subscribe(sub)
                    backoff.reset()
                    self._ready.set()
                    self.owner._dispatch("connected")
                    for message in conn:
                        _dispatch_ws_message(self.owner._dispatch, message)
            except websockets.InvalidStatus as exc:
                error = _ws_status_error(exc)
            except Exception as exc:
                error = exc
            finally:
                self._conn = None
            if self._stop.is_set():
                return
            if not self._ready.is_set():
                self._first_error = error or SpooledError("connection closed", code="STREAM_CLOSED")
                self._ready.set()
                return
            self.owner._dispatch("disconnected", error)
            if error is not None and _fatal(error):
                self.owner._dispatch("error", error)
                return
            if not self.owner.reconnect:
                return
            self._stop.wait(backoff.next())


def _ws_query(owner: RealtimeClient | AsyncRealtimeClient) -> str:
    subs = owner.subscriptions()
    if len(subs) == 1 and owner._implicit and subs[0].query():
        return "?" + str(httpx.QueryParams(subs[0].query()))
    return ""


def _ws_status_error(exc: websockets.InvalidStatus) -> SpooledError:
    response = exc.response
    return error_from_response(response.status_code, bytes(response.body or b""), dict(response.headers))


def _dispatch_ws_message(dispatch: Callable[..., Any], message: str | bytes) -> Any:
    try:
        envelope = json.loads(message)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or envelope.get("type") in ("subscribed", "unsubscribed"):
        return None
    if envelope.get("type") == "error" and "request_id" in envelope:
        return dispatch("error", SpooledError(str(envelope.get("error")), code="REALTIME_ERROR"))
    event = RealtimeEvent.from_envelope(envelope)
    return dispatch(event.name, event)


# --- asyncio client ----------------------------------------------------------------------------------------


class AsyncRealtimeClient:
    """The asyncio twin of :class:`RealtimeClient`: ``await connect()``; handlers may be coroutines."""

    def __init__(
        self,
        config: ClientConfig,
        transport: Kind = "sse",
        *,
        reconnect: bool = True,
        connect_timeout: float = 10.0,
        **initial: Any,
    ) -> None:
        if transport not in ("sse", "websocket"):
            raise ValueError("type must be 'sse' or 'websocket'")
        self.config = config
        self.kind: Kind = transport
        self.reconnect = reconnect
        self.connect_timeout = connect_timeout
        self._handlers = _Handlers()
        first = _subscription(
            initial.get("queue_name"), initial.get("job_id"), initial.get("worker_id"), initial.get("events")
        )
        self._subs: list[Subscription] = [first]
        self._implicit = not first.query()
        self._tasks: dict[Subscription | None, asyncio.Task[None]] = {}
        self._ws: websockets.asyncio.client.ClientConnection | None = None
        self._connected = False

    @overload
    def on(self, event: str, handler: H) -> H: ...
    @overload
    def on(self, event: str, handler: None = None) -> Callable[[H], H]: ...

    def on(self, event: str, handler: H | None = None) -> H | Callable[[H], H]:
        def register(fn: H) -> H:
            self._handlers.add(event, fn)
            return fn

        return register(handler) if handler is not None else register

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        self._handlers.remove(event, handler)

    async def _dispatch(self, name: str, *args: Any) -> None:
        for fn in self._handlers.for_event(name):
            try:
                outcome = fn(*args)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                if name != "error":
                    await self._dispatch("error", exc)

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    async def connect(self) -> AsyncRealtimeClient:
        self._connected = True
        if self.kind == "websocket":
            await self._start(None)
        else:
            for sub in list(self._subs):
                await self._start(sub)
        return self

    async def _start(self, sub: Subscription | None) -> None:
        ready: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        runner = self._run_ws(ready) if sub is None else self._run_sse(sub, ready)
        task = asyncio.create_task(runner)
        self._tasks[sub] = task
        try:
            error = await asyncio.wait_for(asyncio.shield(ready), self.connect_timeout)
        except TimeoutError:
            task.cancel()
            raise SpooledError("realtime connect timed out", code="TIMEOUT") from None
        if error is not None:
            raise error

    async def subscribe(
        self,
        queue_name: str | None = None,
        *,
        job_id: str | None = None,
        worker_id: str | None = None,
        events: list[str] | None = None,
    ) -> Subscription:
        sub = _subscription(queue_name, job_id, worker_id, events)
        replace = self._implicit
        old = list(self._subs) if replace else []
        self._subs = [sub] if replace else [*self._subs, sub]
        self._implicit = False
        if self.kind == "websocket":
            await self._ws_send(
                {"type": "subscribe", "request_id": uuid.uuid4().hex, "filter": sub.ws_filter()}
            )
        elif self._connected:
            await self._start(sub)
            for gone in old:
                task = self._tasks.pop(gone, None)
                if task is not None:
                    task.cancel()
        return sub

    async def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subs:
            self._subs.remove(subscription)
        if self.kind == "websocket":
            await self._ws_send(
                {"type": "unsubscribe", "request_id": uuid.uuid4().hex, "filter": subscription.ws_filter()}
            )
        else:
            task = self._tasks.pop(subscription, None)
            if task is not None:
                task.cancel()

    async def _ws_send(self, message: Mapping[str, Any]) -> None:
        if self._ws is not None:
            with contextlib.suppress(websockets.ConnectionClosed):
                await self._ws.send(json.dumps(message))

    async def close(self) -> None:
        self._connected = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    disconnect = close

    async def __aenter__(self) -> AsyncRealtimeClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _after_drop(
        self, ready: asyncio.Future[BaseException | None], error: BaseException | None, backoff: _Backoff
    ) -> bool:
        """True to reconnect."""
        if not ready.done():
            ready.set_result(error or SpooledError("stream closed", code="STREAM_CLOSED"))
            return False
        await self._dispatch("disconnected", error)
        if error is not None and _fatal(error):
            await self._dispatch("error", error)
            return False
        if not self.reconnect:
            return False
        await asyncio.sleep(backoff.next())
        return True

    async def _run_sse(self, sub: Subscription, ready: asyncio.Future[BaseException | None]) -> None:
        cfg = self.config
        headers = {"Accept": "text/event-stream", **cfg.default_headers()}
        backoff = _Backoff()
        last_id: str | None = None
        timeout = httpx.Timeout(cfg.connect_timeout, read=45.0)
        async with httpx.AsyncClient(base_url=cfg.base_url, timeout=timeout) as http:
            while True:
                error: BaseException | None = None
                try:
                    request_headers = dict(headers)
                    if last_id:
                        request_headers["Last-Event-ID"] = last_id
                    async with http.stream(
                        "GET", "/api/v1/events", params=sub.query(), headers=request_headers
                    ) as response:
                        if response.status_code >= 400:
                            await response.aread()
                            raise error_from_response(
                                response.status_code, response.content, response.headers
                            )
                        backoff.reset()
                        if not ready.done():
                            ready.set_result(None)
                        await self._dispatch("connected")
                        parser = _SseParser()
                        async for line in response.aiter_lines():
                            event = parser.feed(line)
                            last_id = parser.last_id or last_id
                            if event is not None:
                                await self._dispatch(event.name, event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = exc
                if not await self._after_drop(ready, error, backoff):
                    return

    async def _run_ws(self, ready: asyncio.Future[BaseException | None]) -> None:
        cfg = self.config
        backoff = _Backoff()
        while True:
            error: BaseException | None = None
            try:
                async with websockets.asyncio.client.connect(
                    _ws_url(cfg.base_url) + _ws_query(self),
                    additional_headers=cfg.default_headers(),
                    open_timeout=cfg.connect_timeout,
                    user_agent_header=None,
                ) as conn:
                    self._ws = conn
                    if not self._implicit:
                        for sub in self._subs:
                            await conn.send(
                                json.dumps(
                                    {
                                        "type": "subscribe",
                                        "request_id": uuid.uuid4().hex,
                                        "filter": sub.ws_filter(),
                                    }
                                )
                            )
                    backoff.reset()
                    if not ready.done():
                        ready.set_result(None)
                    await self._dispatch("connected")
                    async for message in conn:
                        outcome = _dispatch_ws_message(self._dispatch, message)
                        if inspect.isawaitable(outcome):
                            await outcome
            except asyncio.CancelledError:
                raise
            except websockets.InvalidStatus as exc:
                error = _ws_status_error(exc)
            except Exception as exc:
                error = exc
            finally:
                self._ws = None
            if not await self._after_drop(ready, error, backoff):
                return


def iter_events(client: RealtimeClient, timeout: float) -> Iterator[RealtimeEvent]:
    """Events as an iterator (for scripts and tests): yields until ``timeout`` seconds pass quietly."""
    import queue

    inbox: queue.SimpleQueue[RealtimeEvent] = queue.SimpleQueue()
    client.on("*", inbox.put)
    while True:
        try:
            yield inbox.get(timeout=timeout)
        except queue.Empty:
            return
