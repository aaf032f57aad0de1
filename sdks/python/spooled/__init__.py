"""Spooled Python SDK: clients, workers, realtime events and gRPC for the Spooled job queue.

from spooled import SpooledClient
client = SpooledClient()  # SPOOLED_API_KEY, SPOOLED_BASE_URL
client.jobs.create(queue_name="emails", payload={"to": "a@example.com"}, idempotency_key="welcome-1")
"""

from ._client import AsyncSpooledClient, SpooledClient
from ._retry import RetryPolicy
from ._version import __version__
from .errors import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    NetworkError,
    NonRetryableError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    ServerError,
    SpooledError,
    TimeoutError,
    ValidationError,
)
from .worker import AsyncJobContext, AsyncSpooledWorker, JobContext, SpooledWorker

__all__ = [
    "AsyncJobContext",
    "AsyncSpooledClient",
    "AsyncSpooledWorker",
    "AuthenticationError",
    "AuthorizationError",
    "ConflictError",
    "JobContext",
    "NetworkError",
    "NonRetryableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "SpooledClient",
    "SpooledError",
    "SpooledWorker",
    "TimeoutError",
    "ValidationError",
    "__version__",
]
