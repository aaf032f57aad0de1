"""Cron expressions and their fire times (semantics.md §8).

Syntax is validated here, field by field, to the contract's exact rules. Fire times are computed here too,
not with croniter: croniter moves a time that falls into a spring-forward gap to the end of the gap and fires
twice in a fall-back hour, while the contract skips the gap that day and fires once, at the first occurrence.

Evaluation works on local wall-clock time. A candidate wall time fires at its first occurrence (fold=0); a
wall time inside a gap does not exist and is skipped. Restricted to existing wall times, the fold=0 mapping
to UTC is strictly increasing, so the first matching wall time after the reference instant is the next run.
"""

from __future__ import annotations

import bisect
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache

from .errors import ValidationFailed

HORIZON_DAYS = 5 * 366 + 1  # "no fire time within 5 years" (chosen horizon)

# name, minimum, maximum (day-of-week accepts 7 as Sunday; it is folded to 0 after parsing)
_SECOND = ("second", 0, 59)
_MINUTE = ("minute", 0, 59)
_HOUR = ("hour", 0, 23)
_DOM = ("day-of-month", 1, 31)
_MONTH = ("month", 1, 12)
_DOW = ("day-of-week", 0, 7)

_NUMBER = re.compile(r"^[0-9]+$")
_OFFSET = re.compile(r"^([+-])([0-9]{2}):([0-9]{2})$")


class CronError(ValueError):
    """Why an expression or time zone is rejected (the message names the part at fault)."""


@dataclass(frozen=True)
class CronExpression:
    source: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday
    dom_restricted: bool
    dow_restricted: bool

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days_of_month
        dow = (day.isoweekday() % 7) in self.days_of_week
        if self.dom_restricted and self.dow_restricted:
            return dom or dow  # both restricted: either one is enough (classic cron)
        return dom and dow


def _value(text: str, name: str, lo: int, hi: int) -> int:
    if not _NUMBER.match(text):
        raise CronError(f"{name} field: '{text}' is not a number (names, ?, L, W and # are not supported)")
    value = int(text)
    if not lo <= value <= hi:
        raise CronError(f"{name} field: {value} is out of range {lo}-{hi}")
    return value


def _field(text: str, spec: tuple[str, int, int]) -> set[int]:
    name, lo, hi = spec
    if text == "":
        raise CronError(f"{name} field is empty")
    values: set[int] = set()
    for item in text.split(","):
        if item == "":
            raise CronError(f"{name} field: empty list item in '{text}'")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not _NUMBER.match(step_text):
                raise CronError(f"{name} field: step '{step_text}' is not a number")
            step = int(step_text)
            if not 1 <= step <= hi:
                raise CronError(f"{name} field: step {step} must be between 1 and {hi}")
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, name, lo, hi), _value(last, name, lo, hi)
            if start > end:
                raise CronError(f"{name} field: range {start}-{end} runs backwards")
        else:
            start = _value(base, name, lo, hi)
            # `n/N` means n, n+N, ... up to the field maximum (as in classic cron)
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    return values


@lru_cache(maxsize=1024)
def parse(expression: str) -> CronExpression:
    """Parse 5 fields (`minute hour dom month dow`) or 6 (second first); raises CronError."""
    if not isinstance(expression, str):
        raise CronError("must be a string")
    text = expression.strip()
    if text.startswith("@"):
        raise CronError("macros such as @daily are not supported; use 5 or 6 fields")
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise CronError(f"must have 5 or 6 fields, got {len(fields)}")
    sec, minute, hour, dom, month, dow = fields
    dows = {0 if d == 7 else d for d in _field(dow, _DOW)}
    return CronExpression(
        source=expression,
        seconds=tuple(sorted(_field(sec, _SECOND))),
        minutes=tuple(sorted(_field(minute, _MINUTE))),
        hours=tuple(sorted(_field(hour, _HOUR))),
        days_of_month=frozenset(_field(dom, _DOM)),
        months=frozenset(_field(month, _MONTH)),
        days_of_week=frozenset(dows),
        dom_restricted=dom != "*",
        dow_restricted=dow != "*",
    )


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


@lru_cache(maxsize=512)
def parse_timezone(name: str) -> tzinfo:
    """An IANA zone name or a fixed offset `±HH:MM`; raises CronError."""
    if not isinstance(name, str) or not name:
        raise CronError("must be an IANA time zone name or an offset like +05:30")
    match = _OFFSET.match(name)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3))
        if hours > 23 or minutes > 59:
            raise CronError(f"offset {name} is out of range")
        delta = timedelta(hours=hours, minutes=minutes)
        return timezone(-delta if sign == "-" else delta)
    if name == "UTC":
        return UTC
    if name not in _zone_names():
        raise CronError(f"unknown time zone '{name}'")
    return zoneinfo.ZoneInfo(name)


def _fire_instant(day: date, at: time, zone: tzinfo) -> datetime | None:
    """The UTC instant of a wall time's first occurrence, or None when the wall time does not exist."""
    local = datetime.combine(day, at).replace(tzinfo=zone, fold=0)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None  # inside a spring-forward gap
    return instant


def _times_from(cron: CronExpression, floor: time | None) -> Iterator[time]:
    """The expression's wall times of one day in order; with `floor`, only those strictly after it."""
    hours = cron.hours
    h0 = 0 if floor is None else bisect.bisect_left(hours, floor.hour)
    for hour in hours[h0:]:
        same_hour = floor is not None and hour == floor.hour
        minutes = cron.minutes
        m0 = bisect.bisect_left(minutes, floor.minute) if same_hour and floor is not None else 0
        for minute in minutes[m0:]:
            same_minute = same_hour and floor is not None and minute == floor.minute
            seconds = cron.seconds
            s0 = bisect.bisect_right(seconds, floor.second) if same_minute and floor is not None else 0
            for second in seconds[s0:]:
                yield time(hour, minute, second)


def next_fire(
    cron: CronExpression, zone: tzinfo, after: datetime, *, horizon_days: int = HORIZON_DAYS
) -> datetime | None:
    """The first fire time strictly after `after` (aware), in UTC; None when none is within the horizon."""
    if after.tzinfo is None:
        raise ValueError("`after` must be timezone-aware")
    local_after = after.astimezone(zone)
    # Whole seconds only: a fire time is always on a second boundary.
    floor = local_after.replace(microsecond=0, tzinfo=None)
    day = floor.date()
    last = day + timedelta(days=horizon_days)
    first_day = True
    while day <= last:
        if cron.day_matches(day):
            for at in _times_from(cron, floor.time() if first_day else None):
                instant = _fire_instant(day, at, zone)
                if instant is not None and instant > after:
                    return instant
        day += timedelta(days=1)
        first_day = False
    return None


def next_fires(cron: CronExpression, zone: tzinfo, after: datetime, count: int) -> list[datetime]:
    found: list[datetime] = []
    current = after
    while len(found) < count:
        nxt = next_fire(cron, zone, current)
        if nxt is None:
            break
        found.append(nxt)
        current = nxt
    return found


@dataclass(frozen=True)
class Schedule:
    cron: CronExpression
    zone: tzinfo

    def next_after(self, after: datetime) -> datetime | None:
        return next_fire(self.cron, self.zone, after)


def validated(
    expression: object,
    timezone_name: object,
    now: datetime,
    *,
    cron_field: str = "cron_expression",
    tz_field: str = "timezone",
) -> tuple[Schedule, datetime]:
    """Validate an expression and zone for the API; returns the schedule and its first fire after `now`.

    Raises a 400 VALIDATION_ERROR naming the field at fault.
    """
    if not isinstance(expression, str):
        raise ValidationFailed(cron_field, "must be a string", rule="type")
    try:
        cron = parse(expression)
    except CronError as exc:
        raise ValidationFailed(cron_field, f"invalid cron expression: {exc}", rule="cron") from None
    if not isinstance(timezone_name, str):
        raise ValidationFailed(tz_field, "must be a string", rule="type")
    try:
        zone = parse_timezone(timezone_name)
    except CronError as exc:
        raise ValidationFailed(tz_field, f"invalid time zone: {exc}", rule="timezone") from None
    schedule = Schedule(cron, zone)
    first = schedule.next_after(now)
    if first is None:
        raise ValidationFailed(cron_field, "the expression never fires within 5 years", rule="cron")
    return schedule, first
