"""Rows and JSON to protobuf and back (grpc.md "Struct mapping" and "Unset values in Job")."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from google.protobuf import struct_pb2, timestamp_pb2

from ..core.errors import ValidationFailed
from ._generated import spooled_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_SAFE_INT = 2**53
_DECODE = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()

STATUS = {
    "pending": pb.JOB_STATUS_PENDING,
    "scheduled": pb.JOB_STATUS_SCHEDULED,
    "processing": pb.JOB_STATUS_PROCESSING,
    "completed": pb.JOB_STATUS_COMPLETED,
    "failed": pb.JOB_STATUS_FAILED,
    "deadletter": pb.JOB_STATUS_DEADLETTER,
    "cancelled": pb.JOB_STATUS_CANCELLED,
}


# --- JSON <-> Struct --------------------------------------------------------------------------------------


def fill_struct(target: struct_pb2.Struct, raw: Any) -> None:
    """Write a stored JSON value into `target`: an object as it is, any other value as {"value": ...}.
    JSON null (or SQL NULL) leaves the field unset."""
    if raw is None:
        return
    data = _DECODE.decode(raw)
    if data is None:
        return
    if not isinstance(data, dict):
        data = {"value": data}
    target.SetInParent()  # an empty object is still a value
    target.update(data)


def _plain(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        n = value.number_value
        # Struct numbers are doubles; integral ones go back to JSON as integers, as the client sent them.
        if math.isfinite(n) and n.is_integer() and abs(n) <= _MAX_SAFE_INT:
            return int(n)
        return n if math.isfinite(n) else None
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: _plain(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(v) for v in value.list_value.values]
    return None


def json_from_struct(message: Any, field: str) -> msgspec.Raw | None:
    """The Struct field `field` of `message` as JSON, or None when it is unset."""
    if not message.HasField(field):
        return None
    struct = getattr(message, field)
    return msgspec.Raw(_ENCODE.encode({k: _plain(v) for k, v in struct.fields.items()}))


def json_object(mapping: Any) -> msgspec.Raw | None:
    """A proto map<string,string> as a JSON object; an empty map is indistinguishable from unset (None)."""
    if not mapping:
        return None
    return msgspec.Raw(_ENCODE.encode(dict(mapping)))


# --- timestamps -------------------------------------------------------------------------------------------


def set_timestamp(target: timestamp_pb2.Timestamp, value: datetime) -> None:
    delta = value - _EPOCH
    target.seconds = delta.days * 86400 + delta.seconds
    target.nanos = delta.microseconds * 1000


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    set_timestamp(out, value)
    return out


def datetime_from(message: Any, field: str) -> datetime | None:
    """The Timestamp field `field` of `message`, or None when unset. Out-of-range values are a validation
    error (a malformed client must not reach the database with them)."""
    if not message.HasField(field):
        return None
    value = getattr(message, field)
    try:
        out: datetime = value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise ValidationFailed(field, "is out of range", rule="range") from None
    if not 1 <= out.year <= 9999:  # pragma: no cover - ToDatetime already refuses these
        raise ValidationFailed(field, "is out of range", rule="range")
    return out


# --- jobs -------------------------------------------------------------------------------------------------


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def job_from_row(r: Any) -> pb.Job:
    """A full job row (the `get_job` columns) as a Job: null strings are "", null timestamps unset."""
    job = pb.Job(
        id=str(r["id"]),
        organization_id=str(r["organization_id"]),
        queue_name=r["queue_name"],
        status=STATUS.get(r["status"], pb.JOB_STATUS_UNSPECIFIED),
        retry_count=r["retry_count"],
        max_retries=r["max_retries"],
        last_error=_s(r["last_error"]),
        priority=r["priority"],
        timeout_seconds=r["timeout_seconds"] or 0,
        assigned_worker_id=_s(r["assigned_worker_id"]),
        idempotency_key=_s(r["idempotency_key"]),
        lease_id=_s(r["lease_id"]),
    )
    if r["payload"] is not None:
        fill_struct(job.payload, r["payload"])
    if r["result"] is not None:
        fill_struct(job.result, r["result"])
    for name in ("created_at", "scheduled_at", "started_at", "completed_at", "lease_expires_at"):
        value = r[name]
        if value is not None:
            set_timestamp(getattr(job, name), value)
    return job


class ClaimedJobs:
    """Claimed rows as Jobs. The claim statement returns what a worker needs; the rest follows from the claim
    itself: status processing, this worker, and `started_at` = the claim's now() = lease expiry - lease."""

    __slots__ = ("lease_secs", "org_id", "worker_id")

    def __init__(self, org_id: uuid.UUID, worker_id: str, lease_secs: int) -> None:
        self.org_id = str(org_id)
        self.worker_id = worker_id
        self.lease_secs = lease_secs

    def job(self, r: Any) -> pb.Job:
        job = pb.Job(
            id=str(r["id"]),
            organization_id=self.org_id,
            queue_name=r["queue_name"],
            status=pb.JOB_STATUS_PROCESSING,
            retry_count=r["retry_count"],
            max_retries=r["max_retries"],
            priority=r["priority"],
            timeout_seconds=r["timeout_seconds"] or 0,
            assigned_worker_id=self.worker_id,
            lease_id=str(r["lease_id"]),
        )
        if r["payload"] is not None:
            fill_struct(job.payload, r["payload"])
        expires = r["lease_expires_at"]
        set_timestamp(job.lease_expires_at, expires)
        delta = expires - _EPOCH
        job.started_at.seconds = delta.days * 86400 + delta.seconds - self.lease_secs
        job.started_at.nanos = delta.microseconds * 1000
        set_timestamp(job.created_at, r["created_at"])
        return job


def job_from_wire(w: dict[str, Any]) -> pb.Job:
    """A job in its REST shape (`core.jobs.get_job`, timestamps as RFC 3339 strings) as a Job."""
    row = dict(w)
    for name in ("created_at", "scheduled_at", "started_at", "completed_at", "lease_expires_at"):
        value = row.get(name)
        if isinstance(value, str):
            row[name] = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return job_from_row(row)
