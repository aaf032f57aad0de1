"""Cron schedules (rest.md §11, semantics.md §8): CRUD, pause/resume, manual trigger, history, preview, and
the precise cron loop that fires due schedules.

Firing: each due schedule is locked with skip-locked semantics in its own tenant transaction; the job insert,
the run row and the advance of `next_run_at` commit together, so a fire happens once however many replicas
try. `next_run_at` always moves to the first fire time after the moment of the fire, so a schedule that
missed fires during downtime runs once and then continues from now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from ..db.queries import Q
from . import cron
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import NotFound, PayloadTooLarge, QuotaExceeded, ValidationFailed
from .jobs import _after_create, as_raw, check_storable_json, raw_size, ts

NULL_JSON = msgspec.Raw(b"null")
MAX_TEMPLATE_BYTES = 1024 * 1024
PREVIEW_MAX = 50

log = logging.getLogger(__name__)

EDITABLE = (
    "name",
    "description",
    "cron_expression",
    "timezone",
    "queue_name",
    "payload_template",
    "priority",
    "max_retries",
    "timeout_seconds",
    "tags",
    "metadata",
    "is_active",
)


# --- validation ------------------------------------------------------------------------------------------


def _json_kind(raw: msgspec.Raw) -> bytes:
    return bytes(raw).lstrip()[:1]


def _tags(value: Any) -> msgspec.Raw | None:
    if value is None:
        return None
    raw = as_raw(value)
    kind = _json_kind(raw)
    if kind == b"n":
        return None
    if kind not in (b"{", b"["):
        raise ValidationFailed("tags", "must be an object or an array", rule="type")
    if raw_size(raw) > 65536:
        raise ValidationFailed("tags", "must be at most 64 KB serialized", rule="length")
    return raw


def _metadata(value: Any) -> msgspec.Raw | None:
    if value is None:
        return None
    raw = as_raw(value)
    kind = _json_kind(raw)
    if kind == b"n":
        return None
    if kind != b"{":
        raise ValidationFailed("metadata", "must be an object", rule="type")
    if raw_size(raw) > 65536:
        raise ValidationFailed("metadata", "must be at most 64 KB serialized", rule="length")
    return raw


def _clean(core: Core, principal: Principal, fields: dict[str, Any]) -> dict[str, Any]:
    """Validate the given fields (a create body, or the changed part of an update); returns clean values."""
    out: dict[str, Any] = {}
    if "name" in fields:
        out["name"] = v.text(fields["name"], "name", 1, 255)
    if "description" in fields:
        out["description"] = v.opt_text(fields["description"], "description", 0, 1000)
    if "queue_name" in fields:
        out["queue_name"] = v.queue_name(fields["queue_name"], max_len=255)
        principal.require_queue(out["queue_name"])
    if "payload_template" in fields:
        template = as_raw(fields["payload_template"])
        if raw_size(template) > MAX_TEMPLATE_BYTES:
            raise PayloadTooLarge(
                f"payload_template is {raw_size(template)} bytes; the limit is {MAX_TEMPLATE_BYTES} bytes",
                extra={
                    "current": raw_size(template),
                    "limit": MAX_TEMPLATE_BYTES,
                    "plan": core.quotas.limits(principal).tier,
                    "upgrade_to": None,
                },
            )
        core.quotas.check_payload(principal, raw_size(template))
        check_storable_json(template, "payload_template")
        out["payload_template"] = template
    if "priority" in fields:
        out["priority"] = v.int_range(fields["priority"], "priority", -100, 100)
    if "max_retries" in fields:
        out["max_retries"] = v.opt_int_range(fields["max_retries"], "max_retries", 0, 100)
    if "timeout_seconds" in fields:
        out["timeout_seconds"] = v.opt_int_range(fields["timeout_seconds"], "timeout_seconds", 1, 86400)
    if "tags" in fields:
        out["tags"] = _tags(fields["tags"])
        check_storable_json(out["tags"], "tags")
    if "metadata" in fields:
        out["metadata"] = _metadata(fields["metadata"])
        check_storable_json(out["metadata"], "metadata")
    if "is_active" in fields:
        if not isinstance(fields["is_active"], bool):
            raise ValidationFailed("is_active", "must be a boolean", rule="type")
        out["is_active"] = fields["is_active"]
    if "cron_expression" in fields:
        if not isinstance(fields["cron_expression"], str):
            raise ValidationFailed("cron_expression", "must be a string", rule="type")
        out["cron_expression"] = fields["cron_expression"].strip()
    if "timezone" in fields:
        if not isinstance(fields["timezone"], str):
            raise ValidationFailed("timezone", "must be a string", rule="type")
        out["timezone"] = fields["timezone"].strip()
    return out


# --- wire shape ------------------------------------------------------------------------------------------


def schedule_to_wire(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "organization_id": str(r["organization_id"]),
        "name": r["name"],
        "description": r["description"],
        "cron_expression": r["cron_expression"],
        "timezone": r["timezone"],
        "queue_name": r["queue_name"],
        "payload_template": r["payload_template"] if r["payload_template"] is not None else NULL_JSON,
        "priority": r["priority"],
        "max_retries": r["effective_max_retries"],
        "timeout_seconds": r["effective_timeout"],
        "is_active": r["is_active"],
        "last_run_at": ts(r["last_run_at"]),
        "next_run_at": ts(r["next_run_at"]),
        "run_count": int(r["run_count"]),
        "tags": r["tags"] if r["tags"] is not None else NULL_JSON,
        "metadata": r["metadata"] if r["metadata"] is not None else NULL_JSON,
        "created_at": ts(r["created_at"]),
        "updated_at": ts(r["updated_at"]),
    }


def _defaults(core: Core) -> tuple[int, int]:
    return core.settings.queue_default_max_retries, core.settings.queue_default_timeout_secs


async def _load(
    core: Core, conn: asyncpg.Connection, principal: Principal, schedule_id: uuid.UUID
) -> asyncpg.Record:
    row = await conn.fetchrow(Q.get_schedule, schedule_id, principal.org_id, *_defaults(core))
    if row is None or not principal.can_access(row["queue_name"]):
        raise NotFound()
    return row


def _wake(core: Core) -> None:
    scheduler = getattr(core, "scheduler", None)
    if scheduler is not None:
        scheduler.wake()


async def _check_schedule_quota(core: Core, conn: asyncpg.Connection, principal: Principal) -> None:
    limits = core.quotas.limits(principal)
    if limits.max_schedules is None:
        return
    await conn.execute(Q.lock_schedule_quota, principal.org_id)
    active = int(await conn.fetchval(Q.count_active_schedules, principal.org_id))
    await core.quotas.check_count(principal, "schedules", "max_schedules", active)


async def _check_queue_cap(core: Core, conn: asyncpg.Connection, principal: Principal, queue: str) -> None:
    # An active schedule makes its queue exist (rest.md §9), so a schedule on a new queue uses a queue slot.
    if core.quotas.limits(principal).max_queues is None:
        return
    if await conn.fetchval(Q.schedule_queue_known, principal.org_id, queue):
        return
    await core.quotas.check_new_queue(conn, principal, queue)


# --- routes ----------------------------------------------------------------------------------------------


async def create_schedule(core: Core, principal: Principal, fields: dict[str, Any]) -> dict[str, Any]:
    for required in ("name", "cron_expression", "queue_name", "payload_template"):
        if required not in fields:
            raise ValidationFailed(required, "is required", rule="required")
    data = _clean(core, principal, fields)
    data.setdefault("timezone", "UTC")
    _, first = cron.validated(data["cron_expression"], data["timezone"], datetime.now(UTC))
    schedule_id = uuid.uuid4()
    async with core.db.tenant(principal.org_id) as conn:
        await _check_schedule_quota(core, conn, principal)
        await _check_queue_cap(core, conn, principal, data["queue_name"])
        row = await conn.fetchrow(
            Q.insert_schedule,
            schedule_id,
            principal.org_id,
            data["name"],
            data.get("description"),
            data["cron_expression"],
            data["timezone"],
            data["queue_name"],
            data["payload_template"],
            data.get("priority", 0),
            data.get("max_retries"),
            data.get("timeout_seconds"),
            data.get("tags"),
            data.get("metadata"),
            first,
        )
    _wake(core)
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "cron_expression": row["cron_expression"],
        "next_run_at": ts(row["next_run_at"]),
    }


async def list_schedules(
    core: Core, principal: Principal, queue_name: str | None, is_active: bool | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    async with core.db.tenant(principal.org_id) as conn:
        if principal.unrestricted:
            rows = await conn.fetch(
                Q.list_schedules, principal.org_id, queue_name, is_active, limit, offset, *_defaults(core)
            )
            return [schedule_to_wire(r) for r in rows]
        # Scope patterns are globs: filter here, then page (schedules are few per organization).
        rows = await conn.fetch(
            Q.list_schedules, principal.org_id, queue_name, is_active, 1_000_000, 0, *_defaults(core)
        )
    visible = [r for r in rows if principal.can_access(r["queue_name"])]
    return [schedule_to_wire(r) for r in visible[offset : offset + limit]]


async def get_schedule(core: Core, principal: Principal, schedule_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        return schedule_to_wire(await _load(core, conn, principal, schedule_id))


async def update_schedule(
    core: Core, principal: Principal, schedule_id: uuid.UUID, fields: dict[str, Any]
) -> dict[str, Any]:
    # Null for a field that cannot be null means "leave it as it is".
    for key in ("name", "cron_expression", "timezone", "queue_name", "priority", "is_active"):
        if key in fields and fields[key] is None:
            del fields[key]
    data = _clean(core, principal, fields)
    async with core.db.tenant(principal.org_id) as conn:
        current = await conn.fetchrow(Q.lock_schedule, schedule_id, principal.org_id)
        if current is None or not principal.can_access(current["queue_name"]):
            raise NotFound()
        merged = {key: data.get(key, current[key]) for key in EDITABLE}
        next_run = current["next_run_at"]
        timing_changed = (
            merged["cron_expression"] != current["cron_expression"]
            or merged["timezone"] != current["timezone"]
        )
        reactivated = merged["is_active"] and not current["is_active"]
        if "cron_expression" in data or "timezone" in data or reactivated:
            _, first = cron.validated(merged["cron_expression"], merged["timezone"], datetime.now(UTC))
            if timing_changed or reactivated:
                next_run = first
        if reactivated:
            await _check_schedule_quota(core, conn, principal)
        if merged["is_active"] and merged["queue_name"] != current["queue_name"]:
            await _check_queue_cap(core, conn, principal, merged["queue_name"])
        await conn.execute(
            Q.update_schedule,
            schedule_id,
            principal.org_id,
            merged["name"],
            merged["description"],
            merged["cron_expression"],
            merged["timezone"],
            merged["queue_name"],
            merged["payload_template"],
            merged["priority"],
            merged["max_retries"],
            merged["timeout_seconds"],
            merged["tags"],
            merged["metadata"],
            merged["is_active"],
            next_run,
        )
        row = await _load(core, conn, principal, schedule_id)
    _wake(core)
    return schedule_to_wire(row)


async def delete_schedule(core: Core, principal: Principal, schedule_id: uuid.UUID) -> None:
    async with core.db.tenant(principal.org_id) as conn:
        await _load(core, conn, principal, schedule_id)
        await conn.execute(Q.delete_schedule, schedule_id, principal.org_id)


async def pause_schedule(core: Core, principal: Principal, schedule_id: uuid.UUID) -> dict[str, Any]:
    return await update_schedule(core, principal, schedule_id, {"is_active": False})


async def resume_schedule(core: Core, principal: Principal, schedule_id: uuid.UUID) -> dict[str, Any]:
    async with core.db.tenant(principal.org_id) as conn:
        current = await conn.fetchrow(Q.lock_schedule, schedule_id, principal.org_id)
        if current is None or not principal.can_access(current["queue_name"]):
            raise NotFound()
        if not current["is_active"]:
            await _check_schedule_quota(core, conn, principal)
        # Resume always restarts the clock from now: fires missed while paused are not made up.
        schedule = cron.Schedule(
            cron.parse(current["cron_expression"]), cron.parse_timezone(current["timezone"])
        )
        next_run = schedule.next_after(datetime.now(UTC))
        await conn.execute(
            Q.update_schedule,
            schedule_id,
            principal.org_id,
            current["name"],
            current["description"],
            current["cron_expression"],
            current["timezone"],
            current["queue_name"],
            current["payload_template"],
            current["priority"],
            current["max_retries"],
            current["timeout_seconds"],
            current["tags"],
            current["metadata"],
            True,
            next_run,
        )
        row = await _load(core, conn, principal, schedule_id)
    _wake(core)
    return schedule_to_wire(row)


async def schedule_history(
    core: Core, principal: Principal, schedule_id: uuid.UUID, limit: int
) -> list[dict[str, Any]]:
    async with core.db.tenant(principal.org_id) as conn:
        await _load(core, conn, principal, schedule_id)
        rows = await conn.fetch(Q.schedule_history, schedule_id, principal.org_id, limit)
    return [
        {
            "id": str(r["id"]),
            "schedule_id": str(r["schedule_id"]),
            "job_id": None if r["job_id"] is None else str(r["job_id"]),
            "status": r["status"],
            "error_message": r["error_message"],
            "started_at": ts(r["started_at"]),
            "completed_at": ts(r["completed_at"]),
            "job_status": r["job_status"],
        }
        for r in rows
    ]


def preview(expression: Any, timezone_name: Any, count: int, now: datetime | None = None) -> dict[str, Any]:
    """The next `count` fire times of an expression (the dashboard's preview); nothing is stored."""
    if not 1 <= count <= PREVIEW_MAX:
        raise ValidationFailed("count", f"must be between 1 and {PREVIEW_MAX}", rule="range")
    start = now or datetime.now(UTC)
    schedule, _ = cron.validated(expression, timezone_name, start, cron_field="cron")
    runs = cron.next_fires(schedule.cron, schedule.zone, start, count)
    return {"cron_expression": expression, "timezone": timezone_name, "next_runs": [ts(r) for r in runs]}


# --- firing ----------------------------------------------------------------------------------------------


def _fire_principal(org_id: uuid.UUID, plan_tier: str, custom_limits: Any) -> Principal:
    limits = None
    if custom_limits is not None:
        decoded = (
            msgspec.json.decode(bytes(custom_limits))
            if isinstance(custom_limits, msgspec.Raw)
            else custom_limits
        )
        limits = decoded if isinstance(decoded, dict) else None
    return Principal(
        org_id=org_id, key_id=uuid.UUID(int=0), queues=(), plan_tier=plan_tier, custom_limits=limits
    )


async def _enqueue_from(
    core: Core, conn: asyncpg.Connection, principal: Principal, s: asyncpg.Record
) -> tuple[uuid.UUID, asyncpg.Record]:
    """Insert the pending job a fire makes (queue defaults fill unset fields). Raises quota/size errors."""
    template = s["payload_template"] if s["payload_template"] is not None else NULL_JSON
    core.quotas.check_payload(principal, raw_size(template))
    await core.quotas.reserve_jobs(conn, principal, 1)
    job_id = uuid.uuid4()
    settings = core.settings
    row = await conn.fetchrow(
        Q.insert_job,
        principal.org_id,
        s["queue_name"],
        job_id,
        template,
        s["max_retries"],
        s["priority"],
        s["timeout_seconds"],
        s["tags"],
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        settings.queue_default_max_retries,
        settings.queue_default_timeout_secs,
    )
    return job_id, row


def _after_fire(core: Core, org_id: uuid.UUID, queue: str, job_id: uuid.UUID | None, row: Any) -> None:
    if job_id is not None and row is not None:
        _after_create(core, org_id, queue, [(job_id, row["status"], row["priority"])])
    # The schedule.triggered deliveries committed with the fire; let this replica's dispatcher send them now.
    wake = getattr(getattr(core, "webhooks", None), "wake", None)
    if callable(wake):
        wake()


async def trigger_schedule(core: Core, principal: Principal, schedule_id: uuid.UUID) -> dict[str, Any]:
    """Manual trigger: a pending job now and a run row; `next_run_at` does not move. 413/429 as for create."""
    async with core.db.tenant(principal.org_id) as conn:
        s = await conn.fetchrow(Q.lock_schedule, schedule_id, principal.org_id)
        if s is None or not principal.can_access(s["queue_name"]):
            raise NotFound()
        now = await conn.fetchval("SELECT clock_timestamp()")
        job_id, row = await _enqueue_from(core, conn, principal, s)
        await conn.fetchval(
            Q.record_schedule_fire,
            schedule_id,
            principal.org_id,
            uuid.uuid4(),
            job_id,
            "completed",
            None,
            now,
            None,
            now,
            True,
        )
    _after_fire(core, principal.org_id, s["queue_name"], job_id, row)
    return {"job_id": str(job_id), "triggered_at": ts(now), "scheduled_at": ts(now)}


async def fire_schedule(
    core: Core, schedule_id: uuid.UUID, org_id: uuid.UUID, plan_tier: str, custom_limits: Any = None
) -> uuid.UUID | None:
    """Fire one due schedule if nobody else is; returns the job id (None when skipped or blocked)."""
    principal = _fire_principal(org_id, plan_tier, custom_limits)
    async with core.db.tenant(org_id) as conn:
        s = await conn.fetchrow(Q.lock_due_schedule, schedule_id, org_id)
        if s is None:
            return None
        fired_at: datetime = s["fired_at"]
        try:
            schedule = cron.Schedule(cron.parse(s["cron_expression"]), cron.parse_timezone(s["timezone"]))
            next_run = schedule.next_after(fired_at)
        except cron.CronError:  # stored before a rule change: stop firing rather than fail every tick
            log.warning("schedule %s has an invalid expression; it will not fire again", schedule_id)
            next_run = None
        job_id: uuid.UUID | None = None
        row = None
        error: str | None = None
        try:
            job_id, row = await _enqueue_from(core, conn, principal, s)
        except (QuotaExceeded, PayloadTooLarge) as exc:
            error = exc.message
        await conn.fetchval(
            Q.record_schedule_fire,
            schedule_id,
            org_id,
            uuid.uuid4(),
            job_id,
            "failed" if error else "completed",
            error,
            fired_at,
            next_run,
            fired_at,
            False,
        )
    _after_fire(core, org_id, s["queue_name"], job_id, row)
    return job_id


class CronScheduler:
    """Fires due schedules within a fraction of a second of their time.

    It sleeps until the earliest `next_run_at` (at most MAX_SLEEP, so schedules created on other replicas are
    seen quickly), and a local create or update wakes it at once. It fires only while `is_leader()` holds;
    the row lock in `fire_schedule` keeps fires single even while leadership changes hands.
    """

    MAX_SLEEP = 0.5
    BATCH = 100

    def __init__(self, core: Core, is_leader: Callable[[], bool]) -> None:
        self.core = core
        self.is_leader = is_leader
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cron-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _run(self) -> None:
        while True:
            delay = self.MAX_SLEEP
            try:
                if self.is_leader():
                    delay = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("cron scheduler tick failed", exc_info=True)
                delay = 1.0
            if delay > 0:
                await self._sleep(min(delay, self.MAX_SLEEP))

    async def tick(self) -> float:
        """Fire everything due; returns the seconds until the next schedule is due."""
        while True:
            async with self.core.db.maintenance(transaction=False) as conn:
                until = await conn.fetchval(Q.next_schedule_due)
                if until is None:
                    return self.MAX_SLEEP
                if until > 0:
                    return float(until) + 0.001
                due = await conn.fetch(Q.due_schedules, self.BATCH)
            if not due:
                return 0.01
            fired = failed = 0
            for r in due:
                try:
                    job = await fire_schedule(
                        self.core, r["id"], r["organization_id"], r["plan_tier"], r["custom_limits"]
                    )
                    fired += job is not None
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failed += 1
                    log.warning("firing schedule %s failed", r["id"], exc_info=True)
            if failed:
                return 1.0  # do not spin on a schedule that keeps failing; it stays due
            if not fired and len(due) < self.BATCH:
                return 0.02  # another replica holds them (a leadership hand-over): look again shortly
