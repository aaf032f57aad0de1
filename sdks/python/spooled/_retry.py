"""Which failures are retried, and how long to wait between attempts (constants in ``_constants``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import _constants as c
from .errors import NetworkError, RateLimitError, SpooledError, TimeoutError


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` attempts after the first; backoff ``initial * multiplier**n`` with full jitter,
    capped at ``max_backoff``. ``max_retries=0`` turns retries off."""

    max_retries: int = c.DEFAULT_MAX_RETRIES
    initial_backoff: float = c.DEFAULT_INITIAL_BACKOFF
    max_backoff: float = c.DEFAULT_MAX_BACKOFF
    max_retry_after: float = c.DEFAULT_MAX_RETRY_AFTER

    def backoff(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (0-based), full jitter: uniform(0, capped exponential)."""
        ceiling = min(self.max_backoff, self.initial_backoff * (c.BACKOFF_MULTIPLIER**retry_number))
        return random.uniform(0.0, ceiling)

    def delay_for(self, error: SpooledError, retry_number: int, *, safe: bool) -> float | None:
        """Seconds to wait before retrying after ``error``, or None when it must not be retried."""
        if retry_number >= self.max_retries:
            return None
        if isinstance(error, RateLimitError):
            if error.is_quota:
                return None  # a quota does not refill on its own within a retry window
            if error.retry_after is not None:
                # The server rejected the request before acting on it, so even an unkeyed POST is safe.
                if error.retry_after > self.max_retry_after:
                    return None
                return error.retry_after + random.uniform(0.0, 0.1)
            return self.backoff(retry_number) if safe else None
        if not safe:
            return None
        if isinstance(error, NetworkError | TimeoutError):
            return self.backoff(retry_number)
        if error.status_code is not None and error.status_code in c.RETRYABLE_STATUS:
            return self.backoff(retry_number)
        return None


def is_safe(method: str, *, has_idempotency_key: bool) -> bool:
    return method.upper() in c.SAFE_METHODS or has_idempotency_key
