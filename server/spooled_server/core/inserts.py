"""Single job creates under load, inserted together: a group commit for jobs.

Every create is still its own request: it is answered only after the statement holding its job has
committed, and a statement that fails is retried job by job, so one job's bad value fails only its own
request. While fewer than `lanes` inserts of one (organization, queue) are running, a create goes straight
to the database as one `insert_job` call, so an idle or lightly loaded server adds no wait. Past that,
creates wait in line and the next lane to come free inserts everything waiting (up to 100 jobs) with one
`insert_jobs` statement: one round trip, one commit and one plan for the lot, where PostgreSQL
would otherwise pay each of them per job. Jobs of a group keep their order: created_at, and with it the
claim order among equal priorities, follows arrival.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from typing import Any

import asyncpg

from .. import metrics
from ..db.database import Database

LANES = 4  # inserts of one organization and queue running at once before creates start to group
GROUP_MAX = 100  # jobs per grouped statement

# insert_job's parameters (core/jobs.py builds them); a grouped create never has a parent job.
_ORG, _QUEUE, _ID, _PAYLOAD, _MAX_RETRIES, _PRIORITY, _TIMEOUT, _TAGS, _SCHEDULED, _EXPIRES = range(10)
_PARENT, _WEBHOOK, _SECRET, _KEY, _DEPS_MET, _DEFAULT_RETRIES, _DEFAULT_TIMEOUT = range(10, 17)

_Waiting = tuple[tuple[Any, ...], "asyncio.Future[asyncpg.Record | None]"]


class _Lane:
    __slots__ = ("running", "waiting")

    def __init__(self) -> None:
        self.running = 0
        self.waiting: deque[_Waiting] = deque()


class JobInserts:
    def __init__(self, db: Database, lanes: int = LANES) -> None:
        self._db = db
        self._max_running = max(1, lanes)
        self._lanes: dict[tuple[uuid.UUID, str], _Lane] = {}
        self._drains: set[asyncio.Task[None]] = set()

    async def insert(self, args: tuple[Any, ...]) -> asyncpg.Record | None:
        """Insert one job (insert_job's parameters); None when its idempotency key already has a job."""
        assert args[_PARENT] is None and args[_DEPS_MET] is None
        key = (args[_ORG], args[_QUEUE])
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        if lane.running < self._max_running:
            lane.running += 1
            try:
                rows = await self._db.hot(args[_ORG], "insert_job", *args)
            finally:
                self._lane_free(key, lane)
            return rows[0] if rows else None
        waiter: asyncio.Future[asyncpg.Record | None] = asyncio.get_running_loop().create_future()
        lane.waiting.append((args, waiter))
        return await waiter

    def _lane_free(self, key: tuple[uuid.UUID, str], lane: _Lane) -> None:
        if lane.waiting:  # the lane goes on with the creates waiting in line
            task = asyncio.get_running_loop().create_task(self._drain(key, lane))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
            return
        lane.running -= 1
        if lane.running == 0:
            del self._lanes[key]

    async def _drain(self, key: tuple[uuid.UUID, str], lane: _Lane) -> None:
        try:
            while lane.waiting:
                group: list[_Waiting] = []
                while lane.waiting and len(group) < GROUP_MAX:
                    item = lane.waiting.popleft()
                    if not item[1].done():  # a request that gave up is not inserted
                        group.append(item)
                if group:
                    await self._insert_group(key[0], group)
        finally:
            lane.running -= 1
            if lane.running == 0:
                while lane.waiting:  # only when the server is stopping
                    lane.waiting.popleft()[1].cancel()
                del self._lanes[key]

    async def _insert_group(self, org_id: uuid.UUID, group: list[_Waiting]) -> None:
        try:
            if len(group) == 1:
                args, waiter = group[0]
                try:
                    rows = await self._db.hot(org_id, "insert_job", *args)
                except Exception as exc:
                    _resolve(waiter, exc=exc)
                else:
                    _resolve(waiter, rows[0] if rows else None)
                return
            try:
                rows = await self._db.hot(org_id, "insert_jobs", *_columns(group))
            except asyncpg.PostgresConnectionError as exc:
                for _, waiter in group:
                    _resolve(waiter, exc=exc)
                return
            except asyncpg.PostgresError:
                # The statement was rolled back whole: insert the jobs one by one, so that whatever was
                # wrong fails only the request it came from.
                for item in group:
                    await self._insert_group(org_id, [item])
                return
            except Exception as exc:  # not about a job (the pool, the connection): every request hears it
                for _, waiter in group:
                    _resolve(waiter, exc=exc)
                return
            metrics.JOB_INSERT_GROUP_SIZE.observe(len(group))
            by_id = {row["id"]: row for row in rows}
            for args, waiter in group:
                _resolve(waiter, by_id.get(args[_ID]))
        except BaseException:
            for _, waiter in group:
                if not waiter.done():
                    waiter.cancel()
            raise


def nulls_as_none(column: list[Any]) -> list[Any] | None:
    """An array parameter of insert_jobs: None (SQL NULL, which unnest reads as all NULLs) when no element
    has a value, which spares the driver encoding a list of NULLs."""
    for value in column:
        if value is not None:
            return column
    return None


def _resolve(
    waiter: asyncio.Future[asyncpg.Record | None], row: asyncpg.Record | None = None,
    *, exc: BaseException | None = None,
) -> None:
    if waiter.done():
        return
    if exc is not None:
        waiter.set_exception(exc)
    else:
        waiter.set_result(row)


def _columns(group: list[_Waiting]) -> tuple[Any, ...]:
    first = group[0][0]
    jobs = [args for args, _ in group]

    def column(i: int) -> list[Any] | None:
        return nulls_as_none([a[i] for a in jobs])

    return (
        first[_ORG], first[_QUEUE],
        [a[_ID] for a in jobs], [a[_PAYLOAD] for a in jobs], column(_MAX_RETRIES),
        [a[_PRIORITY] for a in jobs], column(_TIMEOUT), column(_TAGS), column(_SCHEDULED),
        column(_EXPIRES), column(_WEBHOOK), column(_SECRET), column(_KEY), None,
        first[_DEFAULT_RETRIES], first[_DEFAULT_TIMEOUT],
    )
