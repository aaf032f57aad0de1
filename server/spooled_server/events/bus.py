"""The event bus: events are published after the transaction that caused them commits.

This in-process bus serves local subscribers (realtime streams, webhooks, metrics). Cross-replica fan-out
(Postgres NOTIFY, Redis) plugs in behind the same `publish` call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

Subscriber = Callable[[str, str, dict[str, Any]], None]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def publish(self, org_id: Any, event_type: str, data: dict[str, Any]) -> None:
        """Publish one event (PascalCase type, as in the realtime envelope) for an organization."""
        if not self._subscribers:
            return
        data.setdefault("timestamp", now_iso())
        for fn in list(self._subscribers):
            try:
                fn(str(org_id), event_type, data)
            except Exception:
                log.exception("event subscriber failed")

    def status_change(self, org_id: Any, job_id: Any, queue: str, old: str, new: str) -> None:
        self.publish(org_id, "JobStatusChange",
                     {"job_id": str(job_id), "queue_name": queue, "old_status": old, "new_status": new})
