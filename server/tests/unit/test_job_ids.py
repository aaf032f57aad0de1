"""Job ids drawn in batches (core/jobs.py `new_job_ids`) are ordinary random UUIDs."""

from __future__ import annotations

import uuid

from spooled_server.core.inserts import nulls_as_none
from spooled_server.core.jobs import new_job_ids


def test_ids_are_distinct_version_4_uuids() -> None:
    ids = new_job_ids(2000)
    assert len(set(ids)) == 2000
    for job_id in ids:
        assert isinstance(job_id, uuid.UUID)
        assert job_id.version == 4 and job_id.variant == uuid.RFC_4122
        assert uuid.UUID(str(job_id)) == job_id
    assert new_job_ids(0) == []


def test_a_column_with_no_value_is_sent_as_null() -> None:
    assert nulls_as_none([None, None]) is None
    assert nulls_as_none([None, 0]) == [None, 0]
    assert nulls_as_none([]) is None
