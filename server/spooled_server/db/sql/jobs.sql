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
), outbox AS (
    -- Webhook deliveries commit with the job (semantics.md §15); OFFSET 0 keeps each generated id single.
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $1, d.webhook_id, d.url, d.secret, 'job.created', spooled_webhook_body(d.id, 'job.created', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', i.id, 'queue_name', $2::text, 'priority', i.priority,
                                    'status', i.status, 'workflow_id', NULL) AS data
          FROM ins i CROSS JOIN LATERAL spooled_webhook_targets($1, 'job.created', NULL) t
          OFFSET 0) d
)
SELECT id, status, priority FROM ins

-- name: insert_jobs
-- Create many jobs of one queue in one statement, in order: bulk creates, and single creates grouped under
-- load (core/inserts.py). An element whose idempotency key exists (or repeats an earlier element's) inserts
-- nothing and returns no row; the caller maps the returned ids back.
-- $1 org, $2 queue, $3 ids[], $4 payloads[], $5 max_retries[], $6 priorities[], $7 timeouts[], $8 tags[],
-- $9 scheduled_at[], $10 expires_at[], $11 completion webhooks[], $12 webhook secrets[],
-- $13 idempotency keys[], $14 dependencies_met, $15 default max_retries, $16 default timeout
WITH cfg AS (
    SELECT max_retries, default_timeout FROM queue_configs WHERE organization_id = $1 AND queue_name = $2
), src AS (
    SELECT * FROM unnest($3::uuid[], $4::jsonb[], $5::int[], $6::int[], $7::int[], $8::jsonb[],
                         $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[], $13::text[])
        WITH ORDINALITY AS s(id, payload, max_retries, priority, timeout_seconds, tags, scheduled_at,
                             expires_at, completion_webhook, completion_webhook_secret, idempotency_key, n)
), ins AS (
    INSERT INTO jobs (id, organization_id, queue_name, status, payload, max_retries, priority, timeout_seconds,
                      tags, scheduled_at, expires_at, completion_webhook, completion_webhook_secret,
                      idempotency_key, dependencies_met)
    SELECT s.id, $1, $2,
           CASE WHEN s.scheduled_at > now() THEN 'scheduled' ELSE 'pending' END,
           s.payload,
           COALESCE(s.max_retries, (SELECT max_retries FROM cfg), $15::int),
           s.priority,
           COALESCE(s.timeout_seconds, (SELECT default_timeout FROM cfg), $16::int),
           s.tags, s.scheduled_at, s.expires_at, s.completion_webhook, s.completion_webhook_secret,
           s.idempotency_key, $14::boolean
    FROM src s ORDER BY s.n
    ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, status, priority
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $1, id, 'created', jsonb_build_object('from', NULL, 'to', status) FROM ins
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $1, d.webhook_id, d.url, d.secret, 'job.created', spooled_webhook_body(d.id, 'job.created', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', i.id, 'queue_name', $2::text, 'priority', i.priority,
                                    'status', i.status, 'workflow_id', NULL) AS data
          FROM ins i CROSS JOIN LATERAL spooled_webhook_targets($1, 'job.created', NULL) t
          OFFSET 0) d
)
SELECT id, status, priority FROM ins

-- name: find_job_by_idempotency_key
-- The existing job of an idempotency key (replays).
SELECT id, status, queue_name FROM jobs WHERE organization_id = $1 AND idempotency_key = $2

-- name: lock_parent_job
-- The parent named by a new job (same org; the caller checks the queue). FOR SHARE: a completion that is
-- already running finishes first, so the child sees the parent's final status.
SELECT queue_name, status FROM jobs WHERE id = $1 AND organization_id = $2 FOR SHARE

-- name: insert_parent_edge
-- The dependency edge from a new job to its parent_job_id.
INSERT INTO job_dependencies (organization_id, job_id, depends_on_job_id) VALUES ($1, $2, $3)

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
    -- One primary-key probe per picked row: the hot function turns hash and merge joins off, so the planner
    -- never hashes the table (nor rescans a key array per row).
    WHERE j.id = picked.id AND j.organization_id = $1
    RETURNING j.id, j.queue_name, j.payload, j.retry_count, j.max_retries, j.timeout_seconds,
              j.lease_expires_at, j.lease_id, j.priority, j.created_at, j.workflow_id, picked.status AS old_status
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT $1, id, 'claimed', $4,
           jsonb_build_object('from', old_status, 'to', 'processing', 'lease_id', lease_id) FROM upd
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $1, d.webhook_id, d.url, d.secret, 'job.started', spooled_webhook_body(d.id, 'job.started', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'worker_id', $4::text) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets($1, 'job.started', NULL) t
          OFFSET 0) d
)
SELECT * FROM upd ORDER BY priority DESC, created_at, id

-- name: complete_job
-- Complete a job under a valid lease, then release dependents whose dependencies are now met.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 result, $6 the key's scope as regexes|null
WITH upd AS (
    UPDATE jobs
    SET status = 'completed', result = $5, completed_at = now(), updated_at = now(), lease_expires_at = NULL
    -- `(…) IS TRUE` keeps partial indexes (the worker's and the lease index) out: one primary-key probe.
    WHERE id = $1 AND organization_id = $2 AND (status = 'processing') IS TRUE
      AND assigned_worker_id = $3 AND lease_id = $4 AND (lease_expires_at > now()) IS TRUE
      AND ($6::text[] IS NULL OR queue_name ~ ANY($6::text[]))
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
), outbox AS (
    -- Subscribed webhooks and the job's completion callback.
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $2, d.webhook_id, d.url, d.secret, 'job.completed',
           spooled_webhook_body(d.id, 'job.completed', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'completed',
                                    'result', $5::jsonb) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets(
              $2, 'job.completed', CASE WHEN u.completion_webhook IS NOT NULL THEN u.id END) t
          OFFSET 0) d
)
SELECT upd.*, (SELECT array_agg(DISTINCT queue_name) FROM released) AS released_queues,
       -- dependents still gated: a sibling parent may have completed concurrently (core/workflows.py)
       EXISTS (SELECT 1 FROM job_dependencies e WHERE e.depends_on_job_id = upd.id
               AND e.job_id NOT IN (SELECT id FROM released)) AS waiting_dependents
FROM upd

-- name: fail_job
-- Fail a job under a valid lease: back to pending after the backoff delay while retries remain (and
-- $6 allows a retry), else dead-letter with an audit row.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 error, $6 retry allowed, $7 default base secs,
-- $8 default cap secs, $9 jitter fraction, $10 the key's scope as regexes|null
WITH cur AS (
    SELECT j.id, j.retry_count, j.max_retries, j.queue_name, j.payload,
           COALESCE(c.retry_backoff_base_secs, $7::int) AS base,
           COALESCE(c.retry_backoff_max_secs, $8::int) AS cap
    FROM jobs j
    LEFT JOIN queue_configs c ON c.organization_id = j.organization_id AND c.queue_name = j.queue_name
    WHERE j.id = $1 AND j.organization_id = $2 AND (j.status = 'processing') IS TRUE  -- as in complete_job
      AND j.assigned_worker_id = $3 AND j.lease_id = $4 AND (j.lease_expires_at > now()) IS TRUE
      AND ($10::text[] IS NULL OR j.queue_name ~ ANY($10::text[]))
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
), outbox AS (
    -- A retry is job.retried; a dead-letter is job.failed (also to the completion callback) and
    -- job.deadlettered.
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $2, d.webhook_id, d.url, d.secret, d.event, spooled_webhook_body(d.id, d.event, d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret, e.event, e.data
          FROM upd u
          CROSS JOIN LATERAL (VALUES
              ('job.retried', u.will_retry, false,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'pending',
                                  'retry_count', u.retry_count, 'manual', false)),
              ('job.failed', NOT u.will_retry, true,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'deadletter',
                                  'error', $5::text)),
              ('job.deadlettered', NOT u.will_retry, false,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'deadletter',
                                  'error', $5::text, 'retry_count', u.retry_count))
          ) e(event, fires, callback, data)
          CROSS JOIN LATERAL spooled_webhook_targets(
              $2, e.event, CASE WHEN e.callback AND u.completion_webhook IS NOT NULL THEN u.id END) t
          WHERE e.fires
          OFFSET 0) d
)
SELECT * FROM upd

-- name: heartbeat_job
-- Renew a lease: it now expires at now + $5 seconds.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 lease seconds, $6 the key's scope as regexes|null
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $5), updated_at = now()
WHERE id = $1 AND organization_id = $2 AND (status = 'processing') IS TRUE  -- as in complete_job
  AND assigned_worker_id = $3 AND lease_id = $4 AND (lease_expires_at > now()) IS TRUE
  AND ($6::text[] IS NULL OR queue_name ~ ANY($6::text[]))
RETURNING lease_expires_at

-- name: progress_job
-- Store progress of the current attempt under a valid lease.
-- $1 id, $2 org, $3 worker_id, $4 lease_id, $5 percent, $6 message, $7 the key's scope as regexes|null
UPDATE jobs SET progress = $5, progress_message = $6, progress_updated_at = now(), updated_at = now()
WHERE id = $1 AND organization_id = $2 AND (status = 'processing') IS TRUE  -- as in complete_job
  AND assigned_worker_id = $3 AND lease_id = $4 AND (lease_expires_at > now()) IS TRUE
  AND ($7::text[] IS NULL OR queue_name ~ ANY($7::text[]))
RETURNING queue_name

-- name: progress_job_unfenced
-- Store progress for clients that send no worker or lease (accepted while the job is processing).
-- $1 id, $2 org, $3 percent, $4 message, $5 the key's scope as regexes|null
UPDATE jobs SET progress = $3, progress_message = $4, progress_updated_at = now(), updated_at = now()
WHERE id = $1 AND organization_id = $2 AND (status = 'processing') IS TRUE  -- as in complete_job
  AND ($5::text[] IS NULL OR queue_name ~ ANY($5::text[]))
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
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $2, d.webhook_id, d.url, d.secret, 'job.cancelled',
           spooled_webhook_body(d.id, 'job.cancelled', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'cancelled',
                                    'old_status', u.old_status) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets($2, 'job.cancelled', NULL) t
          OFFSET 0) d
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
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $1, d.webhook_id, d.url, d.secret, 'job.retried', spooled_webhook_body(d.id, 'job.retried', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'pending',
                                    'retry_count', 0, 'manual', true) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets($1, 'job.retried', NULL) t
          OFFSET 0) d
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
-- Counts by status for the organization, optionally one queue, optionally within the key's scope.
-- $1 org, $2 queue|null, $3 scope regexes|null
SELECT status, count(*) AS n FROM jobs
WHERE organization_id = $1 AND ($2::text IS NULL OR queue_name = $2)
  AND ($3::text[] IS NULL OR queue_name ~ ANY($3::text[]))
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

-- name: complete_jobs_batch
-- Complete many jobs in one statement (gRPC stream settlements). Every row passes the same guard as
-- complete_job against its own worker and lease; rows that miss it are not returned (the caller classifies
-- them). Ids must be unique within one call. Dependents are released and webhooks queued as in complete_job.
-- $1 org, $2 ids[], $3 worker_ids[], $4 lease_ids[], $5 results[], $6 the key's scope as regexes|null
WITH src AS (
    SELECT * FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::jsonb[]) AS s(id, worker_id, lease_id, result)
), upd AS (
    UPDATE jobs j
    SET status = 'completed', result = s.result, completed_at = now(), updated_at = now(), lease_expires_at = NULL
    FROM src s
    -- The guards are written `(…) IS TRUE` so that no partial index can serve them: the only way in is one
    -- primary-key probe per settlement, however many jobs are processing (the plan is cached and generic).
    WHERE j.id = s.id AND j.organization_id = $1 AND (j.status = 'processing') IS TRUE
      AND j.assigned_worker_id = s.worker_id AND j.lease_id = s.lease_id AND (j.lease_expires_at > now()) IS TRUE
      AND ($6::text[] IS NULL OR j.queue_name ~ ANY($6::text[]))
    RETURNING j.id, j.queue_name, j.started_at, j.completed_at, j.workflow_id, j.completion_webhook,
              s.worker_id, s.result
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT $1, id, 'completed', worker_id, jsonb_build_object('from', 'processing', 'to', 'completed') FROM upd
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
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $1, d.webhook_id, d.url, d.secret, 'job.completed',
           spooled_webhook_body(d.id, 'job.completed', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'completed',
                                    'result', u.result) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets(
              $1, 'job.completed', CASE WHEN u.completion_webhook IS NOT NULL THEN u.id END) t
          OFFSET 0) d
)
SELECT upd.id, upd.queue_name, upd.started_at, upd.completed_at, upd.workflow_id, upd.completion_webhook,
       (SELECT array_agg(DISTINCT queue_name) FROM released) AS released_queues,
       EXISTS (SELECT 1 FROM job_dependencies e WHERE e.depends_on_job_id = upd.id
               AND e.job_id NOT IN (SELECT id FROM released)) AS waiting_dependents
FROM upd

-- name: fail_jobs_batch
-- Fail many jobs in one statement (gRPC stream settlements), each under its own valid lease, with the
-- rules of fail_job per row: back to pending after the backoff delay while retries remain and the row
-- allows a retry, else dead-letter with an audit row. Ids must be unique within one call.
-- $1 org, $2 ids[], $3 worker_ids[], $4 lease_ids[], $5 errors[], $6 retry allowed[],
-- $7 default base secs, $8 default cap secs, $9 jitter fraction, $10 the key's scope as regexes|null
WITH src AS (
    SELECT * FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::bool[])
        AS s(id, worker_id, lease_id, error, retry)
), cur AS (
    SELECT j.id, j.retry_count, j.max_retries, j.queue_name, j.payload, s.worker_id, s.error, s.retry,
           COALESCE(c.retry_backoff_base_secs, $7::int) AS base,
           COALESCE(c.retry_backoff_max_secs, $8::int) AS cap
    FROM src s
    JOIN jobs j ON j.id = s.id
    LEFT JOIN queue_configs c ON c.organization_id = j.organization_id AND c.queue_name = j.queue_name
    -- `(…) IS TRUE`: one primary-key probe per settlement, as in complete_jobs_batch.
    WHERE j.organization_id = $1 AND (j.status = 'processing') IS TRUE
      AND j.assigned_worker_id = s.worker_id AND j.lease_id = s.lease_id AND (j.lease_expires_at > now()) IS TRUE
      AND ($10::text[] IS NULL OR j.queue_name ~ ANY($10::text[]))
    FOR UPDATE OF j
), calc AS (
    SELECT id, retry_count, queue_name, payload, worker_id, error, cap,
           (retry_count < max_retries AND retry) AS will_retry,
           LEAST(cap::float8, base::float8 * power(2::float8, LEAST(retry_count, 32)::float8)) AS delay
    FROM cur
), upd AS (
    UPDATE jobs j
    SET retry_count = j.retry_count + 1,
        last_error = calc.error,
        status = CASE WHEN calc.will_retry THEN 'pending' ELSE 'deadletter' END,
        scheduled_at = CASE WHEN calc.will_retry
            THEN now() + make_interval(secs => LEAST(calc.cap::float8,
                                                     calc.delay + random() * $9::float8 * calc.delay))
            ELSE j.scheduled_at END,
        completed_at = CASE WHEN calc.will_retry THEN NULL ELSE now() END,
        lease_expires_at = NULL,
        lease_id = CASE WHEN calc.will_retry THEN NULL ELSE j.lease_id END,
        assigned_worker_id = CASE WHEN calc.will_retry THEN NULL ELSE j.assigned_worker_id END,
        updated_at = now()
    FROM calc
    WHERE j.id = calc.id
    RETURNING j.id, j.queue_name, j.status, j.retry_count, j.scheduled_at, j.workflow_id,
              j.completion_webhook, calc.will_retry, calc.worker_id, calc.error,
              CASE WHEN calc.will_retry
                   THEN GREATEST(0, round(EXTRACT(EPOCH FROM j.scheduled_at - now())))::int ELSE 0 END
                  AS delay_secs
), dlq AS (
    INSERT INTO dlq_entries (organization_id, job_id, queue_name, reason, original_payload, error_details)
    SELECT $1, upd.id, upd.queue_name, 'max_retries_exceeded', calc.payload,
           jsonb_build_object('final_error', upd.error, 'total_retries', upd.retry_count)
    FROM upd JOIN calc ON calc.id = upd.id WHERE NOT upd.will_retry
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, worker_id, details)
    SELECT $1, id, CASE WHEN will_retry THEN 'requeued' ELSE 'deadlettered' END, worker_id,
           jsonb_build_object('from', 'processing', 'to', status, 'error', error) FROM upd
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $1, d.webhook_id, d.url, d.secret, d.event, spooled_webhook_body(d.id, d.event, d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret, e.event, e.data
          FROM upd u
          CROSS JOIN LATERAL (VALUES
              ('job.retried', u.will_retry, false,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'pending',
                                  'retry_count', u.retry_count, 'manual', false)),
              ('job.failed', NOT u.will_retry, true,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'deadletter',
                                  'error', u.error)),
              ('job.deadlettered', NOT u.will_retry, false,
               jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'deadletter',
                                  'error', u.error, 'retry_count', u.retry_count))
          ) e(event, fires, callback, data)
          CROSS JOIN LATERAL spooled_webhook_targets(
              $1, e.event, CASE WHEN e.callback AND u.completion_webhook IS NOT NULL THEN u.id END) t
          WHERE e.fires
          OFFSET 0) d
)
SELECT id, queue_name, status, retry_count, scheduled_at, workflow_id, completion_webhook, will_retry,
       delay_secs
FROM upd

-- name: queue_stats_with_age
-- Counts by status of one queue and the age of its oldest pending job in milliseconds (gRPC GetQueueStats).
-- $1 org, $2 queue
SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'scheduled') AS scheduled,
       count(*) FILTER (WHERE status = 'processing') AS processing,
       count(*) FILTER (WHERE status = 'completed') AS completed,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'deadletter') AS deadletter,
       count(*) AS total,
       COALESCE(floor(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE status = 'pending')) * 1000),
                0)::bigint AS max_age_ms
FROM jobs WHERE organization_id = $1 AND queue_name = $2
