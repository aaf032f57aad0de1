"""EventBus.wanted: hot paths skip building per-job events only when nobody would read them."""

from __future__ import annotations

import uuid
from typing import Any

from spooled_server.events.bus import Event, EventBus
from spooled_server.events.fanout import Fanout

ORG = uuid.uuid4()
OTHER = uuid.uuid4()


class RemoteInterest(Fanout):
    def __init__(self, bus: EventBus, orgs: set[str]) -> None:
        super().__init__(bus)
        self.orgs = orgs

    def wanted(self, org_id: str) -> bool:
        return org_id in self.orgs


def test_nobody_listening() -> None:
    bus = EventBus()
    assert not bus.wanted(ORG, "JobCreated")
    bus.fanout = Fanout(bus)  # single replica, in-process only
    assert not bus.wanted(ORG, "JobCreated")


def test_subscriber_interest_decides_per_org_and_type() -> None:
    bus = EventBus()
    seen: list[tuple[str, str]] = []

    def on_event(org: str, event_type: str, data: dict[str, Any]) -> None:
        seen.append((org, event_type))

    unsubscribe = bus.subscribe(on_event, lambda org, event_type: org == str(ORG) or event_type == "JobFailed")
    assert bus.wanted(ORG, "JobCreated")
    assert not bus.wanted(OTHER, "JobCreated")
    assert bus.wanted(OTHER, "JobFailed")
    bus.publish(ORG, "JobCreated", {"job_id": "j"})
    assert seen == [(str(ORG), "JobCreated")]
    unsubscribe()
    assert not bus.wanted(ORG, "JobCreated")

    bus.subscribe(on_event)  # no wants: every event
    assert bus.wanted(OTHER, "JobStatusChange")


def test_local_listeners_and_other_replicas() -> None:
    bus = EventBus()
    received: list[Event] = []
    stop = bus.listen(received.append, lambda org: org == str(ORG))
    assert bus.wanted(ORG, "JobCompleted")
    assert not bus.wanted(OTHER, "JobCompleted")
    bus.publish(ORG, "JobCompleted", {"job_id": "j"})
    assert [e.org_id for e in received] == [str(ORG)]
    stop()
    assert not bus.wanted(ORG, "JobCompleted")

    bus.fanout = RemoteInterest(bus, {str(OTHER)})
    assert bus.wanted(OTHER, "JobCompleted")
    assert not bus.wanted(ORG, "JobCompleted")
