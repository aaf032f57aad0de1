"""Plans and their limits (semantics.md §12). `None` means unlimited."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

KIB = 1024
MIB = 1024 * 1024
TIERS = ("free", "starter", "pro", "enterprise", "unlimited")
UPGRADE = {"free": "starter", "starter": "pro", "pro": "enterprise", "enterprise": None, "unlimited": None}
DISPLAY = {
    "free": "Free",
    "starter": "Starter",
    "pro": "Pro",
    "enterprise": "Enterprise",
    "unlimited": "Unlimited (self-hosted)",
}


@dataclass(frozen=True)
class PlanLimits:
    tier: str
    display_name: str
    max_jobs_per_day: int | None
    max_active_jobs: int | None
    max_queues: int | None
    max_workers: int | None
    max_api_keys: int | None
    max_schedules: int | None
    max_workflows: int | None
    max_webhooks: int | None
    max_payload_size_bytes: int
    rate_limit_requests_per_second: int
    rate_limit_burst: int
    job_retention_days: int
    history_retention_days: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_BASE = {
    "free": PlanLimits("free", "Free", 1000, 10, 2, 1, 2, 1, 0, 1, 64 * KIB, 5, 10, 3, 1),
    "starter": PlanLimits("starter", "Starter", 10_000, 500, 10, 5, 5, 10, 5, 5, 256 * KIB, 25, 50, 14, 7),
    "pro": PlanLimits("pro", "Pro", 100_000, 5000, 50, 25, 25, 50, 25, 20, MIB, 100, 200, 30, 30),
    "enterprise": PlanLimits("enterprise", "Enterprise", None, None, None, None, None, None, None, None, MIB,
                             500, 1000, 90, 90),
    "unlimited": PlanLimits("unlimited", "Unlimited (self-hosted)", None, None, None, None, None, None, None,
                            None, MIB, 0, 0, 30, 30),
}
_FIELDS = set(PlanLimits.__dataclass_fields__) - {"tier", "display_name"}


def _apply(limits: PlanLimits, overrides: dict[str, Any]) -> PlanLimits:
    clean = {k: v for k, v in overrides.items() if k in _FIELDS}
    return replace(limits, **clean) if clean else limits


class Plans:
    """The plan table after env overrides (`SPOOLED_PLAN_*`)."""

    def __init__(self, env: dict[str, str], retention_job_days: int, retention_history_days: int) -> None:
        table = dict(_BASE)
        table["unlimited"] = replace(table["unlimited"], job_retention_days=retention_job_days,
                                     history_retention_days=retention_history_days)
        global_json = env.get("SPOOLED_PLAN_LIMITS_JSON")
        if global_json:
            for tier, over in json.loads(global_json).items():
                if tier in table:
                    table[tier] = _apply(table[tier], over)
        for tier in TIERS:
            tier_json = env.get(f"SPOOLED_PLAN_{tier.upper()}_LIMITS_JSON")
            if tier_json:
                table[tier] = _apply(table[tier], json.loads(tier_json))
            for name in _FIELDS:
                raw = env.get(f"SPOOLED_PLAN_{tier.upper()}_{name.upper()}")
                if raw is not None:
                    value: int | None = None if raw.strip().lower() in {"", "null", "none"} else int(raw)
                    table[tier] = replace(table[tier], **cast(dict[str, Any], {name: value}))
        self._table = table

    def limits(self, tier: str, custom: dict[str, Any] | None = None) -> PlanLimits:
        base = self._table.get(tier, self._table["free"])
        return _apply(base, custom) if custom else base

    def all(self) -> list[PlanLimits]:
        return [self._table[t] for t in TIERS]


def wire_tier(tier: str) -> str:
    """Tenant routes show `enterprise` for `unlimited` (official SDKs accept only the four tiers)."""
    return "enterprise" if tier == "unlimited" else tier
