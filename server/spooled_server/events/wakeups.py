"""Waking claimers: an enqueue wakes waiting REST long-polls and gRPC streams at once.

In-process waiters are woken directly. Other replicas hear about it through one coalesced Postgres NOTIFY
per queue per flush interval, sent from a separate connection after the enqueue committed: never a NOTIFY
inside the enqueue transaction (that serialises commits, see PERFORMANCE.md). A replica that is alone sends
none: each replica's listening connection is named `spooled-wakeups`, a replica that starts says hello on the
channel, and the others count the listeners once a second, so a busy single server does not spend a NOTIFY
transaction every few milliseconds on nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "spooled_wakeup"
FLUSH_INTERVAL_SECS = 0.002
LISTENER_NAME = "spooled-wakeups"
PEER_CHECK_SECS = 1.0
HELLO = "hello"


class Wakeups:
    def __init__(self) -> None:
        self._waiters: dict[tuple[str, str], set[asyncio.Future[None]]] = defaultdict(set)
        self._outbox: set[str] = set()
        self._replica = uuid.uuid4().hex[:12]
        self._flush_event = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._peers = False  # another replica listens
        self._peers_checked = 0.0

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
        if self._sender is not None and (
            self._peers or time.monotonic() - self._peers_checked >= PEER_CHECK_SECS
        ):
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
        self._listener = await asyncpg.connect(dsn, server_settings={"application_name": LISTENER_NAME})
        await self._listener.add_listener(CHANNEL, self._on_notification)
        self._sender = await asyncpg.connect(dsn)
        # Listening already: replicas running before this one start notifying it as soon as they hear this.
        await self._sender.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{self._replica}|{HELLO}")
        await self._count_peers()
        self._task = asyncio.create_task(self._flush_loop(), name="wakeup-flusher")

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        parts = payload.split("|", 2)
        if parts[0] == self._replica:
            return
        if len(parts) == 2 and parts[1] == HELLO:
            self._peers = True
            self._peers_checked = time.monotonic()
            return
        if len(parts) == 3:
            self._wake_local(parts[1], parts[2])

    async def _count_peers(self) -> None:
        """Whether another replica's listener is connected to this database (ours is one of them)."""
        assert self._sender is not None
        try:
            listeners = await self._sender.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                LISTENER_NAME,
            )
        except Exception:  # cannot tell: keep notifying, as if others listened
            log.debug("could not count wake-up listeners", exc_info=True)
            listeners = 2
        self._peers = int(listeners or 0) > 1
        self._peers_checked = time.monotonic()

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_event.wait()
            await asyncio.sleep(FLUSH_INTERVAL_SECS)  # coalesce a burst of enqueues into one NOTIFY each
            self._flush_event.clear()
            batch, self._outbox = list(self._outbox), set()
            if not batch or self._sender is None:
                continue
            try:
                if time.monotonic() - self._peers_checked >= PEER_CHECK_SECS:
                    await self._count_peers()
                if not self._peers:
                    continue
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
