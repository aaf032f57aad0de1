-- name: insert_job
-- Create one job (queue defaults fill unset fields) and its history row; a repeated idempotency key inserts
-- nothing and returns no row (the caller then looks the existing job up).
-- $1 org, $2 queue, $3 id, $4 payload, $5 max_retries|null, $6 priority, $7 timeout|null, $8 tags,
-- $9 scheduled_at, $10 expires_at, $11 parent_job_id, $12 completion_webhook, $13 webhook secret,
-- $14 idempotency_key, $15 dependencies_met, $16 default max_retries, $17 default timeout
WITH cfg AS (
    SELECT max_retries, default_timeout FROM queue_configs WHERE organization_id = $1 AND queue_name = $2
), ins AS (
    INSERT INTO jobs (id, organization_id, queue_name, status, payload, max_retries, priority, timeout_seconds,
                      tags, scheduled_at, expires_at, parent_job_id, completion_webhook,
                      completion_webhook_secret, idempotency_key, dependencies_met)
    VALUES ($3, $1, $2,
            CASE WHEN $9::timestamptz > now() THEN 'scheduled' ELSE 'pending' END,
            $4,
            COALESCE($5::int, (SELECT max_retries FROM cfg), $16::int),
            $6,
            COALESCE($7::int, (SELECT default_timeout FROM cfg), $17::int),
            $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status, priority
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $1, id, 'created', jsonb_build_object('from', NULL, 'to', status) FROM ins
)
SELECT id, status, priority FROM ins

-- name: find_job_by_idempotency_key
-- The existing job of an idempotency key (replays).
SELECT id, status, queue_name FROM jobs WHERE organization_id = $1 AND idempotency_key = $2

-- name: bulk_insert_jobs
-- Create many jobs of one queue in one statement. Rows whose idempotency key already exists are skipped;
-- the caller maps the returned ids back to their indexes.
-- $1 org, $2 queue, $3 ids[], $4 payloads[], $5 priorities[], $6 idempotency keys[], $7 scheduled_at[],
-- $8 max_retries|null, $9 timeout|null, $10 default max_retries, $11 default timeout
WITH cfg AS (
    SELECT max_retries, default_timeout FROM queue_configs WHERE organization_id = $1 AND queue_name = $2
), src AS (
    SELECT * FROM unnest($3::uuid[], $4::jsonb[], $5::int[], $6::text[], $7::timestamptz[])
        AS s(id, payload, priority, idempotency_key, scheduled_at)
), ins AS (
    INSERT INTO jobs (id, organization_id, queue_name, status, payload, max_retries, priority, timeout_seconds,
                      scheduled_at, idempotency_key, dependencies_met)
    SELECT s.id, $1, $2,
           CASE WHEN s.scheduled_at > now() THEN 'scheduled' ELSE 'pending' END,
           s.payload,
           COALESCE($8::int, (SELECT max_retries FROM cfg), $10::int),
           s.priority,
           COALESCE($9::int, (SELECT default_timeout FROM cfg), $11::int),
           s.scheduled_at, s.idempotency_key, true
    FROM src s
    ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $1, id, 'created', jsonb_build_object('from', NULL, 'to', status) FROM ins
)
SELECT id, status FROM ins

-- name: find_jobs_by_idempotency_keys
-- Existing jobs for a set of idempotency keys (bulk replays).
SELECT id, idempotency_key FROM jobs WHERE organization_id = $1 AND idempotency_key = ANY($2::text[])

-- name: claim_jobs
-- Claim up to $3 eligible jobs of one queue: priority, then age, then id; skip rows other claimers hold.
-- Each claimed job gets a fresh lease_id. Returns nothing while the queue is paused or disabled.
-- $1 org, $2 queue, $3 limit, $4 worker_id, $5 lease seconds
WITH picked AS (
    SELECT id, status FROM jobs
    WHERE organization_id = $1 AND queue_name = $2
      AND status IN ('pending', 'scheduled')
      AND (scheduled_at IS NULL OR scheduled_at <= now())
      AND (expires_at IS NULL OR expires_at > now())
      AND dependencies_met IS NOT FALSE
      AND NOT EXISTS (SELECT 1 FROM queue_configs c
                      WHERE c.organization_id = $1 AND c.queue_name = $2 AND NOT c.enabled)
    ORDER BY priority DESC, created_at, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE jobs j
    SET status = 'processing', assigned_worker_id = $4, lease_id = gen_random_uuid(),
        lease_expires_at = now() + make_interval(secs => $5), started_at = now(), updated_at = now(),
        progress = NULL, progress_message = NULL, progress_updated_at = NULL
    FROM picked
    WHERE j.id = picked.id
    RETURNING j.id, j.queue_name, j.payload, j.retry_count, j.max_retries, j.timeout_seconds,
              j.lease_expires_at, j.lease_id, j.priority, j.created_at, j.workflow_id, picked.status AS old_status
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT $1, id, 'claimed', $4,
           jsonb_build_object('from', old_status, 'to', 'processing', 'lease_id', lease_id) FROM upd
)
SELECT * FROM upd ORDER BY priority DESC, created_at, id

-- name: complete_job
-- Complete a job under a valid lease, then release dependents whose dependencies are now met.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 result
WITH upd AS (
    UPDATE jobs
    SET status = 'completed', result = $5, completed_at = now(), updated_at = now(), lease_expires_at = NULL
    WHERE id = $1 AND organization_id = $2 AND status = 'processing'
      AND assigned_worker_id = $3 AND lease_id = $4 AND lease_expires_at > now()
    RETURNING id, queue_name, started_at, completed_at, workflow_id, completion_webhook
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT $2, id, 'completed', $3, jsonb_build_object('from', 'processing', 'to', 'completed') FROM upd
), released AS (
    UPDATE jobs d SET dependencies_met = true, updated_at = now()
    FROM job_dependencies e
    WHERE e.depends_on_job_id IN (SELECT id FROM upd) AND d.id = e.job_id
      AND d.dependencies_met = false AND d.status IN ('pending', 'scheduled')
      AND (d.dependency_mode = 'any'
           OR NOT EXISTS (SELECT 1 FROM job_dependencies e2 JOIN jobs p ON p.id = e2.depends_on_job_id
                          WHERE e2.job_id = d.id AND p.status <> 'completed'
                            AND p.id NOT IN (SELECT id FROM upd)))
    RETURNING d.id, d.queue_name
)
SELECT upd.*, (SELECT array_agg(DISTINCT queue_name) FROM released) AS released_queues FROM upd

-- name: fail_job
-- Fail a job under a valid lease: back to pending after the backoff delay while retries remain (and
-- $6 allows a retry), else dead-letter with an audit row.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 error, $6 retry allowed, $7 default base secs,
-- $8 default cap secs, $9 jitter fraction
WITH cur AS (
    SELECT j.id, j.retry_count, j.max_retries, j.queue_name, j.payload,
           COALESCE(c.retry_backoff_base_secs, $7::int) AS base,
           COALESCE(c.retry_backoff_max_secs, $8::int) AS cap
    FROM jobs j
    LEFT JOIN queue_configs c ON c.organization_id = j.organization_id AND c.queue_name = j.queue_name
    WHERE j.id = $1 AND j.organization_id = $2 AND j.status = 'processing'
      AND j.assigned_worker_id = $3 AND j.lease_id = $4 AND j.lease_expires_at > now()
    FOR UPDATE OF j
), calc AS (
    SELECT id, retry_count, queue_name, payload,
           (retry_count < max_retries AND $6::bool) AS will_retry,
           LEAST(cap::float8, base::float8 * power(2::float8, LEAST(retry_count, 32)::float8)) AS delay
    FROM cur
), upd AS (
    UPDATE jobs j
    SET retry_count = j.retry_count + 1,
        last_error = $5,
        status = CASE WHEN calc.will_retry THEN 'pending' ELSE 'deadletter' END,
        scheduled_at = CASE WHEN calc.will_retry
            THEN now() + make_interval(secs => LEAST(
                    (SELECT cap FROM cur)::float8, calc.delay + random() * $9::float8 * calc.delay))
            ELSE j.scheduled_at END,
        completed_at = CASE WHEN calc.will_retry THEN NULL ELSE now() END,
        lease_expires_at = NULL,
        lease_id = CASE WHEN calc.will_retry THEN NULL ELSE j.lease_id END,
        assigned_worker_id = CASE WHEN calc.will_retry THEN NULL ELSE j.assigned_worker_id END,
        updated_at = now()
    FROM calc
    WHERE j.id = calc.id
    RETURNING j.id, j.queue_name, j.status, j.retry_count, j.scheduled_at, j.workflow_id,
              j.completion_webhook, calc.will_retry
), dlq AS (
    INSERT INTO dlq_entries (organization_id, job_id, queue_name, reason, original_payload, error_details)
    SELECT $2, upd.id, upd.queue_name, 'max_retries_exceeded', calc.payload,
           jsonb_build_object('final_error', $5::text, 'total_retries', upd.retry_count)
    FROM upd JOIN calc ON calc.id = upd.id WHERE NOT upd.will_retry
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT $2, id, CASE WHEN will_retry THEN 'requeued' ELSE 'deadlettered' END, $3,
           jsonb_build_object('from', 'processing', 'to', status, 'error', $5::text) FROM upd
)
SELECT * FROM upd

-- name: heartbeat_job
-- Renew a lease: it now expires at now + $5 seconds.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 lease seconds
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $5), updated_at = now()
WHERE id = $1 AND organization_id = $2 AND status = 'processing'
  AND assigned_worker_id = $3 AND lease_id = $4 AND lease_expires_at > now()
RETURNING lease_expires_at

-- name: progress_job
-- Store progress of the current attempt under a valid lease.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 percent, $6 message
UPDATE jobs SET progress = $5, progress_message = $6, progress_updated_at = now(), updated_at = now()
WHERE id = $1 AND organization_id = $2 AND status = 'processing'
  AND assigned_worker_id = $3 AND lease_id = $4 AND lease_expires_at > now()
RETURNING queue_name

-- name: progress_job_unfenced
-- Store progress for clients that send no worker or lease (accepted while the job is processing).
UPDATE jobs SET progress = $3, progress_message = $4, progress_updated_at = now(), updated_at = now()
WHERE id = $1 AND organization_id = $2 AND status = 'processing'
RETURNING queue_name, assigned_worker_id

-- name: lease_state
-- What a worker call that missed its guard ran into (for the error classification).
SELECT status, queue_name, assigned_worker_id, lease_id, lease_expires_at, lease_expires_at > now() AS lease_live,
       EXISTS (SELECT 1 FROM job_history h WHERE h.job_id = jobs.id AND h.event_type = 'claimed'
               AND h.worker_id = $3 AND h.details ->> 'lease_id' = $4::text) AS held_before
FROM jobs WHERE id = $1 AND organization_id = $2

-- name: get_job
-- One job, every column the API shows.
SELECT id, organization_id, queue_name, status, payload, result, retry_count, max_retries, priority,
       timeout_seconds, last_error, tags, created_at, updated_at, scheduled_at, started_at, completed_at,
       expires_at, lease_expires_at, parent_job_id, completion_webhook, assigned_worker_id, lease_id,
       idempotency_key, workflow_id, dependency_mode, dependencies_met, progress, progress_message,
       progress_updated_at
FROM jobs WHERE id = $1 AND organization_id = $2

-- name: cancel_job
-- Cancel a pending or scheduled job.
WITH upd AS (
    UPDATE jobs j SET status = 'cancelled', completed_at = now(), updated_at = now()
    FROM (SELECT id, status FROM jobs WHERE id = $1 AND organization_id = $2
          AND status IN ('pending', 'scheduled') FOR UPDATE) old
    WHERE j.id = old.id
    RETURNING j.id, j.queue_name, old.status AS old_status, j.workflow_id
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $2, id, 'cancelled', jsonb_build_object('from', old_status, 'to', 'cancelled') FROM upd
)
SELECT * FROM upd

-- name: retry_jobs
-- Put failed or dead-lettered jobs back to pending with a fresh retry budget; drop their DLQ audit rows.
-- $1 org, $2 ids[]
WITH old AS (
    SELECT id, status FROM jobs WHERE organization_id = $1 AND id = ANY($2::uuid[])
      AND status IN ('failed', 'deadletter') FOR UPDATE
), upd AS (
    UPDATE jobs j SET status = 'pending', retry_count = 0, last_error = NULL, scheduled_at = NULL,
                      completed_at = NULL, lease_id = NULL, lease_expires_at = NULL,
                      assigned_worker_id = NULL, updated_at = now()
    FROM old WHERE j.id = old.id
    RETURNING j.id, j.queue_name, old.status AS old_status, j.workflow_id
), dlq AS (
    DELETE FROM dlq_entries WHERE job_id IN (SELECT id FROM upd)
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $1, id, 'retried', jsonb_build_object('from', old_status, 'to', 'pending', 'manual', true) FROM upd
)
SELECT * FROM upd

-- name: regate_dependents
-- After a retry, dependents that were released by (or cancelled because of) these jobs wait again.
UPDATE jobs d SET dependencies_met = false, updated_at = now()
FROM job_dependencies e
WHERE e.depends_on_job_id = ANY($2::uuid[]) AND d.id = e.job_id AND d.organization_id = $1
  AND d.status IN ('pending', 'scheduled') AND d.dependency_mode = 'all'

-- name: set_priority
-- Change the priority of a pending or scheduled job; returns the old and new values.
WITH old AS (
    SELECT id, priority FROM jobs WHERE id = $1 AND organization_id = $2
      AND status IN ('pending', 'scheduled') FOR UPDATE
)
UPDATE jobs j SET priority = $3, updated_at = now() FROM old WHERE j.id = old.id
RETURNING j.id, old.priority AS old_priority, j.priority AS new_priority, j.queue_name

-- name: job_stats
-- Counts by status for the organization, optionally one queue, optionally within the key's queues.
SELECT status, count(*) AS n FROM jobs
WHERE organization_id = $1 AND ($2::text IS NULL OR queue_name = $2)
  AND ($3::text[] IS NULL OR queue_name = ANY($3))
GROUP BY status

-- name: jobs_batch_status
-- Status of up to 100 jobs by id.
SELECT id, status, queue_name, retry_count, created_at, completed_at FROM jobs
WHERE organization_id = $1 AND id = ANY($2::uuid[])

-- name: job_history
-- History rows of one job, in either order.
SELECT id, job_id, event_type, worker_id, details, created_at FROM job_history
WHERE job_id = $1 AND organization_id = $2
ORDER BY CASE WHEN $3 THEN id END ASC, CASE WHEN NOT $3 THEN id END DESC
LIMIT $4 OFFSET $5

-- name: release_worker_jobs
-- Give a worker's processing jobs back to pending without using a retry (deregister, broken stream).
-- $1 org, $2 worker_id, $3 ids[] or null for all of the worker's jobs
WITH upd AS (
    UPDATE jobs SET status = 'pending', lease_id = NULL, lease_expires_at = NULL, assigned_worker_id = NULL,
                    updated_at = now()
    WHERE organization_id = $1 AND status = 'processing' AND assigned_worker_id = $2
      AND ($3::uuid[] IS NULL OR id = ANY($3))
    RETURNING id, queue_name
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT $1, id, 'requeued', $2, jsonb_build_object('from', 'processing', 'to', 'pending',
                                                      'reason', 'released') FROM upd
)
SELECT * FROM upd
