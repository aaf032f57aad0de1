"""The event bus: events are published after the transaction that caused them commits.

`publish(org_id, type, data)` is synchronous and never waits: it hands the event to in-process subscribers
and to the cross-replica fan-out (Postgres NOTIFY or Redis, see `fanout.py`), which sends it later in
batches from its own connection. Events arriving from other replicas reach only the *listeners* (the
realtime hub), never the plain subscribers: side effects such as webhooks or metrics must run once, on the
replica where the change happened.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from .fanout import Fanout

log = logging.getLogger(__name__)

Subscriber = Callable[[str, str, dict[str, Any]], None]
# Which (org id, event type) pairs a subscriber wants; a subscriber without one wants every event.
SubscriberWants = Callable[[str, str], bool]

# Envelope type (PascalCase) -> dotted name used by SSE `event:` lines and the `events` filter.
EVENT_NAMES: dict[str, str] = {
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
NAME_ALIASES = {"job.status_changed": "job.status"}

_ENCODER = msgspec.json.Encoder()


_last_second: tuple[int, str] = (-1, "")  # the last whole second formatted; replaced whole, never mutated


@functools.lru_cache(maxsize=4096)
def org_text(org_id: Any) -> str:
    """An organization id as text (events carry it as a string; the same few ids recur on every event)."""
    return str(org_id)


def now_iso() -> str:
    """The current UTC time as the contract's timestamp (called per event, so the date part is cached)."""
    global _last_second
    second, fraction = divmod(time.time_ns() // 1000, 1_000_000)
    cached_second, text = _last_second
    if second != cached_second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, text)
    return f"{text}.{fraction:06d}Z"


def dotted_name(event_type: str) -> str:
    """`JobStatusChange` -> `job.status`; unknown types pass through unchanged."""
    return EVENT_NAMES.get(event_type, event_type)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


class Event:
    """One published event: routing fields for filtering plus the envelope, encoded once and shared."""

    __slots__ = ("_raw", "data", "id", "job_id", "name", "org_id", "queue", "type", "worker_id")

    def __init__(self, event_id: str, org_id: str, event_type: str, *, data: dict[str, Any] | None = None,
                 raw: bytes | None = None, queue: str | None = None, job_id: str | None = None,
                 worker_id: str | None = None) -> None:
        self.id = event_id
        self.org_id = org_id
        self.type = event_type
        self.name = dotted_name(event_type)
        self.data = data
        self._raw = raw
        self.queue = queue
        self.job_id = job_id
        self.worker_id = worker_id

    @classmethod
    def build(cls, event_id: str, org_id: str, event_type: str, data: dict[str, Any]) -> Event:
        return cls(event_id, org_id, event_type, data=data, queue=_str_or_none(data.get("queue_name")),
                   job_id=_str_or_none(data.get("job_id")), worker_id=_str_or_none(data.get("worker_id")))

    @property
    def raw(self) -> bytes:
        """The envelope `{"type", "data", "timestamp"}` as one line of JSON."""
        if self._raw is None:
            data = self.data or {}
            self._raw = _ENCODER.encode({"type": self.type, "data": data, "timestamp": data.get("timestamp")})
        return self._raw


def envelope(event_type: str, data: dict[str, Any] | None = None) -> bytes:
    """A connection-local envelope (Ping, Error, SystemHealth, QueueStats): not published on the bus."""
    body = dict(data or {})
    stamp = body.setdefault("timestamp", now_iso())
    return _ENCODER.encode({"type": event_type, "data": body, "timestamp": stamp})


class EventBus:
    def __init__(self) -> None:
        self.replica = uuid.uuid4().hex[:12]
        self._subscribers: list[tuple[Subscriber, SubscriberWants | None]] = []
        self._listeners: list[tuple[Callable[[Event], None], Callable[[str], bool] | None]] = []
        self._seq = itertools.count(1)
        self.fanout: Fanout | None = None

    def subscribe(self, fn: Subscriber, wants: SubscriberWants | None = None) -> Callable[[], None]:
        """Events of this replica only, as `(org_id, type, data)`. `wants(org_id, type)` says which ones the
        subscriber cares about (see `wanted`); it still receives every event that is published."""
        entry = (fn, wants)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    def wanted(self, org_id: Any, event_type: str) -> bool:
        """Whether anyone would read an `event_type` event of this organization now: a subscriber, a
        realtime connection of this replica or another replica. Hot paths ask before building per-job events
        (a 100-job claim or bulk insert would otherwise build a hundred that nobody reads)."""
        if not self._subscribers and not self._listeners and self.fanout is None:
            return False
        org = org_text(org_id)
        if any(wants is None or wants(org, event_type) for _, wants in self._subscribers):
            return True
        if any(wants is None or wants(org) for _, wants in self._listeners):
            return True
        return self.fanout is not None and self.fanout.wanted(org)

    def listen(
        self, fn: Callable[[Event], None], wants: Callable[[str], bool] | None = None
    ) -> Callable[[], None]:
        """Every event, local or from another replica (the realtime hub). `wants(org_id)` lets a listener
        say which organizations it cares about, so nobody builds an event that no one will read."""
        entry = (fn, wants)
        self._listeners.append(entry)
        return lambda: self._listeners.remove(entry) if entry in self._listeners else None

    def next_id(self) -> str:
        return f"{self.replica}-{next(self._seq)}"

    def publish(self, org_id: Any, event_type: str, data: dict[str, Any]) -> None:
        """Publish one event (PascalCase type, as in the realtime envelope) for an organization."""
        fanout = self.fanout
        if not self._subscribers and not self._listeners and fanout is None:
            return
        data.setdefault("timestamp", now_iso())
        org = org_text(org_id)
        for fn, _ in list(self._subscribers):
            try:
                fn(org, event_type, data)
            except Exception:
                log.exception("event subscriber failed")
        local = any(wants is None or wants(org) for _, wants in self._listeners)
        remote = fanout is not None and fanout.wanted(org)
        if not local and not remote:
            return
        event = Event.build(self.next_id(), org, event_type, data)
        if local:
            self._deliver(event)
        if remote:
            fanout.send(event)  # type: ignore[union-attr]

    def deliver_remote(self, event: Event) -> None:
        """An event published by another replica."""
        self._deliver(event)

    def _deliver(self, event: Event) -> None:
        for fn, wants in list(self._listeners):
            if wants is not None and not wants(event.org_id):
                continue
            try:
                fn(event)
            except Exception:
                log.exception("event listener failed")

    def status_change(self, org_id: Any, job_id: Any, queue: str, old: str, new: str) -> None:
        self.publish(org_id, "JobStatusChange",
                     {"job_id": str(job_id), "queue_name": queue, "old_status": old, "new_status": new})
