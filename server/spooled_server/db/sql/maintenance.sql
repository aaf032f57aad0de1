-- name: activate_scheduled
-- Move due scheduled jobs to pending (transition 3), with history rows.
WITH upd AS (
    UPDATE jobs SET status = 'pending', updated_at = now()
    WHERE id IN (SELECT id FROM jobs WHERE status = 'scheduled' AND scheduled_at <= now()
                 ORDER BY scheduled_at LIMIT 5000 FOR UPDATE SKIP LOCKED)
    RETURNING id, organization_id, queue_name
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT organization_id, id, 'activated', jsonb_build_object('from', 'scheduled', 'to', 'pending') FROM upd
)
SELECT id, organization_id, queue_name FROM upd

-- name: newly_due_queues
-- Queues with pending jobs whose delay (retry backoff or scheduled_at) ran out since the last tick.
SELECT DISTINCT organization_id, queue_name FROM jobs
WHERE status = 'pending' AND scheduled_at > $1 AND scheduled_at <= now()

-- name: recover_expired_leases
-- Requeue (no backoff delay) or dead-letter every processing job whose lease expired (transition 8/9).
-- $1 error text, $2 worker ids[] or null (stale-worker recovery), $3 require an expired lease,
-- $4 each worker's organization[] (parallel to $2: a worker id means nothing outside its organization)
WITH cur AS (
    SELECT id, retry_count, max_retries, payload, assigned_worker_id FROM jobs
    WHERE status = 'processing'
      AND (NOT $3::bool OR lease_expires_at <= now())
      AND ($2::text[] IS NULL
           OR (organization_id, assigned_worker_id) IN (SELECT * FROM unnest($4::uuid[], $2::text[])))
    ORDER BY lease_expires_at LIMIT 5000
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE jobs j
    SET retry_count = j.retry_count + 1,
        last_error = $1,
        status = CASE WHEN cur.retry_count < cur.max_retries THEN 'pending' ELSE 'deadletter' END,
        completed_at = CASE WHEN cur.retry_count < cur.max_retries THEN NULL ELSE now() END,
        scheduled_at = CASE WHEN cur.retry_count < cur.max_retries THEN NULL ELSE j.scheduled_at END,
        lease_expires_at = NULL,
        lease_id = CASE WHEN cur.retry_count < cur.max_retries THEN NULL ELSE j.lease_id END,
        assigned_worker_id = CASE WHEN cur.retry_count < cur.max_retries THEN NULL ELSE j.assigned_worker_id END,
        updated_at = now()
    FROM cur
    WHERE j.id = cur.id
    RETURNING j.id, j.organization_id, j.queue_name, j.status, j.retry_count, j.workflow_id,
              j.completion_webhook, cur.assigned_worker_id AS worker_id, cur.payload,
              (j.status = 'pending') AS will_retry
), dlq AS (
    INSERT INTO dlq_entries (organization_id, job_id, queue_name, reason, original_payload, error_details)
    SELECT organization_id, id, queue_name, 'lease_expired', payload,
           jsonb_build_object('final_error', $1::text, 'total_retries', retry_count)
    FROM upd WHERE NOT will_retry
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT organization_id, id, CASE WHEN will_retry THEN 'requeued' ELSE 'deadlettered' END, worker_id,
           jsonb_build_object('from', 'processing', 'to', status, 'error', $1::text) FROM upd
), outbox AS (
    -- Webhook deliveries as for a worker's fail (fail_job in jobs.sql), committed with the requeue.
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, d.organization_id, d.webhook_id, d.url, d.secret, d.event,
           spooled_webhook_body(d.id, d.event, d.data)
    FROM (SELECT gen_random_uuid() AS id, u.organization_id, t.webhook_id, t.url, t.secret, e.event, e.data
          FROM upd u
          CROSS JOIN LATERAL (VALUES
              ('job.retried', u.will_retry, false,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'pending',
                                  'retry_count', u.retry_count, 'manual', false)),
              ('job.failed', NOT u.will_retry, true,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'deadletter',
                                  'error', $1::text)),
              ('job.deadlettered', NOT u.will_retry, false,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'deadletter',
                                  'error', $1::text, 'retry_count', u.retry_count))
          ) e(event, fires, callback, data)
          CROSS JOIN LATERAL spooled_webhook_targets(
              u.organization_id, e.event,
              CASE WHEN e.callback AND u.completion_webhook IS NOT NULL THEN u.id END) t
          WHERE e.fires
          OFFSET 0) d
)
SELECT id, organization_id, queue_name, status, retry_count, will_retry, workflow_id, completion_webhook FROM upd

-- name: mark_stale_workers
-- Workers without a heartbeat for $1 seconds go offline.
UPDATE workers SET status = 'offline', updated_at = now()
WHERE status <> 'offline' AND last_heartbeat < now() - make_interval(secs => $1)
RETURNING id, organization_id

-- name: delete_finished_jobs
-- Retention: completed and cancelled jobs older than their organization's job retention (0 = forever).
-- $1 tiers[], $2 days[] (the plan table), $3 batch size
WITH plan AS (
    SELECT * FROM unnest($1::text[], $2::int[]) AS p(tier, days)
), victims AS (
    SELECT j.id FROM jobs j
    JOIN organizations o ON o.id = j.organization_id
    JOIN plan p ON p.tier = o.plan_tier
    WHERE j.status IN ('completed', 'cancelled') AND p.days > 0
      AND j.completed_at < now() - make_interval(days => p.days)
    LIMIT $3
)
DELETE FROM jobs WHERE id IN (SELECT id FROM victims)

-- name: delete_old_history
-- Retention: history rows, offline workers and expired revoked logins.
WITH plan AS (
    SELECT * FROM unnest($1::text[], $2::int[]) AS p(tier, days)
), h AS (
    DELETE FROM job_history h USING organizations o, plan p
    WHERE o.id = h.organization_id AND p.tier = o.plan_tier AND p.days > 0
      AND h.created_at < now() - make_interval(days => p.days)
    RETURNING 1
), w AS (
    DELETE FROM workers w USING organizations o, plan p
    WHERE o.id = w.organization_id AND p.tier = o.plan_tier AND p.days > 0 AND w.status = 'offline'
      AND w.updated_at < now() - make_interval(days => p.days)
    RETURNING 1
), r AS (
    DELETE FROM revoked_sessions WHERE expires_at < now() RETURNING 1
)
SELECT (SELECT count(*) FROM h) + (SELECT count(*) FROM w) + (SELECT count(*) FROM r)

-- name: gauge_counts
-- Cheap gauges: status counts from the planner-friendly partial indexes.
SELECT
    (SELECT count(*) FROM jobs WHERE status IN ('pending', 'scheduled')) AS pending,
    (SELECT count(*) FROM jobs WHERE status = 'processing') AS processing,
    (SELECT EXTRACT(EPOCH FROM now() - min(created_at)) FROM jobs WHERE status IN ('pending', 'scheduled')) AS max_age,
    (SELECT count(*) FROM workers WHERE last_heartbeat > now() - interval '2 minutes' AND status <> 'offline')
        AS workers_active,
    (SELECT count(*) FROM workers WHERE status = 'healthy') AS workers_healthy
