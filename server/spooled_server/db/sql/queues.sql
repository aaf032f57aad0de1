-- name: list_queues
-- Every queue of the organization (config rows, queues with jobs, targets of active schedules), by name.
-- Queue names of jobs come from a skip scan over jobs_org_status_queue_idx: one index probe per distinct
-- (status, queue) pair instead of reading every job.
-- $1 org, $2 scope regexes|null, $3 limit, $4 offset
WITH RECURSIVE job_queues AS (
    (SELECT status, queue_name FROM jobs WHERE organization_id = $1 ORDER BY status, queue_name LIMIT 1)
    UNION ALL
    SELECT nxt.status, nxt.queue_name
    FROM job_queues p
    CROSS JOIN LATERAL (
        SELECT j.status, j.queue_name FROM jobs j
        WHERE j.organization_id = $1 AND (j.status, j.queue_name) > (p.status, p.queue_name)
        ORDER BY j.status, j.queue_name LIMIT 1
    ) nxt
), names AS (
    SELECT queue_name FROM queue_configs WHERE organization_id = $1
    UNION SELECT queue_name FROM job_queues
    UNION SELECT schedule_queue FROM spooled_active_schedule_queues($1)
)
SELECT n.queue_name, c.id, c.max_retries, c.default_timeout, c.rate_limit, c.enabled,
       c.retry_backoff_base_secs, c.retry_backoff_max_secs
FROM names n
LEFT JOIN queue_configs c ON c.organization_id = $1 AND c.queue_name = n.queue_name
WHERE ($2::text[] IS NULL OR n.queue_name ~ ANY($2::text[]))
ORDER BY n.queue_name
LIMIT $3 OFFSET $4

-- name: count_queues
-- How many distinct queues the organization has (the `queues` cap): config rows, jobs, active schedules.
-- $1 org
WITH RECURSIVE job_queues AS (
    (SELECT status, queue_name FROM jobs WHERE organization_id = $1 ORDER BY status, queue_name LIMIT 1)
    UNION ALL
    SELECT nxt.status, nxt.queue_name
    FROM job_queues p
    CROSS JOIN LATERAL (
        SELECT j.status, j.queue_name FROM jobs j
        WHERE j.organization_id = $1 AND (j.status, j.queue_name) > (p.status, p.queue_name)
        ORDER BY j.status, j.queue_name LIMIT 1
    ) nxt
)
SELECT count(*) FROM (
    SELECT queue_name FROM queue_configs WHERE organization_id = $1
    UNION SELECT queue_name FROM job_queues
    UNION SELECT schedule_queue FROM spooled_active_schedule_queues($1)
) names

-- name: get_queue
-- One queue: its config row if any, and for an implicit queue the creation time of its oldest job and
-- oldest active schedule (all null when the queue does not exist).
-- $1 org, $2 queue
SELECT c.id, c.max_retries, c.default_timeout, c.rate_limit, c.enabled, c.retry_backoff_base_secs,
       c.retry_backoff_max_secs, c.settings, c.created_at, c.updated_at,
       CASE WHEN c.id IS NULL THEN
           (SELECT min(j.created_at) FROM jobs j WHERE j.organization_id = $1 AND j.queue_name = $2)
       END AS first_job_at,
       CASE WHEN c.id IS NULL THEN
           (SELECT s.first_at FROM spooled_active_schedule_queues($1) s WHERE s.schedule_queue = $2)
       END AS first_schedule_at
FROM (SELECT 1) AS one
LEFT JOIN queue_configs c ON c.organization_id = $1 AND c.queue_name = $2

-- name: queue_existence
-- Whether a queue has a config row, and whether it exists without one (jobs or an active schedule).
-- $1 org, $2 queue
SELECT EXISTS (SELECT 1 FROM queue_configs WHERE organization_id = $1 AND queue_name = $2) AS has_config,
       (EXISTS (SELECT 1 FROM jobs WHERE organization_id = $1 AND queue_name = $2)
        OR EXISTS (SELECT 1 FROM spooled_active_schedule_queues($1) WHERE schedule_queue = $2)) AS implicit

-- name: lock_queue_quota
-- Serialize new-queue creation of one organization while the `queues` cap is checked.
SELECT pg_advisory_xact_lock(hashtextextended('spooled:quota:queues:' || $1::uuid::text, 0))

-- name: queue_config_for_update
-- The stored config row of a queue, locked for an update (effective-value checks).
SELECT retry_backoff_base_secs, retry_backoff_max_secs FROM queue_configs
WHERE organization_id = $1 AND queue_name = $2 FOR UPDATE

-- name: upsert_queue_config
-- Create or update a queue's config: given fields replace, omitted (null) fields keep their values, and
-- settings are merged key by key. A new row takes the queue's deterministic id.
-- $1 id, $2 org, $3 queue, $4 max_retries, $5 default_timeout, $6 rate_limit, $7 enabled,
-- $8 backoff base, $9 backoff max, $10 settings patch
INSERT INTO queue_configs AS c (id, organization_id, queue_name, max_retries, default_timeout, rate_limit,
                                enabled, retry_backoff_base_secs, retry_backoff_max_secs, settings)
VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7::bool, true), $8, $9, COALESCE($10::jsonb, '{}'::jsonb))
ON CONFLICT (organization_id, queue_name) DO UPDATE
SET max_retries = COALESCE($4, c.max_retries),
    default_timeout = COALESCE($5, c.default_timeout),
    rate_limit = COALESCE($6, c.rate_limit),
    enabled = COALESCE($7::bool, c.enabled),
    retry_backoff_base_secs = COALESCE($8, c.retry_backoff_base_secs),
    retry_backoff_max_secs = COALESCE($9, c.retry_backoff_max_secs),
    settings = c.settings || COALESCE($10::jsonb, '{}'::jsonb),
    updated_at = now()
RETURNING *

-- name: pause_queue
-- Pause: claims stop (enabled = false) and the pause is recorded in settings. Creates the config row of an
-- implicit queue. Pausing a paused queue keeps the original paused_at and replaces the reason.
-- $1 id, $2 org, $3 queue, $4 reason|null
WITH stamp AS (
    SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at
)
INSERT INTO queue_configs AS c (id, organization_id, queue_name, enabled, settings)
SELECT $1, $2, $3, false,
       jsonb_build_object('paused', true, 'paused_at', stamp.at, 'paused_reason', $4::text)
FROM stamp
ON CONFLICT (organization_id, queue_name) DO UPDATE
SET enabled = false,
    settings = c.settings || jsonb_build_object(
        'paused', true,
        'paused_at', CASE WHEN c.settings -> 'paused' = 'true'::jsonb AND c.settings ? 'paused_at'
                          THEN c.settings -> 'paused_at'
                          ELSE to_jsonb(EXCLUDED.settings ->> 'paused_at') END,
        'paused_reason', $4::text),
    updated_at = now()
RETURNING c.settings ->> 'paused_at' AS paused_at, c.settings ->> 'paused_reason' AS reason

-- name: resume_queue
-- Resume: claims allowed again and the pause keys removed. Returns the old pause state; no row when the
-- queue has no config row.
-- $1 org, $2 queue
WITH old AS (
    SELECT id, settings FROM queue_configs WHERE organization_id = $1 AND queue_name = $2 FOR UPDATE
)
UPDATE queue_configs c
SET enabled = true, settings = c.settings - 'paused' - 'paused_at' - 'paused_reason', updated_at = now()
FROM old
WHERE c.id = old.id
RETURNING COALESCE(old.settings -> 'paused' = 'true'::jsonb, false) AS was_paused,
          old.settings ->> 'paused_at' AS paused_at, now() AS now

-- name: queue_stats
-- Counts and timings of one queue over the last 24 hours; workers count as active while their heartbeat is
-- younger than $3 seconds.
-- $1 org, $2 queue, $3 active-worker window secs
SELECT
    (SELECT count(*) FROM jobs WHERE organization_id = $1 AND status = 'pending' AND queue_name = $2)
        AS pending_jobs,
    (SELECT count(*) FROM jobs WHERE organization_id = $1 AND status = 'processing' AND queue_name = $2)
        AS processing_jobs,
    done.completed_jobs_24h,
    done.avg_processing_time_ms,
    (SELECT count(*) FROM jobs WHERE organization_id = $1 AND status IN ('failed', 'deadletter')
        AND queue_name = $2 AND COALESCE(completed_at, updated_at) > now() - interval '24 hours')
        AS failed_jobs_24h,
    (SELECT floor(extract(epoch FROM now() - min(created_at)))::bigint FROM jobs
        WHERE organization_id = $1 AND status = 'pending' AND queue_name = $2) AS max_job_age_seconds,
    (SELECT count(*) FROM workers WHERE organization_id = $1 AND queue_name = $2 AND status <> 'offline'
        AND last_heartbeat > now() - make_interval(secs => $3)) AS active_workers
FROM (
    SELECT count(*) AS completed_jobs_24h,
           avg(extract(epoch FROM completed_at - started_at) * 1000)::float8 AS avg_processing_time_ms
    FROM jobs
    WHERE organization_id = $1 AND status = 'completed' AND queue_name = $2
      AND completed_at > now() - interval '24 hours'
) done

-- name: queue_job_presence
-- Whether a queue still has active (pending or processing) jobs, and any jobs at all (queue deletion).
SELECT EXISTS (SELECT 1 FROM jobs WHERE organization_id = $1 AND queue_name = $2
                 AND status IN ('pending', 'processing')) AS active,
       EXISTS (SELECT 1 FROM jobs WHERE organization_id = $1 AND queue_name = $2) AS any

-- name: delete_queue_jobs
-- Delete every job of a queue (their DLQ audit rows and dependency edges go with them).
WITH gone AS (
    DELETE FROM jobs WHERE organization_id = $1 AND queue_name = $2 RETURNING id
), audit AS (
    DELETE FROM dlq_entries WHERE organization_id = $1 AND queue_name = $2
)
SELECT count(*) FROM gone

-- name: delete_queue_config
-- Delete a queue's config row; returns whether one existed.
DELETE FROM queue_configs WHERE organization_id = $1 AND queue_name = $2 RETURNING id
