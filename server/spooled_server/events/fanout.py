"""Cross-replica fan-out of realtime events, behind one interface with three backends.

- `Fanout`: in-process only; nothing leaves this replica (the twin used when no broker is wanted).
- `PostgresFanout` (default): `NOTIFY spooled_events` with `{org_id, event}` (plus the event id and the
  sending replica), sent from a dedicated connection in coalesced batches, never inside the transaction
  that caused the event (a NOTIFY per commit serialises commits, see PERFORMANCE.md).
- `RedisFanout` (`REDIS_URL` + `REALTIME_BACKEND=redis`): `PUBLISH org:{org_id}:events`, pipelined.

Interest: a replica only ships an organization's events to the others while some replica has a realtime
connection for that organization. Replicas announce the organizations they watch every few seconds (and
at once when a new one appears); an announcement lives for `INTEREST_TTL_SECS`. Without it, every job
transition of every tenant would cross the broker and be parsed by every replica even when nobody watches.

A replica drops its own messages when they come back (`origin`), so nothing is delivered twice. Sending
never blocks a producer: events go to a bounded outbox, and a broker outage only loses realtime events
(and says so through `healthy`), never jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from .. import metrics
from .bus import Event, EventBus

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

PG_CHANNEL = "spooled_events"
PG_INTEREST_CHANNEL = "spooled_events_interest"
REDIS_INTEREST_CHANNEL = "spooled:realtime:interest"
NOTIFY_PAYLOAD_LIMIT = 7900  # PostgreSQL rejects payloads of 8000 bytes or more
FLUSH_INTERVAL_SECS = 0.002
MAX_BATCH = 500
OUTBOX_LIMIT = 50_000
INTEREST_REFRESH_SECS = 5.0
INTEREST_TTL_SECS = 20.0
RECONNECT_SECS = 1.0


def redis_channel(org_id: str) -> str:
    return f"org:{org_id}:events"


class _WireEvent(msgspec.Struct):
    org_id: str
    event: msgspec.Raw
    id: str = ""
    origin: str = ""


class _DataHead(msgspec.Struct):
    queue_name: Any = None
    job_id: Any = None
    worker_id: Any = None


class _EnvelopeHead(msgspec.Struct):
    type: str
    data: _DataHead = msgspec.field(default_factory=_DataHead)


class _Interest(msgspec.Struct):
    origin: str
    orgs: list[str] = msgspec.field(default_factory=list)
    ttl: float = INTEREST_TTL_SECS
    hello: bool = False


_ENCODER = msgspec.json.Encoder()
_WIRE_DECODER = msgspec.json.Decoder(_WireEvent)
_HEAD_DECODER = msgspec.json.Decoder(_EnvelopeHead)
_INTEREST_DECODER = msgspec.json.Decoder(_Interest)


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


class Fanout:
    """In-process only: events reach this replica's connections and nothing else."""

    backend = "memory"

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.replica = bus.replica
        self.healthy = True

    def wanted(self, org_id: str) -> bool:
        """Does any other replica watch this organization right now?"""
        return False

    def send(self, event: Event) -> None:
        """Queue an event for the other replicas. Never blocks."""

    def watch(self, org_ids: set[str]) -> None:
        """The organizations this replica's connections watch (replaces the previous set)."""

    async def announce(self) -> None:
        """Tell the other replicas now which organizations this replica watches."""

    async def start(self) -> None:
        self.bus.fanout = self

    async def stop(self) -> None:
        if self.bus.fanout is self:
            self.bus.fanout = None

    async def health(self) -> bool:
        return self.healthy


class _BrokerFanout(Fanout):
    """What the Postgres and Redis backends share: outbox, batching, interest, decoding."""

    def __init__(self, bus: EventBus) -> None:
        super().__init__(bus)
        self.healthy = False
        self._outbox: deque[Event] = deque()
        self._dropped = 0
        self._wake = asyncio.Event()
        self._remote_interest: dict[str, float] = {}
        self._local_orgs: set[str] = set()
        self._announce_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_error_log = 0.0

    # --- producer side --------------------------------------------------------------------------------

    def wanted(self, org_id: str) -> bool:
        expires = self._remote_interest.get(org_id)
        if expires is None:
            return False
        if expires < time.monotonic():
            del self._remote_interest[org_id]
            return False
        return True

    def send(self, event: Event) -> None:
        if not self.wanted(event.org_id):
            return
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self._dropped += 1
        self._outbox.append(event)
        self._wake.set()

    def wire(self, event: Event) -> bytes:
        return _ENCODER.encode({"org_id": event.org_id, "event": msgspec.Raw(event.raw), "id": event.id,
                                "origin": self.replica})

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_INTERVAL_SECS)  # coalesce a burst into one round trip
            self._wake.clear()
            while self._outbox:
                batch = [self._outbox.popleft() for _ in range(min(MAX_BATCH, len(self._outbox)))]
                try:
                    await self._send_events(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._broker_failed("sending realtime events failed", exc)
                    self._outbox.clear()  # best effort: a broker outage loses realtime events, never jobs
            if self._dropped:
                log.warning("realtime outbox overflowed; %d events were not fanned out", self._dropped)
                self._dropped = 0

    async def _send_events(self, batch: list[Event]) -> None:
        raise NotImplementedError

    # --- interest -------------------------------------------------------------------------------------

    def watch(self, org_ids: set[str]) -> None:
        added = bool(org_ids - self._local_orgs)
        self._local_orgs = set(org_ids)
        if added:
            self._announce_wake.set()

    async def announce(self, *, hello: bool = False) -> None:
        orgs = sorted(self._local_orgs)
        # Split into messages that fit a NOTIFY payload (an org id is 36 characters plus quoting).
        chunks = [orgs[i:i + 150] for i in range(0, len(orgs), 150)] or [[]]
        if not orgs and not hello:
            return
        for chunk in chunks:
            payload = _ENCODER.encode(_Interest(origin=self.replica, orgs=chunk, ttl=INTEREST_TTL_SECS,
                                                hello=hello))
            try:
                await self._send_interest(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._broker_failed("announcing realtime interest failed", exc)
                return

    async def _send_interest(self, payload: bytes) -> None:
        raise NotImplementedError

    async def _announce_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._announce_wake.wait(), INTEREST_REFRESH_SECS)
            self._announce_wake.clear()
            await self.announce()

    # --- consumer side --------------------------------------------------------------------------------

    def on_event_message(self, payload: bytes | str) -> None:
        try:
            wire = _WIRE_DECODER.decode(payload)
            if wire.origin == self.replica:
                return
            raw = bytes(wire.event)
            head = _HEAD_DECODER.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("ignored a malformed realtime message")
            return
        event = Event(wire.id or self.bus.next_id(), wire.org_id, head.type, raw=raw,
                      queue=_s(head.data.queue_name), job_id=_s(head.data.job_id),
                      worker_id=_s(head.data.worker_id))
        self.bus.deliver_remote(event)

    def on_interest_message(self, payload: bytes | str) -> None:
        try:
            msg = _INTEREST_DECODER.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if msg.origin == self.replica:
            return
        expires = time.monotonic() + max(1.0, min(msg.ttl, 300.0))
        for org in msg.orgs:
            self._remote_interest[org] = expires
        if msg.hello and self._local_orgs:
            self._announce_wake.set()

    def _broker_failed(self, what: str, exc: BaseException) -> None:
        self.healthy = False
        now = time.monotonic()
        if now - self._last_error_log > 10.0:
            self._last_error_log = now
            log.warning("%s (%s backend): %s", what, self.backend, exc)

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        await super().stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()


class PostgresFanout(_BrokerFanout):
    backend = "postgres"

    def __init__(self, bus: EventBus, dsn: str) -> None:
        super().__init__(bus)
        self.dsn = dsn
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None
        self._send_lock = asyncio.Lock()

    async def start(self) -> None:
        await super().start()
        try:
            await self._connect()
        except Exception as exc:  # the supervisor keeps trying; the server starts anyway
            self._broker_failed("realtime LISTEN connection failed", exc)
        self._spawn(self._flush_loop(), "realtime-fanout-flush")
        self._spawn(self._announce_loop(), "realtime-fanout-announce")
        self._spawn(self._supervise(), "realtime-fanout-supervisor")

    async def _connect(self) -> None:
        listener = await asyncpg.connect(self.dsn, server_settings={"application_name": "spooled-realtime"})
        await listener.add_listener(PG_CHANNEL, self._on_notify)
        await listener.add_listener(PG_INTEREST_CHANNEL, self._on_interest_notify)
        self._listener = listener
        if self._sender is None or self._sender.is_closed():
            self._sender = await asyncpg.connect(self.dsn,
                                                 server_settings={"application_name": "spooled-realtime"})
        self.healthy = True
        await self.announce(hello=True)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(RECONNECT_SECS)
            broken = any(c is None or c.is_closed() for c in (self._listener, self._sender))
            if not broken:
                if not self.healthy:  # a failed send on a live connection: healthy again once it answers
                    with contextlib.suppress(Exception):
                        await self._execute("SELECT 1")
                        self.healthy = True
                continue
            self.healthy = False
            for conn in (self._listener, self._sender):
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            self._listener = self._sender = None
            try:
                await self._connect()
                log.info("realtime LISTEN connection re-established")
            except Exception as exc:
                self._broker_failed("realtime LISTEN connection failed", exc)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.on_event_message(payload)

    def _on_interest_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.on_interest_message(payload)

    def wire(self, event: Event) -> bytes:
        body = super().wire(event)
        if len(body) <= NOTIFY_PAYLOAD_LIMIT:
            return body
        # Over the NOTIFY limit: the event goes out with its bulky fields nulled (contract: result, error).
        data = msgspec.json.decode(event.raw).get("data", {})
        for key in ("result", "error", "message"):
            if key in data:
                data[key] = None
        slim = Event(event.id, event.org_id, event.type, data=data, queue=event.queue, job_id=event.job_id,
                     worker_id=event.worker_id)
        body = super().wire(slim)
        return body if len(body) <= NOTIFY_PAYLOAD_LIMIT else b""

    async def _send_events(self, batch: list[Event]) -> None:
        payloads = []
        for event in batch:
            body = self.wire(event)
            if body:
                payloads.append(body.decode())
            else:
                log.warning("realtime event %s too large to fan out", event.type)
        if not payloads:
            return
        await self._execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", PG_CHANNEL, payloads)

    async def _send_interest(self, payload: bytes) -> None:
        await self._execute("SELECT pg_notify($1, $2)", PG_INTEREST_CHANNEL, payload.decode())

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._send_lock:
            sender = self._sender
            if sender is None or sender.is_closed():
                raise ConnectionError("no realtime sender connection")
            await sender.execute(sql, *args, timeout=5)

    async def stop(self) -> None:
        await super().stop()
        for conn in (self._listener, self._sender):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
        self._listener = self._sender = None


class RedisFanout(_BrokerFanout):
    backend = "redis"

    def __init__(self, bus: EventBus, url: str) -> None:
        super().__init__(bus)
        self.url = url
        self._client: Any = None
        self._subscribed = False

    async def start(self) -> None:
        import redis.asyncio as aioredis

        await super().start()
        self._client = aioredis.Redis.from_url(
            self.url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=0,
        )
        self._spawn(self._flush_loop(), "realtime-fanout-flush")
        self._spawn(self._announce_loop(), "realtime-fanout-announce")
        self._spawn(self._listen_forever(), "realtime-fanout-listener")
        self._spawn(self._ping_loop(), "realtime-fanout-ping")

    async def _listen_forever(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(redis_channel("*"))
                await pubsub.subscribe(REDIS_INTEREST_CHANNEL)
                metrics.REDIS_OPERATIONS.inc(2)
                self._subscribed = self.healthy = True
                await self.announce(hello=True)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "pmessage":
                        self.on_event_message(msg["data"])
                    elif msg["type"] == "message":
                        self.on_interest_message(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed = False
                self._broker_failed("redis subscription lost", exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1)
            await asyncio.sleep(RECONNECT_SECS)

    async def _ping_loop(self) -> None:
        """Notices a Redis that stopped answering even when no event flows."""
        while True:
            await asyncio.sleep(2.0)
            try:
                await asyncio.wait_for(self._client.ping(), 2.0)
                metrics.REDIS_OPERATIONS.inc()
                self.healthy = self._subscribed
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._broker_failed("redis ping failed", exc)

    async def _send_events(self, batch: list[Event]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for event in batch:
            pipe.publish(redis_channel(event.org_id), self.wire(event))
        await pipe.execute()
        metrics.REDIS_OPERATIONS.inc(len(batch))

    async def _send_interest(self, payload: bytes) -> None:
        await self._client.publish(REDIS_INTEREST_CHANNEL, payload)
        metrics.REDIS_OPERATIONS.inc()

    async def stop(self) -> None:
        await super().stop()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.aclose(), 2)
            self._client = None


def make_fanout(settings: Settings, bus: EventBus, dsn: str) -> Fanout:
    if settings.realtime_backend == "redis":
        if settings.redis_url:
            return RedisFanout(bus, settings.redis_url)
        log.warning("REALTIME_BACKEND=redis without REDIS_URL: using PostgreSQL LISTEN/NOTIFY")
    return PostgresFanout(bus, dsn)
