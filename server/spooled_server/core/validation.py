"""Field rules shared by REST and gRPC (contract rest.md, "Shared field rules")."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from .errors import ValidationFailed

_QUEUE_NAME = re.compile(r"^[^\W_.\-][\w.\-]*$|^_[\w.\-]*$", re.UNICODE)
WORKER_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?$")
TAG_FILTER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def queue_name(value: Any, field: str = "queue_name", *, max_len: int = 100) -> str:
    """1..max_len characters: Unicode letters and digits, `-`, `_`, `.`; not starting with `.` or `-`."""
    if not isinstance(value, str) or not value:
        raise ValidationFailed(field, "must be a non-empty string", rule="required")
    if len(value) > max_len:
        raise ValidationFailed(field, f"must be at most {max_len} characters", rule="length")
    if value[0] in ".-" or not all(ch.isalnum() or ch in "-_." for ch in value):
        raise ValidationFailed(
            field, "may contain only letters, digits, '-', '_' and '.', and must not start with '.' or '-'",
            rule="pattern",
        )
    return value


def int_range(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(field, "must be an integer", rule="type")
    if not lo <= value <= hi:
        raise ValidationFailed(field, f"must be between {lo} and {hi}", rule="range")
    return value


def opt_int_range(value: Any, field: str, lo: int, hi: int) -> int | None:
    return None if value is None else int_range(value, field, lo, hi)


def number_range(value: Any, field: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationFailed(field, "must be a number", rule="type")
    if not lo <= float(value) <= hi:
        raise ValidationFailed(field, f"must be between {lo:g} and {hi:g}", rule="range")
    return float(value)


def text(value: Any, field: str, lo: int, hi: int, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(field, "must be a string", rule="type")
    if not lo <= len(value) <= hi:
        raise ValidationFailed(field, f"must be {lo}..{hi} characters", rule="length")
    if pattern is not None and not pattern.match(value):
        raise ValidationFailed(field, "has an invalid format", rule="pattern")
    return value


def opt_text(value: Any, field: str, lo: int, hi: int, pattern: re.Pattern[str] | None = None) -> str | None:
    return None if value is None else text(value, field, lo, hi, pattern)


def parse_uuid(value: Any, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise ValidationFailed(field, "must be a UUID", rule="format") from None


def try_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None


def timestamp(value: Any, field: str) -> datetime:
    """RFC 3339; a value without an offset is read as UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        raw = value.strip()
        if raw.endswith(("Z", "z")):
            raw = raw[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise ValidationFailed(field, "must be an RFC 3339 timestamp", rule="format") from None
    else:
        raise ValidationFailed(field, "must be an RFC 3339 timestamp", rule="type")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def opt_timestamp(value: Any, field: str) -> datetime | None:
    return None if value is None else timestamp(value, field)


def http_url(value: Any, field: str, max_len: int = 2048) -> str:
    from urllib.parse import urlsplit

    text(value, field, 1, max_len)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationFailed(field, "must be an http or https URL", rule="format")
    return str(value)
