"""Cron parsing and next-run computation (semantics.md §8).

Next runs are property-tested against an independent brute force that walks UTC instants one by one,
converts each to local wall time with zoneinfo and checks the fields arithmetically: it never constructs a
wall time, so gaps are skipped and repeated hours seen twice by construction (it accepts only fold=0).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spooled_server.core import cron
from spooled_server.core.errors import ValidationFailed

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")

# DST transitions (UTC instants) to centre the generated reference times on.
TRANSITIONS = [
    datetime(2024, 3, 10, 7, 0, tzinfo=UTC),  # New York spring forward
    datetime(2024, 11, 3, 6, 0, tzinfo=UTC),  # New York fall back
    datetime(2025, 3, 9, 7, 0, tzinfo=UTC),
    datetime(2025, 11, 2, 6, 0, tzinfo=UTC),
    datetime(2024, 3, 31, 1, 0, tzinfo=UTC),  # Berlin spring forward
    datetime(2024, 10, 27, 1, 0, tzinfo=UTC),  # Berlin fall back
    datetime(2025, 3, 30, 1, 0, tzinfo=UTC),
    datetime(2025, 10, 26, 1, 0, tzinfo=UTC),
]


# --- the independent brute force -------------------------------------------------------------------------


def _item_matches(item: str, value: int, lo: int, hi: int) -> bool:
    base, _, step_text = item.partition("/")
    step = int(step_text) if step_text else 1
    if base == "*":
        start, end = lo, hi
    elif "-" in base:
        start, end = (int(x) for x in base.split("-"))
    else:
        start = int(base)
        end = hi if step_text else start
    return start <= value <= end and (value - start) % step == 0


def _field_matches(text: str, value: int, lo: int, hi: int) -> bool:
    return any(_item_matches(item, value, lo, hi) for item in text.split(","))


def _wall_matches(fields: list[str], wall: datetime) -> bool:
    sec, minute, hour, dom, month, dow = fields
    if not (
        _field_matches(sec, wall.second, 0, 59)
        and _field_matches(minute, wall.minute, 0, 59)
        and _field_matches(hour, wall.hour, 0, 23)
        and _field_matches(month, wall.month, 1, 12)
    ):
        return False
    weekday = wall.isoweekday() % 7
    dom_ok = _field_matches(dom, wall.day, 1, 31)
    dow_ok = _field_matches(dow, weekday, 0, 7) or (weekday == 0 and _field_matches(dow, 7, 0, 7))
    if dom != "*" and dow != "*":
        return dom_ok or dow_ok
    return dom_ok and dow_ok


def brute_next(
    expression: str, zone: timezone | ZoneInfo, after: datetime, window: timedelta
) -> datetime | None:
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    step = timedelta(seconds=1) if fields[0] != "0" else timedelta(minutes=1)
    # First candidate: the next whole step strictly after `after`.
    t = after.replace(microsecond=0)
    if step == timedelta(minutes=1):
        t = t.replace(second=0)
    t += step
    end = after + window
    while t <= end:
        wall = t.astimezone(zone)
        if wall.fold == 0 and _wall_matches(fields, wall):
            return t
        t += step
    return None


# --- strategies ------------------------------------------------------------------------------------------


def _field_strategy(lo: int, hi: int, *, allow_star: bool = True) -> st.SearchStrategy[str]:
    value = st.integers(lo, hi)
    single = value.map(str)
    rng = st.tuples(value, value).map(lambda ab: f"{min(ab)}-{max(ab)}")
    step = st.integers(1, hi)
    star_step = step.map(lambda n: f"*/{n}")
    range_step = st.tuples(value, value, step).map(lambda t: f"{min(t[0], t[1])}-{max(t[0], t[1])}/{t[2]}")
    item = st.one_of(single, rng, star_step, range_step)
    listed = st.lists(item, min_size=1, max_size=3).map(",".join)
    options = [listed]
    if allow_star:
        options.append(st.just("*"))
    return st.one_of(*options)


minute_cron = st.tuples(
    _field_strategy(0, 59),
    _field_strategy(0, 23),
    st.just("*"),
    st.just("*"),
    _field_strategy(0, 7),
).map(" ".join)

# Dense seconds and minutes keep the brute force (one step per second) short.
second_cron = st.tuples(
    _field_strategy(0, 59),
    st.sampled_from(["*", "*/2", "0-29", "15,45", "*/7"]),
    st.sampled_from(["*", "0-3", "1,2,3", "*/2", "2"]),
    st.just("*"),
    st.just("*"),
    st.just("*"),
).map(" ".join)

near_transition = st.builds(
    lambda base, offset_secs, micros: base + timedelta(seconds=offset_secs, microseconds=micros),
    st.sampled_from(TRANSITIONS),
    st.integers(-2 * 86400, 2 * 86400),
    st.integers(0, 999_999),
)
zones = st.sampled_from([NY, BERLIN])

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(expression=minute_cron, zone=zones, after=near_transition)
def test_next_fire_matches_brute_force_minutes(expression: str, zone: ZoneInfo, after: datetime) -> None:
    window = timedelta(days=9)
    expected = brute_next(expression, zone, after, window)
    got = cron.next_fire(cron.parse(expression), zone, after)
    if expected is None:
        assert got is None or got > after + window
    else:
        assert got == expected, (expression, zone, after)


@PROPERTY
@given(expression=second_cron, zone=zones, after=near_transition)
def test_next_fire_matches_brute_force_seconds(expression: str, zone: ZoneInfo, after: datetime) -> None:
    window = timedelta(hours=30)
    expected = brute_next(expression, zone, after, window)
    got = cron.next_fire(cron.parse(expression), zone, after)
    if expected is None:
        assert got is None or got > after + window
    else:
        assert got == expected, (expression, zone, after)


@settings(max_examples=100, deadline=None)
@given(
    dom=_field_strategy(1, 31, allow_star=False),
    dow=_field_strategy(0, 7),
    month=_field_strategy(1, 12),
    zone=zones,
    after=near_transition,
)
def test_day_rules_match_brute_force(dom: str, dow: str, month: str, zone: ZoneInfo, after: datetime) -> None:
    expression = f"15 4 {dom} {month} {dow}"
    parsed = cron.parse(expression)
    got = cron.next_fire(parsed, zone, after)
    # Walk whole days (04:15 exists every day in both zones) instead of minutes: the fire is at 04:15 local.
    day = after.astimezone(zone).date()
    expected = None
    for _ in range(5 * 366 + 2):
        candidate = datetime(day.year, day.month, day.day, 4, 15, tzinfo=zone)
        if candidate.astimezone(UTC) > after and _wall_matches(["0", *expression.split()], candidate):
            expected = candidate.astimezone(UTC)
            break
        day += timedelta(days=1)
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(expression=minute_cron, after=near_transition)
def test_next_runs_are_increasing_and_in_utc(expression: str, after: datetime) -> None:
    runs = cron.next_fires(cron.parse(expression), NY, after, 5)
    assert runs, expression
    assert all(r.tzinfo is UTC for r in runs)
    assert all(a < b for a, b in zip([after, *runs], runs, strict=False))


# --- DST examples named by the contract ------------------------------------------------------------------


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_spring_forward_gap_is_skipped_that_day() -> None:
    c = cron.parse("30 2 * * *")
    runs = cron.next_fires(c, NY, _utc(2025, 3, 8, 12), 3)
    # 2025-03-08 02:30 EST was before; 03-09 02:30 does not exist; then 02:30 EDT on the 10th and 11th.
    assert runs == [_utc(2025, 3, 10, 6, 30), _utc(2025, 3, 11, 6, 30), _utc(2025, 3, 12, 6, 30)]
    b = cron.next_fires(c, BERLIN, _utc(2025, 3, 29, 12), 2)
    assert b == [_utc(2025, 3, 31, 0, 30), _utc(2025, 4, 1, 0, 30)]


def test_fall_back_hour_fires_once_at_first_occurrence() -> None:
    c = cron.parse("30 1 * * *")
    runs = cron.next_fires(c, NY, _utc(2025, 11, 1, 12), 3)
    # 01:30 EDT (05:30 UTC) fires; 01:30 EST (06:30 UTC) does not; then 01:30 EST on the 3rd.
    assert runs == [_utc(2025, 11, 2, 5, 30), _utc(2025, 11, 3, 6, 30), _utc(2025, 11, 4, 6, 30)]
    every_20 = cron.next_fires(cron.parse("*/20 1 * * *"), NY, _utc(2025, 11, 2, 4), 4)
    assert every_20 == [
        _utc(2025, 11, 2, 5, 0),
        _utc(2025, 11, 2, 5, 20),
        _utc(2025, 11, 2, 5, 40),
        _utc(2025, 11, 3, 6, 0),
    ]
    # Starting inside the repeated hour (second occurrence) does not fire the repeated wall times again.
    inside = cron.next_fire(cron.parse("45 1 * * *"), NY, _utc(2025, 11, 2, 6, 30))
    assert inside == _utc(2025, 11, 3, 6, 45)
    b = cron.next_fires(cron.parse("30 2 * * *"), BERLIN, _utc(2025, 10, 25, 12), 2)
    assert b == [_utc(2025, 10, 26, 0, 30), _utc(2025, 10, 27, 1, 30)]


def test_six_fields_put_the_second_first() -> None:
    c = cron.parse("*/15 * * * * *")
    after = _utc(2026, 1, 1, 0, 0, 7) + timedelta(microseconds=5)
    assert cron.next_fires(c, UTC, after, 3) == [
        _utc(2026, 1, 1, 0, 0, 15),
        _utc(2026, 1, 1, 0, 0, 30),
        _utc(2026, 1, 1, 0, 0, 45),
    ]
    assert cron.next_fire(cron.parse("* * * * * *"), UTC, _utc(2026, 1, 1)) == _utc(2026, 1, 1, 0, 0, 1)
    assert cron.next_fire(cron.parse("0 0 * * *"), UTC, _utc(2026, 1, 1)) == _utc(2026, 1, 2)


def test_fixed_offsets_and_utc() -> None:
    zone = cron.parse_timezone("+05:30")
    assert cron.next_fire(cron.parse("0 9 * * *"), zone, _utc(2026, 1, 1)) == _utc(2026, 1, 1, 3, 30)
    zone = cron.parse_timezone("-08:00")
    assert cron.next_fire(cron.parse("0 9 * * *"), zone, _utc(2026, 1, 1)) == _utc(2026, 1, 1, 17)
    assert cron.parse_timezone("UTC") is UTC


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: the 13th OR any Friday.
    runs = cron.next_fires(cron.parse("0 0 13 * 5"), UTC, _utc(2026, 2, 1), 4)
    assert runs == [_utc(2026, 2, 6), _utc(2026, 2, 13), _utc(2026, 2, 20), _utc(2026, 2, 27)]
    # Only day-of-week restricted: Fridays only; 7 is Sunday like 0.
    assert cron.next_fire(cron.parse("0 0 * * 7"), UTC, _utc(2026, 2, 1)) == _utc(2026, 2, 8)
    assert cron.parse("0 0 * * 0").days_of_week == cron.parse("0 0 * * 7").days_of_week


def test_steps_and_ranges() -> None:
    c = cron.parse("0-30/10 8-10/2 * 1,6-7 *")
    assert c.minutes == (0, 10, 20, 30)
    assert c.hours == (8, 10)
    assert c.months == frozenset({1, 6, 7})
    assert cron.parse("5/20 * * * *").minutes == (5, 25, 45)
    assert cron.parse("*/7 * * * *").minutes == (0, 7, 14, 21, 28, 35, 42, 49, 56)


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 * JAN *",
        "0 0 * * MON",
        "0 0 ? * *",
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 5#3",
        "@daily",
        "@hourly",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * 0 *",
        "* * * * 8",
        "*/0 * * * *",
        "*/60 * * * *",
        "* * * * * * *",
        "* * * *",
        "",
        "   ",
        "5-1 * * * *",
        "1,,2 * * * *",
        "a * * * *",
        "-1 * * * *",
        "* * 30 2 *",
        "* * 31 4,6,9,11 *",
        "61 * * * * *",
        "*/ * * * *",
        "1-2-3 * * * *",
        "*/2/3 * * * *",
    ],
)
def test_rejected_expressions(expression: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        cron.validated(expression, "UTC", _utc(2026, 1, 1))
    assert info.value.field == "cron_expression"
    assert info.value.message.startswith("cron_expression: ")


@pytest.mark.parametrize(
    "zone",
    ["Mars/Olympus", "utc", "America", "../etc/passwd", "+24:00", "+05:60", "0530", "+5:30", "", "EST5EDT/x"],
)
def test_rejected_timezones(zone: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        cron.validated("* * * * *", zone, _utc(2026, 1, 1))
    assert info.value.field == "timezone"


def test_accepted_expressions() -> None:
    for expression in [
        "* * * * *",
        "0 0 29 2 *",
        "0 12 * * 1-5",
        " 0  0  1  1  * ",
        "0,30 * * * * *",
        "0 0 * * 0-7",
        "59 23 31 12 *",
    ]:
        schedule, first = cron.validated(expression, "Europe/Berlin", _utc(2026, 1, 1))
        assert first > _utc(2026, 1, 1)
        assert schedule.next_after(first) is not None
