"""The realtime hub: this replica's SSE and WebSocket connections and the events routed to them.

Transport-free: the HTTP edge (api/realtime.py) opens a `Connection`, then drains it. The hub listens to
the bus (local events and those fanned in from other replicas) and offers each event to the connections of
its organization: key scope first (re-checked for every event), then the connection's filters. Each
connection buffers at most `BUFFER_LIMIT` events (and `BUFFER_BYTES_LIMIT` bytes); a consumer that falls
that far behind is disconnected, so a slow client never slows a producer or other clients.

Each organization with a connection (or one that ended less than `RESUME_GRACE_SECS` ago) keeps the last
`RING_SIZE` events, so an SSE client reconnecting with `Last-Event-ID` gets what it missed (best effort).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core.auth import Principal
from ..core.errors import RateLimited
from .bus import NAME_ALIASES, Event, EventBus, dotted_name
from .fanout import Fanout

BUFFER_LIMIT = 1000
BUFFER_BYTES_LIMIT = 4 * 1024 * 1024  # large events (results) bound memory before the event count does
MAX_CONNECTIONS_PER_KIND = 100
RING_SIZE = 1000
RING_BYTES_LIMIT = 8 * 1024 * 1024
RESUME_GRACE_SECS = 120.0
UNSTARTED_TIMEOUT_SECS = 30.0
CONNECTION_RETRY_AFTER_SECS = 5


def parse_event_names(raw: Iterable[str] | str | None) -> frozenset[str] | None:
    """`events` filter: comma list (or list) of dotted names, PascalCase types also accepted; `*` = all."""
    if raw is None:
        return None
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    names = set()
    for item in items:
        name = str(item).strip()
        if not name:
            continue
        if name == "*":
            return None
        name = dotted_name(name)
        names.add(NAME_ALIASES.get(name, name))
    return frozenset(names) if names else None


@dataclass(frozen=True)
class Filter:
    """One subscription filter; an unset field matches anything."""

    queue: str | None = None
    job_id: str | None = None
    worker_id: str | None = None
    events: frozenset[str] | None = None

    def matches(self, event: Event) -> bool:
        if self.queue is not None and event.queue != self.queue:
            return False
        if self.job_id is not None and event.job_id != self.job_id:
            return False
        if self.worker_id is not None and event.worker_id != self.worker_id:
            return False
        return self.events is None or event.name in self.events


class Connection:
    """One client stream: its principal, filters and bounded buffer."""

    def __init__(self, hub: RealtimeHub, principal: Principal, kind: str, filters: list[Filter]) -> None:
        self.hub = hub
        self.principal = principal
        self.org_id = str(principal.org_id)
        self.kind = kind
        self.filters = filters
        self.buffer: deque[Event] = deque()
        self.buffered_bytes = 0
        self.overflowed = False
        self.closed = False
        self.close_reason: str | None = None
        self.wake = asyncio.Event()
        self.opened = time.monotonic()
        self.started = False  # set by the edge once it streams; a response that never started is swept

    def accepts(self, event: Event) -> bool:
        if not self.principal.unrestricted:
            # Scoped keys see only events of their queues; events without a queue are not theirs to see.
            if event.queue is None or not self.principal.can_access(event.queue):
                return False
        return any(f.matches(event) for f in self.filters)

    def offer(self, event: Event) -> None:
        if self.closed or not self.accepts(event):
            return
        size = len(event.raw)
        if len(self.buffer) >= BUFFER_LIMIT or self.buffered_bytes + size > BUFFER_BYTES_LIMIT:
            self.overflowed = True
            self.close("slow consumer: too many events buffered")
            return
        self.buffer.append(event)
        self.buffered_bytes += size
        self.wake.set()

    def drain(self, limit: int = 256) -> list[Event]:
        out: list[Event] = []
        while self.buffer and len(out) < limit:
            event = self.buffer.popleft()
            self.buffered_bytes -= len(event.raw)
            out.append(event)
        if not self.buffer:
            self.wake.clear()
            self.buffered_bytes = 0
        return out

    async def wait(self, seconds: float) -> None:
        """Until an event is buffered, the connection is closed, or `seconds` pass."""
        if self.buffer or self.closed:
            return
        try:
            await asyncio.wait_for(self.wake.wait(), seconds)
        except TimeoutError:
            pass

    def close(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.buffer.clear()
            self.buffered_bytes = 0
        self.wake.set()

    def release(self) -> None:
        self.hub.release(self)


class RealtimeHub:
    def __init__(self, bus: EventBus, fanout: Fanout | None = None) -> None:
        self.bus = bus
        self.fanout = fanout
        self._by_org: dict[str, set[Connection]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._rings: dict[str, deque[Event]] = {}
        self._ring_bytes: dict[str, int] = {}
        self._ring_until: dict[str, float] = {}
        self._unlisten = bus.listen(self._on_event, self._wants)

    def close(self) -> None:
        self._unlisten()
        for conns in list(self._by_org.values()):
            for conn in list(conns):
                conn.close("server shutting down")

    # --- connections ----------------------------------------------------------------------------------

    def open(self, principal: Principal, kind: str, filters: list[Filter]) -> Connection:
        """Register a connection, or raise RATE_LIMIT_EXCEEDED beyond the per-organization cap."""
        org = str(principal.org_id)
        key = (org, kind)
        if self._counts.get(key, 0) >= MAX_CONNECTIONS_PER_KIND:
            raise RateLimited(CONNECTION_RETRY_AFTER_SECS, MAX_CONNECTIONS_PER_KIND, 0,
                              int(time.time()) + CONNECTION_RETRY_AFTER_SECS)
        conn = Connection(self, principal, kind, filters)
        self._counts[key] = self._counts.get(key, 0) + 1
        new_org = org not in self._by_org
        self._by_org.setdefault(org, set()).add(conn)
        if org not in self._rings:
            self._rings[org] = deque()
            self._ring_bytes[org] = 0
        self._ring_until.pop(org, None)
        if new_org:
            self._update_interest()
        return conn

    def release(self, conn: Connection) -> None:
        conns = self._by_org.get(conn.org_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        key = (conn.org_id, conn.kind)
        self._counts[key] = max(0, self._counts.get(key, 0) - 1)
        if not conns:
            del self._by_org[conn.org_id]
            # Keep recording (and receiving) a while, so a reconnect can resume where it stopped.
            self._ring_until[conn.org_id] = time.monotonic() + RESUME_GRACE_SECS

    def connection_count(self, org_id: str, kind: str) -> int:
        return self._counts.get((org_id, kind), 0)

    async def ready(self) -> None:
        """Make sure the other replicas know this replica watches its organizations (before `connected`)."""
        if self.fanout is not None:
            await self.fanout.announce()

    def _watched(self) -> set[str]:
        now = time.monotonic()
        for org, until in list(self._ring_until.items()):
            if until < now:
                del self._ring_until[org]
                self._rings.pop(org, None)
                self._ring_bytes.pop(org, None)
        return set(self._by_org) | set(self._ring_until)

    def _update_interest(self) -> None:
        if self.fanout is not None:
            self.fanout.watch(self._watched())

    def housekeeping(self) -> None:
        """Expire resume buffers, drop connections whose response never started (the client left before
        the first byte, so no stream ever ran to release them) and refresh the interest set."""
        stale = time.monotonic() - UNSTARTED_TIMEOUT_SECS
        for conns in list(self._by_org.values()):
            for conn in list(conns):
                if not conn.started and conn.opened < stale:
                    conn.close("stream never started")
                    self.release(conn)
        self._update_interest()

    # --- events ---------------------------------------------------------------------------------------

    def _wants(self, org_id: str) -> bool:
        return org_id in self._rings

    def _on_event(self, event: Event) -> None:
        org = event.org_id
        ring = self._rings.get(org)
        if ring is None:
            return
        ring.append(event)
        size = self._ring_bytes[org] + len(event.raw)
        while len(ring) > RING_SIZE or (size > RING_BYTES_LIMIT and len(ring) > 1):
            size -= len(ring.popleft().raw)
        self._ring_bytes[org] = size
        conns = self._by_org.get(event.org_id)
        if conns:
            for conn in list(conns):
                conn.offer(event)

    def replay(self, conn: Connection, last_event_id: str) -> int:
        """Buffer the org's events after `last_event_id` that the connection may see. 0 when unknown."""
        ring = self._rings.get(conn.org_id)
        if not ring or not last_event_id:
            return 0
        events = list(ring)
        for index in range(len(events) - 1, -1, -1):
            if events[index].id == last_event_id:
                break
        else:
            return 0
        pending = list(conn.buffer)
        conn.buffer.clear()
        seen = {e.id for e in pending}
        count = 0
        for event in events[index + 1:]:
            if event.id not in seen and conn.accepts(event) and count < BUFFER_LIMIT:
                conn.buffer.append(event)
                count += 1
        conn.buffer.extend(pending)
        conn.buffered_bytes = sum(len(e.raw) for e in conn.buffer)
        if conn.buffer:
            conn.wake.set()
        return count

    def stats(self) -> dict[str, Any]:
        return {"connections": sum(self._counts.values()), "organizations": len(self._by_org)}
