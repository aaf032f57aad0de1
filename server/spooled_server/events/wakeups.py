"""Waking claimers: an enqueue wakes waiting REST long-polls and gRPC streams at once.

In-process waiters are woken directly. Other replicas hear about it through one coalesced Postgres NOTIFY
per queue per flush interval, sent from a separate connection after the enqueue committed: never a NOTIFY
inside the enqueue transaction (that serialises commits, see PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "spooled_wakeup"
FLUSH_INTERVAL_SECS = 0.002


class Wakeups:
    def __init__(self) -> None:
        self._waiters: dict[tuple[str, str], set[asyncio.Future[None]]] = defaultdict(set)
        self._outbox: set[str] = set()
        self._replica = uuid.uuid4().hex[:12]
        self._flush_event = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    # --- in-process -----------------------------------------------------------------------------------

    def _wake_local(self, org_id: str, queue: str) -> None:
        waiters = self._waiters.pop((org_id, queue), None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def notify(self, org_id: Any, queue: str) -> None:
        """Jobs became claimable in (org, queue): wake local waiters now, other replicas shortly."""
        org = str(org_id)
        self._wake_local(org, queue)
        if self._sender is not None:
            self._outbox.add(f"{self._replica}|{org}|{queue}")
            self._flush_event.set()

    def notify_many(self, org_id: Any, queues: Any) -> None:
        for q in set(queues or ()):
            self.notify(org_id, q)

    async def wait(self, org_id: Any, queue: str, wait_secs: float) -> bool:
        """Wait until (org, queue) is notified or `wait_secs` passes; True when woken."""
        key = (str(org_id), queue)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[key].add(fut)
        try:
            await asyncio.wait_for(fut, wait_secs)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(fut)
                if not waiters:
                    self._waiters.pop(key, None)

    # --- across replicas ------------------------------------------------------------------------------

    async def start(self, dsn: str) -> None:
        self._listener = await asyncpg.connect(dsn)
        await self._listener.add_listener(CHANNEL, self._on_notification)
        self._sender = await asyncpg.connect(dsn)
        self._task = asyncio.create_task(self._flush_loop(), name="wakeup-flusher")

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        parts = payload.split("|", 2)
        if len(parts) != 3 or parts[0] == self._replica:
            return
        self._wake_local(parts[1], parts[2])

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_event.wait()
            await asyncio.sleep(FLUSH_INTERVAL_SECS)  # coalesce a burst of enqueues into one NOTIFY each
            self._flush_event.clear()
            batch, self._outbox = list(self._outbox), set()
            if not batch or self._sender is None:
                continue
            try:
                await self._sender.execute(
                    "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", CHANNEL, batch
                )
            except Exception:  # the fallback poll covers a lost notification
                log.warning("cross-replica wake-up failed", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for conn in (self._listener, self._sender):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._listener = self._sender = None
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        self._waiters.clear()
