"""Client defaults and the retry policy's constants, in one place.

Retries are only for requests that are safe to repeat: GET/PUT/DELETE (idempotent by HTTP semantics and
by the contract), POSTs that carry an ``idempotency_key`` (the server collapses replays), and any request
answered 429 with a ``Retry-After`` (the server did not act on it). A POST without a key is never retried
after it may have reached the server, because the retry could create a second job.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "http://localhost:8080"
DEFAULT_GRPC_ADDRESS = "localhost:50051"

ENV_API_KEY = "SPOOLED_API_KEY"
ENV_BASE_URL = "SPOOLED_BASE_URL"
ENV_GRPC_ADDRESS = "SPOOLED_GRPC_ADDRESS"
ENV_ADMIN_KEY = "SPOOLED_ADMIN_KEY"

# Whole-request timeout in seconds. The server cuts handlers at 30 s (408), so a little more than that.
DEFAULT_TIMEOUT = 35.0
DEFAULT_CONNECT_TIMEOUT = 5.0

# Retry policy: attempts after the first, then exponential backoff with full jitter, capped.
DEFAULT_MAX_RETRIES = 3
DEFAULT_INITIAL_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 8.0
BACKOFF_MULTIPLIER = 2.0
# A Retry-After longer than this is not waited out; the RateLimitError is raised instead.
DEFAULT_MAX_RETRY_AFTER = 60.0

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})

# Worker defaults (REST lease default is 30 s; the worker renews at about half the lease).
DEFAULT_WORKER_LEASE_SECS = 30
DEFAULT_GRPC_LEASE_SECS = 60
DEFAULT_CLAIM_WAIT_SECS = 5.0
MAX_CLAIM_WAIT_SECS = 25.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

# Realtime reconnects.
REALTIME_INITIAL_BACKOFF = 0.5
REALTIME_MAX_BACKOFF = 30.0
