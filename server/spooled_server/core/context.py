"""The services every edge shares: one object built by the app's lifespan and handed to REST and gRPC."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..db.database import Database
from ..events.bus import EventBus
from ..events.wakeups import Wakeups
from .auth import Authenticator
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
