"""When the worker's claim loop asks for more jobs, and how many."""

from __future__ import annotations

from spooled.worker._common import claim_size


def test_an_idle_worker_claims_a_batch_or_its_concurrency() -> None:
    assert claim_size(200, 0, 0, 0, 100) == 100
    assert claim_size(5, 0, 0, 0, 100) == 5


def test_it_waits_for_half_a_batch_of_free_slots_under_load() -> None:
    assert claim_size(200, 150, 150, 0, 100) == 50
    assert claim_size(200, 151, 151, 0, 100) == 0
    assert claim_size(200, 100, 100, 100, 100) == 0  # a claim for the other slots is on the wire


def test_settling_jobs_do_not_hold_slots() -> None:
    # 100 handlers returned and their settlement is on the wire: the next claim travels with it.
    assert claim_size(200, 100, 200, 0, 100) == 100


def test_jobs_waiting_for_settlement_are_capped() -> None:
    # Confirmations lag: no more than one extra concurrency's worth of jobs may be held.
    assert claim_size(200, 0, 350, 0, 100) == 50
    assert claim_size(200, 0, 400, 0, 100) == 0
    assert claim_size(200, 0, 300, 100, 100) == 0
