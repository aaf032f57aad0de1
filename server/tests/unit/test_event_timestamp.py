"""Event timestamps: RFC 3339 UTC with microseconds and `Z`, with the date part cached per second."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest

from spooled_server.events import bus

FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


@pytest.mark.parametrize("ns", [
    1_790_000_000_000_000_000,  # 2026-09-21T...
    1_790_000_000_999_999_000,  # the last microsecond of that second
    1_790_000_001_000_000_000,  # the next second: the cached text must change
    1_798_761_599_999_999_000,  # 2026-12-31T23:59:59.999999Z, a year boundary next
    1_798_761_600_000_000_000,
])
def test_matches_datetime_across_second_boundaries(monkeypatch: pytest.MonkeyPatch, ns: int) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: ns)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    expected = (epoch + timedelta(microseconds=ns // 1000)).isoformat(timespec="microseconds")
    assert bus.now_iso() == expected.replace("+00:00", "Z")


def test_real_clock() -> None:
    before = datetime.now(UTC)
    stamp = bus.now_iso()
    after = datetime.now(UTC)
    assert FORMAT.match(stamp), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before <= parsed <= after
