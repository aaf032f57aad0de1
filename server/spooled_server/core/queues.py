"""Queues (rest.md §9, semantics.md §10): listing (implicit queues included), config upsert, stats,
pause/resume and deletion. Also the key-scope helper every list query uses.

A queue exists when it has a config row, has jobs, or is the target of an active schedule. An implicit queue
(no row) is shown with the server defaults and a deterministic UUIDv5 id that a later config row keeps.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from ..db.queries import Q
from . import validation as v
from .auth import Principal
from .context import Core
from .errors import Conflict, NotFound, ValidationFailed
from .jobs import ts
from .webhooks import enqueue_event

MAX_SETTINGS_BYTES = 65536

# --- key scope as SQL -------------------------------------------------------------------------------------
# `Principal.can_access` matches queue names with fnmatchcase; list queries filter in SQL with
# `queue_name ~ ANY($n)` using these anchored regexes, so both sides agree on what a scope allows.

_REGEX_SPECIAL = frozenset(".^$|()[]{}+*?\\")


def glob_to_regex(pattern: str) -> str:
    """An fnmatch pattern as an anchored POSIX regex with the same matches as `fnmatchcase`."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: fnmatch reads `[` literally
                out.append("\\[")
                continue
            body = pattern[i:j]
            i = j + 1
            if body.startswith("!"):
                body = "^" + body[1:]
            elif body.startswith("^"):
                body = "\\" + body
            out.append("[" + body.replace("\\", "\\\\") + "]")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append("$")
    return "".join(out)


def scope_regexes(principal: Principal) -> list[str] | None:
    """None for an unrestricted key (no filter), else one regex per allowed queue pattern."""
    if principal.unrestricted:
        return None
    return [glob_to_regex(p) for p in principal.queues]


# --- queues -----------------------------------------------------------------------------------------------


def queue_id(org_id: uuid.UUID, queue_name: str) -> uuid.UUID:
    """The id an implicit queue is shown with, and the id its config row gets when one is created."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{org_id}/{queue_name}")


def _visible(principal: Principal, name: str) -> str:
    """A queue name from a path: invalid → 400; outside the key's scope it does not exist (404)."""
    v.queue_name(name)
    if not principal.can_access(name):
        raise NotFound()
    return name


def _effective(core: Core, r: Any) -> dict[str, Any]:
    s = core.settings

    def pick(key: str, default: int) -> int:
        value = None if r is None else r[key]
        return default if value is None else int(value)

    return {
        "max_retries": pick("max_retries", s.queue_default_max_retries),
        "default_timeout": pick("default_timeout", s.queue_default_timeout_secs),
        "rate_limit": None if r is None else r["rate_limit"],
        "enabled": True if r is None or r["enabled"] is None else bool(r["enabled"]),
        "retry_backoff_base_secs": pick("retry_backoff_base_secs", s.retry_backoff_base_secs),
        "retry_backoff_max_secs": pick("retry_backoff_max_secs", s.retry_backoff_max_secs),
    }


def _config_wire(
    core: Core,
    org_id: uuid.UUID,
    name: str,
    row: Any,
    *,
    created: datetime | None = None,
    updated: datetime | None = None,
    settings: Any = None,
) -> dict[str, Any]:
    has_row = row is not None and row["id"] is not None
    out: dict[str, Any] = {
        "id": str(row["id"] if has_row else queue_id(org_id, name)),
        "organization_id": str(org_id),
        "queue_name": name,
    }
    out.update(_effective(core, row if has_row else None))
    out["settings"] = (
        row["settings"]
        if has_row and row["settings"] is not None
        else settings
        if settings is not None
        else msgspec.Raw(b"{}")
    )
    out["created_at"] = ts(row["created_at"] if has_row else created)
    out["updated_at"] = ts(row["updated_at"] if has_row else updated)
    return out


async def list_queues(
    core: Core, principal: Principal, *, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    async with core.db.tenant(principal.org_id) as conn:
        rows = await conn.fetch(Q.list_queues, principal.org_id, scope_regexes(principal), limit, offset)
    out = []
    for r in rows:
        item = {"queue_name": r["queue_name"]}
        item.update(_effective(core, r if r["id"] is not None else None))
        out.append(item)
    return out


async def get_queue(core: Core, principal: Principal, name: str) -> dict[str, Any]:
    _visible(principal, name)
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.get_queue, principal.org_id, name)
    if row["id"] is not None:
        return _config_wire(core, principal.org_id, name, row)
    seen = [t for t in (row["first_job_at"], row["first_schedule_at"]) if t is not None]
    if not seen:
        raise NotFound()
    first = min(seen)
    return _config_wire(core, principal.org_id, name, None, created=first, updated=first)


def _settings_patch(value: Any) -> msgspec.Raw | None:
    if value is None:
        return None
    if isinstance(value, msgspec.Raw):
        raw = value
        first = bytes(raw).lstrip()[:1]
        if first == b"n":
            return None
        if first != b"{":
            raise ValidationFailed("settings", "must be an object", rule="type")
    elif isinstance(value, dict):
        raw = msgspec.Raw(msgspec.json.encode(value))
    else:
        raise ValidationFailed("settings", "must be an object", rule="type")
    if len(bytes(raw)) > MAX_SETTINGS_BYTES:
        raise ValidationFailed("settings", "must be at most 64 KB serialized", rule="length")
    return raw


def _first(*values: Any) -> int:
    return int(next(v for v in values if v is not None))


async def _charge_new_queue(core: Core, conn: Any, principal: Principal) -> None:
    """A config row for a queue that does not exist yet counts against `max_queues`."""
    limits = core.quotas.limits(principal)
    if limits.max_queues is None:
        return
    await conn.execute(Q.lock_queue_quota, principal.org_id)
    count = int(await conn.fetchval(Q.count_queues, principal.org_id))
    await core.quotas.check_count(principal, "queues", "max_queues", count)


async def update_queue_config(
    core: Core,
    principal: Principal,
    name: str,
    *,
    max_retries: Any = None,
    default_timeout: Any = None,
    rate_limit: Any = None,
    enabled: Any = None,
    settings: Any = None,
    retry_backoff_base_secs: Any = None,
    retry_backoff_max_secs: Any = None,
) -> dict[str, Any]:
    """Upsert a queue's config: omitted (None) fields keep their values; settings merge key by key."""
    _visible(principal, name)
    v.opt_int_range(max_retries, "max_retries", 0, 100)
    v.opt_int_range(default_timeout, "default_timeout", 1, 86400)
    v.opt_int_range(rate_limit, "rate_limit", 1, 100000)
    v.opt_int_range(retry_backoff_base_secs, "retry_backoff_base_secs", 1, 86400)
    v.opt_int_range(retry_backoff_max_secs, "retry_backoff_max_secs", 1, 604800)
    if enabled is not None and not isinstance(enabled, bool):
        raise ValidationFailed("enabled", "must be a boolean", rule="type")
    patch = _settings_patch(settings)
    s = core.settings
    async with core.db.tenant(principal.org_id) as conn:
        current = await conn.fetchrow(Q.queue_config_for_update, principal.org_id, name)
        if current is None:
            presence = await conn.fetchrow(Q.queue_existence, principal.org_id, name)
            if not presence["implicit"]:
                await _charge_new_queue(core, conn, principal)
        # The cap is checked against the values the queue will really use (given, else stored, else default).
        stored = current if current is not None else {}
        base = _first(
            retry_backoff_base_secs, stored.get("retry_backoff_base_secs"), s.retry_backoff_base_secs
        )
        cap = _first(retry_backoff_max_secs, stored.get("retry_backoff_max_secs"), s.retry_backoff_max_secs)
        if cap < base:
            raise ValidationFailed(
                "retry_backoff_max_secs", "must be at least retry_backoff_base_secs", rule="range"
            )
        row = await conn.fetchrow(
            Q.upsert_queue_config,
            queue_id(principal.org_id, name),
            principal.org_id,
            name,
            max_retries,
            default_timeout,
            rate_limit,
            enabled,
            retry_backoff_base_secs,
            retry_backoff_max_secs,
            patch,
        )
    if row["enabled"]:
        # Re-enabling (or a first config row) may make jobs claimable: wake waiting claimers.
        core.wakeups.notify(principal.org_id, name)
    return _config_wire(core, principal.org_id, name, row)


async def pause_queue(core: Core, principal: Principal, name: str, reason: str | None) -> dict[str, Any]:
    """Stop claims on a queue (semantics.md §10). Creates the config row of an implicit queue, uncharged."""
    _visible(principal, name)
    v.opt_text(reason, "reason", 0, 500)
    async with core.db.tenant(principal.org_id) as conn:
        presence = await conn.fetchrow(Q.queue_existence, principal.org_id, name)
        if not presence["has_config"] and not presence["implicit"]:
            raise NotFound()
        row = await conn.fetchrow(
            Q.pause_queue, queue_id(principal.org_id, name), principal.org_id, name, reason
        )
        result = {"queue_name": name, "paused": True, "paused_at": row["paused_at"], "reason": row["reason"]}
        written = await enqueue_event(
            conn,
            principal.org_id,
            "queue.paused",
            {"queue_name": name, "paused_at": row["paused_at"], "reason": row["reason"]},
        )
    _wake_dispatcher(core, written)
    return result


def _wake_dispatcher(core: Core, written: int) -> None:
    """Queue events have no realtime counterpart to wake the webhook dispatcher; nudge it directly."""
    if written and core.webhooks is not None:
        core.webhooks.wake()


def _parse_instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def resume_queue(core: Core, principal: Principal, name: str) -> dict[str, Any]:
    """Allow claims again and wake waiting claimers. 404 when the queue has no config row."""
    _visible(principal, name)
    async with core.db.tenant(principal.org_id) as conn:
        row = await conn.fetchrow(Q.resume_queue, principal.org_id, name)
        if row is None:
            raise NotFound()
        duration = 0
        paused_at = _parse_instant(row["paused_at"]) if row["was_paused"] else None
        if paused_at is not None:
            duration = max(0, int((row["now"] - paused_at).total_seconds()))
        written = await enqueue_event(
            conn, principal.org_id, "queue.resumed", {"queue_name": name, "paused_duration_secs": duration}
        )
    _wake_dispatcher(core, written)
    core.wakeups.notify(principal.org_id, name)
    return {"queue_name": name, "resumed": True, "paused_duration_secs": duration}


async def queue_stats(core: Core, principal: Principal, name: str) -> dict[str, Any]:
    _visible(principal, name)
    async with core.db.tenant(principal.org_id) as conn:
        presence = await conn.fetchrow(Q.queue_existence, principal.org_id, name)
        if not presence["has_config"] and not presence["implicit"]:
            raise NotFound()
        r = await conn.fetchrow(
            Q.queue_stats, principal.org_id, name, float(core.settings.stale_worker_after_secs)
        )
    avg = r["avg_processing_time_ms"]
    return {
        "queue_name": name,
        "pending_jobs": int(r["pending_jobs"]),
        "processing_jobs": int(r["processing_jobs"]),
        "completed_jobs_24h": int(r["completed_jobs_24h"]),
        "failed_jobs_24h": int(r["failed_jobs_24h"]),
        "avg_processing_time_ms": None if avg is None else round(float(avg), 3),
        "max_job_age_seconds": None if r["max_job_age_seconds"] is None else int(r["max_job_age_seconds"]),
        "active_workers": int(r["active_workers"] or 0),
    }


async def delete_queue(core: Core, principal: Principal, name: str, *, delete_jobs: bool = False) -> None:
    """Remove a queue's config row; with `delete_jobs`, also its jobs and DLQ audit rows (one transaction)."""
    _visible(principal, name)
    async with core.db.tenant(principal.org_id) as conn:
        presence = await conn.fetchrow(Q.queue_existence, principal.org_id, name)
        if not presence["has_config"] and not presence["implicit"]:
            raise NotFound()
        if delete_jobs:
            await conn.fetchval(Q.delete_queue_jobs, principal.org_id, name)
            await conn.fetchval(Q.delete_queue_config, principal.org_id, name)
            return
        jobs = await conn.fetchrow(Q.queue_job_presence, principal.org_id, name)
        if jobs["active"]:
            raise Conflict("Queue has pending or processing jobs; wait for them or use delete_jobs=true")
        removed = await conn.fetchval(Q.delete_queue_config, principal.org_id, name)
        if removed is None:
            if jobs["any"]:
                raise Conflict(
                    "Queue has no config row but still has jobs; use delete_jobs=true to delete them"
                )
            raise Conflict("Queue has no config row; it exists because of an active schedule")
