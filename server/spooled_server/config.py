"""Every setting of the server in one typed object, read from the environment (names in the contract)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

DEV_JWT_SECRET = "spooled-development-secret-change-me-please-0000"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _str(env: dict[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw if raw not in (None, "") else None


class ConfigError(ValueError):
    """A setting has an invalid value."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("spooled")))
    environment: str = "development"
    host: str = "0.0.0.0"
    port: int = 8080
    grpc_port: int = 50051
    metrics_port: int = 9090
    metrics_token: str | None = None
    redis_url: str | None = None
    realtime_backend: str = "postgres"
    jwt_secret: str = DEV_JWT_SECRET
    jwt_expiration_hours: int = 24
    admin_api_key: str | None = None
    registration_mode: str = "open"
    public_base_url: str | None = None
    default_plan: str = "unlimited"
    retry_backoff_base_secs: int = 60
    retry_backoff_max_secs: int = 3600
    retry_jitter: float = 0.0
    retention_job_days: int = 30
    retention_history_days: int = 30
    queue_default_max_retries: int = 3
    queue_default_timeout_secs: int = 300
    queue_max_payload_size_bytes: int = 1_048_576
    worker_lease_duration_secs: int = 30
    worker_heartbeat_interval_secs: int = 10
    worker_fallback_poll_interval_secs: int = 5
    rate_limit_requests_per_second: int = 100
    rate_limit_burst_size: int = 200
    trusted_client_ip_header: str | None = None
    trusted_proxy_hops: int = 0
    # Admin routes: requests per minute per client IP (contract: 60); 0 turns the limit off.
    admin_rate_limit_per_minute: int = 60
    outgoing_webhook_max_attempts: int = 5
    outgoing_webhook_max_concurrent_deliveries: int = 64
    webhook_allow_private_targets: bool = False
    # Outgoing-delivery retry delay base: min(base x 4^(attempts-1), 3600) s; tests shorten it.
    webhook_backoff_base_secs: float = 30.0
    cors_allowed_origins: tuple[str, ...] = ()
    enable_hsts: bool = False
    grpc_enabled: bool = True
    grpc_tls_enabled: bool = False
    grpc_tls_cert_path: str | None = None
    grpc_tls_key_path: str | None = None
    db_pool_size: int = 20
    workers: int = 1
    log_level: str = "info"
    log_json: bool = True
    # Intervals of the background loops (seconds); tests shorten them.
    activation_interval_secs: float = 5.0
    lease_recovery_interval_secs: float = 10.0
    stale_worker_interval_secs: float = 300.0
    stale_worker_after_secs: int = 120
    plan_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def key_kind(self) -> str:
        return "live" if self.is_production else "test"

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        database_url = _str(e, "DATABASE_URL")
        environment = (_str(e, "SPOOLED_ENV") or ("production" if database_url else "development")).lower()
        if environment not in {"production", "staging", "development"}:
            raise ConfigError("SPOOLED_ENV must be production, staging or development")
        data_dir = Path(_str(e, "SPOOLED_DATA_DIR") or platformdirs.user_data_dir("spooled"))
        jwt_secret = _str(e, "JWT_SECRET") or DEV_JWT_SECRET
        if environment == "production" and (jwt_secret == DEV_JWT_SECRET or len(jwt_secret) < 32):
            raise ConfigError("JWT_SECRET must be set to at least 32 characters in production")
        jwt_hours = _int(e, "JWT_EXPIRATION_HOURS", 24)
        if not 1 <= jwt_hours <= 8760:
            raise ConfigError("JWT_EXPIRATION_HOURS must be 1..8760")
        registration = (_str(e, "REGISTRATION_MODE") or "open").lower()
        if registration not in {"open", "closed", "invite"}:
            raise ConfigError("REGISTRATION_MODE must be open, closed or invite")
        backend = (_str(e, "REALTIME_BACKEND") or "postgres").lower()
        if backend not in {"postgres", "redis"}:
            raise ConfigError("REALTIME_BACKEND must be postgres or redis")
        jitter = _float(e, "SPOOLED_RETRY_JITTER", 0.0)
        if not 0.0 <= jitter <= 1.0:
            raise ConfigError("SPOOLED_RETRY_JITTER must be within 0..1")
        lease = _int(e, "WORKER_LEASE_DURATION_SECS", 30)
        heartbeat = _int(e, "WORKER_HEARTBEAT_INTERVAL_SECS", 10)
        if lease <= heartbeat:
            raise ConfigError("WORKER_LEASE_DURATION_SECS must exceed WORKER_HEARTBEAT_INTERVAL_SECS")
        origins = tuple(o.strip() for o in (_str(e, "CORS_ALLOWED_ORIGINS") or "").split(",") if o.strip())
        plan_overrides = {k: v for k, v in e.items() if k.startswith("SPOOLED_PLAN_")}
        settings = cls(
            database_url=database_url,
            data_dir=data_dir,
            environment=environment,
            host=_str(e, "HOST") or "0.0.0.0",
            port=_int(e, "PORT", 8080),
            grpc_port=_int(e, "GRPC_PORT", 50051),
            metrics_port=_int(e, "METRICS_PORT", 9090),
            metrics_token=_str(e, "METRICS_TOKEN"),
            redis_url=_str(e, "REDIS_URL"),
            realtime_backend=backend,
            jwt_secret=jwt_secret,
            jwt_expiration_hours=jwt_hours,
            admin_api_key=_str(e, "ADMIN_API_KEY"),
            registration_mode=registration,
            public_base_url=_str(e, "PUBLIC_BASE_URL"),
            default_plan=(_str(e, "SPOOLED_DEFAULT_PLAN") or "unlimited").lower(),
            retry_backoff_base_secs=_int(e, "SPOOLED_RETRY_BACKOFF_BASE_SECS", 60),
            retry_backoff_max_secs=_int(e, "SPOOLED_RETRY_BACKOFF_MAX_SECS", 3600),
            retry_jitter=jitter,
            retention_job_days=_int(e, "SPOOLED_RETENTION_JOB_DAYS", 30),
            retention_history_days=_int(e, "SPOOLED_RETENTION_HISTORY_DAYS", 30),
            queue_default_max_retries=_int(e, "QUEUE_DEFAULT_MAX_RETRIES", 3),
            queue_default_timeout_secs=_int(e, "QUEUE_DEFAULT_TIMEOUT_SECS", 300),
            queue_max_payload_size_bytes=_int(e, "QUEUE_MAX_PAYLOAD_SIZE_BYTES", 1_048_576),
            worker_lease_duration_secs=lease,
            worker_heartbeat_interval_secs=heartbeat,
            worker_fallback_poll_interval_secs=_int(e, "WORKER_FALLBACK_POLL_INTERVAL_SECS", 5),
            rate_limit_requests_per_second=_int(e, "RATE_LIMIT_REQUESTS_PER_SECOND", 100),
            rate_limit_burst_size=_int(e, "RATE_LIMIT_BURST_SIZE", 200),
            trusted_client_ip_header=_str(e, "TRUSTED_CLIENT_IP_HEADER"),
            trusted_proxy_hops=_int(e, "TRUSTED_PROXY_HOPS", 0),
            admin_rate_limit_per_minute=_int(e, "SPOOLED_ADMIN_RATE_LIMIT_PER_MINUTE", 60),
            outgoing_webhook_max_attempts=_int(e, "OUTGOING_WEBHOOK_MAX_ATTEMPTS", 5),
            outgoing_webhook_max_concurrent_deliveries=_int(
                e, "OUTGOING_WEBHOOK_MAX_CONCURRENT_DELIVERIES", 64
            ),
            webhook_allow_private_targets=_bool(e, "WEBHOOK_ALLOW_PRIVATE_TARGETS", False),
            webhook_backoff_base_secs=_float(e, "SPOOLED_WEBHOOK_BACKOFF_BASE_SECS", 30.0),
            cors_allowed_origins=origins,
            enable_hsts=_bool(e, "ENABLE_HSTS", False),
            grpc_enabled=_bool(e, "GRPC_ENABLED", True),
            grpc_tls_enabled=_bool(e, "GRPC_TLS_ENABLED", False),
            grpc_tls_cert_path=_str(e, "GRPC_TLS_CERT_PATH"),
            grpc_tls_key_path=_str(e, "GRPC_TLS_KEY_PATH"),
            db_pool_size=_int(e, "SPOOLED_DB_POOL_SIZE", 20),
            workers=_int(e, "SPOOLED_WORKERS", 1),
            log_level=(_str(e, "LOG_LEVEL") or "info").lower(),
            log_json=_bool(e, "SPOOLED_LOG_JSON", True),
            activation_interval_secs=_float(e, "SPOOLED_ACTIVATION_INTERVAL_SECS", 5.0),
            lease_recovery_interval_secs=_float(e, "SPOOLED_LEASE_RECOVERY_INTERVAL_SECS", 10.0),
            stale_worker_interval_secs=_float(e, "SPOOLED_STALE_WORKER_INTERVAL_SECS", 300.0),
            stale_worker_after_secs=_int(e, "SPOOLED_STALE_WORKER_AFTER_SECS", 120),
            plan_overrides=plan_overrides,
        )
        return settings

    def describe(self) -> dict[str, Any]:
        """Settings safe to log (no secrets)."""
        hidden = {"jwt_secret", "admin_api_key", "metrics_token", "database_url", "redis_url"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}
