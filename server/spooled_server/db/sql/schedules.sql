-- name: insert_schedule
-- Create a schedule.
-- $1 id, $2 org, $3 name, $4 description, $5 cron, $6 timezone, $7 queue, $8 payload_template, $9 priority,
-- $10 max_retries|null, $11 timeout|null, $12 tags, $13 metadata, $14 next_run_at
INSERT INTO schedules (id, organization_id, name, description, cron_expression, timezone, queue_name,
                       payload_template, priority, max_retries, timeout_seconds, tags, metadata, next_run_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
RETURNING id, name, cron_expression, next_run_at

-- name: lock_schedule_quota
-- Serialize the `schedules` cap check of one organization (semantics.md §12).
SELECT pg_advisory_xact_lock(hashtextextended('spooled:quota:schedules:' || $1::uuid::text, 0))

-- name: count_active_schedules
-- Active schedules of an organization (the `schedules` cap).
SELECT count(*) FROM schedules WHERE organization_id = $1 AND is_active

-- name: schedule_queue_known
-- Whether a queue already exists through a config row, a job or an active schedule (no new-queue charge).
SELECT EXISTS (SELECT 1 FROM queue_configs WHERE organization_id = $1 AND queue_name = $2)
    OR EXISTS (SELECT 1 FROM jobs WHERE organization_id = $1 AND queue_name = $2)
    OR EXISTS (SELECT 1 FROM schedules WHERE organization_id = $1 AND queue_name = $2 AND is_active)

-- name: get_schedule
-- One schedule, with max_retries and timeout_seconds as a fire would use them now.
-- $1 id, $2 org, $3 default max_retries, $4 default timeout
SELECT s.*, COALESCE(s.max_retries, c.max_retries, $3::int) AS effective_max_retries,
       COALESCE(s.timeout_seconds, c.default_timeout, $4::int) AS effective_timeout
FROM schedules s
LEFT JOIN queue_configs c ON c.organization_id = s.organization_id AND c.queue_name = s.queue_name
WHERE s.id = $1 AND s.organization_id = $2

-- name: lock_schedule
-- One schedule, locked for an update.
SELECT * FROM schedules WHERE id = $1 AND organization_id = $2 FOR UPDATE

-- name: list_schedules
-- Schedules newest first, optionally of one queue, optionally only active or paused ones.
-- $1 org, $2 queue|null, $3 is_active|null, $4 limit, $5 offset, $6 default max_retries, $7 default timeout
SELECT s.*, COALESCE(s.max_retries, c.max_retries, $6::int) AS effective_max_retries,
       COALESCE(s.timeout_seconds, c.default_timeout, $7::int) AS effective_timeout
FROM schedules s
LEFT JOIN queue_configs c ON c.organization_id = s.organization_id AND c.queue_name = s.queue_name
WHERE s.organization_id = $1 AND ($2::text IS NULL OR s.queue_name = $2) AND ($3::bool IS NULL OR s.is_active = $3)
ORDER BY s.created_at DESC, s.id DESC
LIMIT $4 OFFSET $5

-- name: update_schedule
-- Write every editable field of a schedule (the caller merged the request into the current row).
-- $1 id, $2 org, $3 name, $4 description, $5 cron, $6 timezone, $7 queue, $8 payload_template, $9 priority,
-- $10 max_retries|null, $11 timeout|null, $12 tags, $13 metadata, $14 is_active, $15 next_run_at
UPDATE schedules
SET name = $3, description = $4, cron_expression = $5, timezone = $6, queue_name = $7, payload_template = $8,
    priority = $9, max_retries = $10, timeout_seconds = $11, tags = $12, metadata = $13, is_active = $14,
    next_run_at = $15, updated_at = clock_timestamp()
WHERE id = $1 AND organization_id = $2

-- name: delete_schedule
-- Delete a schedule (its runs go with it); returns its queue for the scope check.
DELETE FROM schedules WHERE id = $1 AND organization_id = $2 RETURNING queue_name

-- name: schedule_history
-- Runs of one schedule, newest first, with the current status of each run's job.
-- $1 schedule id, $2 org, $3 limit
SELECT r.id, r.schedule_id, r.job_id, r.status, r.error_message, r.started_at, r.completed_at,
       j.status AS job_status
FROM schedule_runs r
LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.schedule_id = $1 AND r.organization_id = $2
ORDER BY r.started_at DESC, r.id DESC
LIMIT $3

-- name: next_schedule_due
-- Seconds until the earliest active schedule is due (negative when overdue); null when none is active.
SELECT EXTRACT(EPOCH FROM min(s.next_run_at) - clock_timestamp())::float8
FROM schedules s JOIN organizations o ON o.id = s.organization_id
WHERE s.is_active AND o.plan_tier <> 'deleted'

-- name: due_schedules
-- Active schedules whose next run has come, across organizations, with their organization's plan.
SELECT s.id, s.organization_id, o.plan_tier, o.custom_limits
FROM schedules s JOIN organizations o ON o.id = s.organization_id
WHERE s.is_active AND s.next_run_at <= clock_timestamp() AND o.plan_tier <> 'deleted'
ORDER BY s.next_run_at
LIMIT $1

-- name: lock_due_schedule
-- Take one due schedule for firing; another replica already firing it makes this return nothing, and a
-- schedule already advanced past now no longer qualifies. clock_timestamp() is the moment of the fire.
SELECT s.*, clock_timestamp() AS fired_at
FROM schedules s
WHERE s.id = $1 AND s.organization_id = $2 AND s.is_active AND s.next_run_at <= clock_timestamp()
FOR UPDATE SKIP LOCKED

-- name: record_schedule_fire
-- After a cron fire: the run row, the schedule's counters and its next run, and the schedule.triggered
-- webhook deliveries (committed with the fire, semantics.md §15).
-- $1 schedule id, $2 org, $3 run id, $4 job id|null, $5 run status, $6 error, $7 slot (run time),
-- $8 next_run_at, $9 fired at, $10 manual
WITH run AS (
    INSERT INTO schedule_runs (id, organization_id, schedule_id, job_id, status, error_message, started_at,
                               completed_at)
    VALUES ($3, $2, $1, $4, $5, $6, $7, $9)
    RETURNING id
), upd AS (
    UPDATE schedules
    SET last_run_at = $9, run_count = run_count + 1,
        -- a manual trigger leaves the cron clock alone
        next_run_at = CASE WHEN $10::bool THEN next_run_at ELSE $8 END,
        updated_at = clock_timestamp()
    WHERE id = $1 AND organization_id = $2
    RETURNING id, name, queue_name
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $2, d.webhook_id, d.url, d.secret, 'schedule.triggered',
           spooled_webhook_body(d.id, 'schedule.triggered', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('schedule_id', u.id, 'schedule_name', u.name, 'job_id', $4::uuid,
                                    'queue_name', u.queue_name,
                                    'triggered_at', to_char($9::timestamptz AT TIME ZONE 'UTC',
                                                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                                    'manual', $10::bool) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets($2, 'schedule.triggered', NULL) t
          WHERE $4::uuid IS NOT NULL
          OFFSET 0) d
)
SELECT (SELECT count(*) FROM run) AS runs
