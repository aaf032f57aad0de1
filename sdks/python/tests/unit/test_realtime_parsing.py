"""SSE framing and event naming (the wire side is covered by the integration tests)."""

from __future__ import annotations

from spooled.realtime import RealtimeEvent, Subscription, _SseParser


def test_sse_parser_reads_named_events_ids_and_skips_comments() -> None:
    parser = _SseParser()
    lines = [
        ": connected",
        "",
        "event: job.created",
        "id: 7",
        'data: {"type":"JobCreated","data":{"job_id":"j","queue_name":"q"},"timestamp":"t"}',
        "",
    ]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert len(events) == 1
    event = events[0]
    assert (event.name, event.type, event.data["job_id"], event.id) == ("job.created", "JobCreated", "j", "7")
    assert parser.last_id == "7"


def test_message_format_frames_are_named_from_the_envelope_type() -> None:
    parser = _SseParser()
    assert parser.feed('data: {"type":"JobStatusChange","data":{}}') is None
    event = parser.feed("")
    assert event is not None and event.name == "job.status"


def test_unknown_types_pass_through() -> None:
    event = RealtimeEvent.from_envelope({"type": "SomethingNew", "data": {"x": 1}})
    assert event.name == "SomethingNew" and event.data == {"x": 1}


def test_subscription_query_and_ws_filter() -> None:
    sub = Subscription(queue_name="orders", events=("job.created",))
    assert sub.query() == {"queue": "orders", "events": "job.created"}
    assert sub.ws_filter() == {"queue_name": "orders", "events": ["job.created"]}
