"""Workers: claim jobs from a queue, run your handler, report the outcome."""

from ._async import AsyncJobContext, AsyncSpooledWorker
from ._common import EVENTS, ClaimedJob
from ._sync import JobContext, SpooledWorker

__all__ = ["EVENTS", "AsyncJobContext", "AsyncSpooledWorker", "ClaimedJob", "JobContext", "SpooledWorker"]
