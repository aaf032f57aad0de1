"""The services every edge shares: one object built by the app's lifespan and handed to REST and gRPC."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Settings
from ..db.database import Database
from ..events.bus import EventBus
from ..events.wakeups import Wakeups
from .auth import Authenticator
from .inserts import JobInserts
from .plans import Plans
from .quotas import Quotas


@dataclass
class Core:
    settings: Settings
    db: Database
    auth: Authenticator
    plans: Plans
    quotas: Quotas
    wakeups: Wakeups
    bus: EventBus
    rate_limits: Any = None  # core.ratelimit.RateLimits
    webhooks: Any = None  # core.webhooks.WebhookDispatcher (outgoing delivery, this replica)
    cache_health: Any = None  # async () -> bool: Redis reachable (events.fanout), read by /health
    inserts: JobInserts = field(init=False)  # single creates, grouped under load

    def __post_init__(self) -> None:
        self.inserts = JobInserts(self.db)
