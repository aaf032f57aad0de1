"""Prometheus metrics with the contract's names (semantics.md §17). No labels, as existing
dashboards expect."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

JOBS_ENQUEUED = Counter("spooled_jobs_enqueued", "Jobs created", registry=REGISTRY)
JOBS_COMPLETED = Counter("spooled_jobs_completed", "Job completions", registry=REGISTRY)
JOBS_FAILED = Counter("spooled_jobs_failed", "Failure reports, lease and stale requeues", registry=REGISTRY)
JOBS_RETRIED = Counter("spooled_jobs_retried", "Requeues that consumed a retry", registry=REGISTRY)
JOBS_DEADLETTERED = Counter("spooled_jobs_deadlettered", "Transitions into deadletter", registry=REGISTRY)
JOBS_PENDING = Gauge("spooled_jobs_pending", "Pending jobs, all organizations", registry=REGISTRY)
JOBS_PROCESSING = Gauge("spooled_jobs_processing", "Processing jobs, all organizations", registry=REGISTRY)
JOB_MAX_AGE = Gauge(
    "spooled_job_max_age_seconds", "Age of the oldest pending or scheduled job", registry=REGISTRY
)
WORKERS_ACTIVE = Gauge("spooled_workers_active", "Workers with a heartbeat under 2 min", registry=REGISTRY)
WORKERS_HEALTHY = Gauge("spooled_workers_healthy", "Workers with status healthy", registry=REGISTRY)
DB_CONNECTIONS = Gauge("spooled_database_connections_active", "Pool connections in use", registry=REGISTRY)
JOB_DURATION = Histogram(
    "spooled_job_duration_seconds", "completed_at - started_at", registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JOB_INSERT_GROUP_SIZE = Histogram(
    "spooled_job_insert_group_size", "Jobs per grouped insert of single creates (core/inserts.py)",
    registry=REGISTRY, buckets=(2, 5, 10, 25, 50, 100),
)
API_DURATION = Histogram(
    "spooled_api_request_duration_seconds", "REST request latency", registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
API_REQUESTS = Counter("spooled_api_requests", "REST requests", registry=REGISTRY)
# Beside the contract's label-free series: the same latency split by route template and status, for
# finding which route is slow. Route templates (not raw paths) keep the label set small.
API_ROUTE_DURATION = Histogram(
    "spooled_api_route_request_duration_seconds", "REST request latency by method, route and status",
    ["method", "route", "status"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REDIS_OPERATIONS = Counter("spooled_redis_operations", "Redis commands", registry=REGISTRY)
