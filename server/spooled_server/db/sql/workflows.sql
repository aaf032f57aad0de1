-- name: lock_workflow_quota
-- Serialize the `workflows` cap check of one organization (semantics.md §12).
SELECT pg_advisory_xact_lock(hashtextextended('spooled:quota:workflows:' || $1::uuid::text, 0))

-- name: count_open_workflows
-- Workflows that count against `max_workflows`: pending and running.
SELECT count(*) FROM workflows WHERE organization_id = $1 AND status IN ('pending', 'running')

-- name: insert_workflow
-- Create the workflow header row.
-- $1 id, $2 org, $3 name, $4 description, $5 metadata, $6 total jobs
INSERT INTO workflows (id, organization_id, name, description, metadata, total_jobs)
VALUES ($1, $2, $3, $4, $5, $6)

-- name: insert_workflow_jobs
-- Create every job of a workflow in one statement (pending; gated unless it has no dependencies), with
-- history rows and job.created webhook deliveries. Queue defaults fill unset retries and timeouts.
-- $1 org, $2 workflow id, $3 ids[], $4 keys[], $5 queues[], $6 payloads[], $7 priorities[],
-- $8 max_retries[] (null = default), $9 timeouts[] (null = default), $10 expires_at[], $11 modes[],
-- $12 dependencies_met[], $13 default max_retries, $14 default timeout
WITH src AS (
    SELECT * FROM unnest($3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::int[], $8::int[], $9::int[],
                         $10::timestamptz[], $11::text[], $12::bool[])
        WITH ORDINALITY AS s(id, key, queue_name, payload, priority, max_retries, timeout_seconds, expires_at,
                             mode, deps_met, step)
), ins AS (
    INSERT INTO jobs (id, organization_id, queue_name, status, payload, max_retries, priority, timeout_seconds,
                      expires_at, workflow_id, workflow_key, workflow_step, dependency_mode, dependencies_met)
    SELECT s.id, $1, s.queue_name, 'pending', s.payload,
           COALESCE(s.max_retries, c.max_retries, $13::int), s.priority,
           COALESCE(s.timeout_seconds, c.default_timeout, $14::int), s.expires_at, $2, s.key, s.step - 1,
           s.mode, s.deps_met
    FROM src s
    LEFT JOIN queue_configs c ON c.organization_id = $1 AND c.queue_name = s.queue_name
    RETURNING id, queue_name, status, priority
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $1, id, 'created', jsonb_build_object('from', NULL, 'to', status) FROM ins
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $1, d.webhook_id, d.url, d.secret, 'job.created', spooled_webhook_body(d.id, 'job.created', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', i.id, 'queue_name', i.queue_name, 'priority', i.priority,
                                    'status', i.status, 'workflow_id', $2::uuid) AS data
          FROM ins i CROSS JOIN LATERAL spooled_webhook_targets($1, 'job.created', NULL) t
          OFFSET 0) d
)
SELECT id, queue_name, status, priority FROM ins

-- name: insert_workflow_edges
-- The dependency edges of a new workflow: child waits for parent.
-- $1 org, $2 child ids[], $3 parent ids[]
INSERT INTO job_dependencies (organization_id, job_id, depends_on_job_id)
SELECT $1, e.child, e.parent FROM unnest($2::uuid[], $3::uuid[]) AS e(child, parent)

-- name: workflows_mark_running
-- A workflow whose first job was just claimed starts running (called inside the claim's transaction).
-- $1 org, $2 workflow ids[]
UPDATE workflows SET status = 'running', started_at = COALESCE(started_at, now()), updated_at = now()
WHERE organization_id = $1 AND id = ANY($2::uuid[]) AND status = 'pending'

-- name: release_dependents
-- Open the gate of waiting jobs whose dependencies are now met: `all` → every dependency completed, `any` →
-- at least one. A dependency row that is gone counts as completed only an hour after the edge was made (the
-- retention grace); before that it counts as unfinished. $2 narrows to dependents of those parents.
-- $1 org|null, $2 parent ids[]|null
UPDATE jobs d SET dependencies_met = true, updated_at = now()
WHERE d.dependencies_met = false AND d.status IN ('pending', 'scheduled')
  AND ($1::uuid IS NULL OR d.organization_id = $1)
  AND ($2::uuid[] IS NULL OR EXISTS (SELECT 1 FROM job_dependencies e0
                                     WHERE e0.job_id = d.id AND e0.depends_on_job_id = ANY($2::uuid[])))
  AND CASE WHEN d.dependency_mode = 'any' THEN
           NOT EXISTS (SELECT 1 FROM job_dependencies e WHERE e.job_id = d.id)
           OR EXISTS (SELECT 1 FROM job_dependencies e LEFT JOIN jobs p ON p.id = e.depends_on_job_id
                      WHERE e.job_id = d.id
                        AND (p.status = 'completed'
                             OR (p.id IS NULL AND e.created_at < now() - interval '1 hour')))
      ELSE NOT EXISTS (SELECT 1 FROM job_dependencies e LEFT JOIN jobs p ON p.id = e.depends_on_job_id
                       WHERE e.job_id = d.id
                         AND (p.status IS DISTINCT FROM 'completed')
                         AND NOT (p.id IS NULL AND e.created_at < now() - interval '1 hour'))
  END
RETURNING d.id, d.organization_id, d.queue_name, d.workflow_id

-- name: cascade_cancel
-- One level of the failure cascade (transition 12): waiting jobs whose dependencies failed are cancelled.
-- `all` → any dependency failed, dead-lettered or cancelled; `any` → every dependency is. A dependency still
-- retrying does not count. The caller repeats with the cancelled ids until nothing more falls.
-- $1 org|null, $2 parent ids[]|null
WITH victims AS (
    SELECT d.id, d.status AS old_status FROM jobs d
    WHERE d.dependencies_met = false AND d.status IN ('pending', 'scheduled')
      AND ($1::uuid IS NULL OR d.organization_id = $1)
      AND ($2::uuid[] IS NULL OR EXISTS (SELECT 1 FROM job_dependencies e0
                                         WHERE e0.job_id = d.id AND e0.depends_on_job_id = ANY($2::uuid[])))
      AND CASE WHEN d.dependency_mode = 'any' THEN
               EXISTS (SELECT 1 FROM job_dependencies e JOIN jobs p ON p.id = e.depends_on_job_id
                       WHERE e.job_id = d.id)
               AND NOT EXISTS (SELECT 1 FROM job_dependencies e LEFT JOIN jobs p ON p.id = e.depends_on_job_id
                               WHERE e.job_id = d.id
                                 AND (p.id IS NULL OR p.status NOT IN ('failed', 'deadletter', 'cancelled')))
          ELSE EXISTS (SELECT 1 FROM job_dependencies e JOIN jobs p ON p.id = e.depends_on_job_id
                       WHERE e.job_id = d.id AND p.status IN ('failed', 'deadletter', 'cancelled'))
      END
    ORDER BY d.id
    FOR UPDATE OF d
), upd AS (
    UPDATE jobs j
    SET status = 'cancelled', last_error = 'Parent job failed or was deadlettered', completed_at = now(),
        updated_at = now()
    FROM victims v
    WHERE j.id = v.id
    RETURNING j.id, j.organization_id, j.queue_name, v.old_status, j.workflow_id
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT organization_id, id, 'cancelled',
           jsonb_build_object('from', old_status, 'to', 'cancelled', 'error', 'Parent job failed or was deadlettered')
    FROM upd
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, d.organization_id, d.webhook_id, d.url, d.secret, 'job.cancelled',
           spooled_webhook_body(d.id, 'job.cancelled', d.data)
    FROM (SELECT gen_random_uuid() AS id, u.organization_id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'cancelled',
                                    'old_status', u.old_status) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets(u.organization_id, 'job.cancelled', NULL) t
          OFFSET 0) d
)
SELECT * FROM upd

-- name: lock_workflow
-- Lock a workflow row; the next statement then sees every job change committed before the lock was granted.
SELECT status FROM workflows WHERE id = $1 AND organization_id = $2 FOR UPDATE

-- name: refresh_workflow
-- Recompute a workflow's counters and status from its jobs (semantics.md §9) and queue the
-- workflow.completed / workflow.failed webhook when it reaches that status. `cancelled` is terminal.
-- $1 workflow id, $2 org
WITH c AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status IN ('failed', 'deadletter')) AS failed,
           count(*) FILTER (WHERE status IN ('pending', 'scheduled', 'processing')) AS active,
           min(started_at) AS first_started
    FROM jobs WHERE workflow_id = $1 AND organization_id = $2
), calc AS (
    SELECT w.id, w.status AS old_status, c.completed, c.failed, c.first_started,
           CASE WHEN w.status = 'cancelled' THEN 'cancelled'
                WHEN c.active = 0 THEN CASE WHEN c.failed > 0 THEN 'failed' ELSE 'completed' END
                WHEN w.status <> 'pending' OR c.first_started IS NOT NULL THEN 'running'
                ELSE 'pending' END AS new_status
    FROM workflows w, c
    WHERE w.id = $1 AND w.organization_id = $2
), upd AS (
    UPDATE workflows w
    SET status = calc.new_status, completed_jobs = calc.completed, failed_jobs = calc.failed,
        started_at = COALESCE(w.started_at, calc.first_started),
        completed_at = CASE WHEN calc.new_status IN ('completed', 'failed', 'cancelled')
                            THEN CASE WHEN calc.old_status = calc.new_status THEN COALESCE(w.completed_at, now())
                                      ELSE now() END
                       END,
        updated_at = now()
    FROM calc
    WHERE w.id = calc.id
      AND (w.status, w.completed_jobs, w.failed_jobs) IS DISTINCT FROM (calc.new_status, calc.completed::int, calc.failed::int)
    RETURNING w.id, w.organization_id, w.name, w.status, w.total_jobs, w.completed_jobs, w.failed_jobs,
              calc.old_status
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $2, d.webhook_id, d.url, d.secret, d.event, spooled_webhook_body(d.id, d.event, d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret, 'workflow.' || u.status AS event,
                 jsonb_build_object('workflow_id', u.id, 'name', u.name, 'status', u.status,
                                    'total_jobs', u.total_jobs, 'completed_jobs', u.completed_jobs,
                                    'failed_jobs', u.failed_jobs) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets($2, 'workflow.' || u.status, NULL) t
          WHERE u.status IN ('completed', 'failed') AND u.old_status <> u.status
          OFFSET 0) d
)
SELECT * FROM upd

-- name: stranded_workflows
-- Open workflows whose stored status or counters disagree with their jobs (the sweep finalizes them).
SELECT w.id, w.organization_id FROM workflows w
WHERE w.status IN ('pending', 'running')
  AND (NOT EXISTS (SELECT 1 FROM jobs j WHERE j.workflow_id = w.id
                   AND j.status IN ('pending', 'scheduled', 'processing'))
       OR (w.status = 'pending' AND EXISTS (SELECT 1 FROM jobs j WHERE j.workflow_id = w.id
                                            AND j.started_at IS NOT NULL))
       OR w.completed_jobs <> (SELECT count(*) FROM jobs j WHERE j.workflow_id = w.id AND j.status = 'completed'))
LIMIT $1

-- name: get_workflow
-- One workflow with live counters and the queues of its jobs (for the key-scope check).
-- $1 id, $2 org
SELECT w.*, c.completed, c.failed, c.pending, c.processing, c.queues
FROM workflows w
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.status = 'completed') AS completed,
           count(*) FILTER (WHERE j.status IN ('failed', 'deadletter')) AS failed,
           count(*) FILTER (WHERE j.status IN ('pending', 'scheduled')) AS pending,
           count(*) FILTER (WHERE j.status = 'processing') AS processing,
           array_agg(DISTINCT j.queue_name) AS queues
    FROM jobs j WHERE j.workflow_id = w.id AND j.organization_id = w.organization_id
) c ON true
WHERE w.id = $1 AND w.organization_id = $2

-- name: list_workflows
-- Workflows newest first, optionally of one status, with live counters and their jobs' queues.
-- $1 org, $2 status|null, $3 limit, $4 offset
SELECT w.*, c.completed, c.failed, c.pending, c.processing, c.queues
FROM workflows w
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE j.status = 'completed') AS completed,
           count(*) FILTER (WHERE j.status IN ('failed', 'deadletter')) AS failed,
           count(*) FILTER (WHERE j.status IN ('pending', 'scheduled')) AS pending,
           count(*) FILTER (WHERE j.status = 'processing') AS processing,
           array_agg(DISTINCT j.queue_name) AS queues
    FROM jobs j WHERE j.workflow_id = w.id AND j.organization_id = w.organization_id
) c ON true
WHERE w.organization_id = $1 AND ($2::text IS NULL OR w.status = $2)
ORDER BY w.created_at DESC, w.id DESC
LIMIT $3 OFFSET $4

-- name: workflow_jobs
-- The jobs of a workflow in definition order, with the keys they depend on.
-- $1 workflow id, $2 org
SELECT j.*,
       COALESCE((SELECT array_agg(p.workflow_key ORDER BY p.workflow_step)
                 FROM job_dependencies e JOIN jobs p ON p.id = e.depends_on_job_id
                 WHERE e.job_id = j.id AND p.workflow_id = j.workflow_id), '{}') AS depends_on
FROM jobs j
WHERE j.workflow_id = $1 AND j.organization_id = $2
ORDER BY j.workflow_step, j.created_at, j.id

-- name: workflow_edges
-- The dependency edges inside a workflow: parent, child and the child's mode.
-- $1 workflow id, $2 org
SELECT e.depends_on_job_id AS parent_job_id, e.job_id AS child_job_id, d.dependency_mode
FROM job_dependencies e
JOIN jobs d ON d.id = e.job_id
LEFT JOIN jobs p ON p.id = e.depends_on_job_id
WHERE d.workflow_id = $1 AND d.organization_id = $2
ORDER BY d.workflow_step, p.workflow_step, e.depends_on_job_id

-- name: cancel_workflow_jobs
-- Cancel a workflow's pending and scheduled jobs (transition 11); processing jobs run to the end.
-- $1 workflow id, $2 org
WITH old AS (
    SELECT id, status FROM jobs
    WHERE workflow_id = $1 AND organization_id = $2 AND status IN ('pending', 'scheduled')
    ORDER BY id
    FOR UPDATE
), upd AS (
    UPDATE jobs j SET status = 'cancelled', completed_at = now(), updated_at = now()
    FROM old WHERE j.id = old.id
    RETURNING j.id, j.queue_name, old.status AS old_status
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $2, id, 'cancelled', jsonb_build_object('from', old_status, 'to', 'cancelled', 'workflow', true)
    FROM upd
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $2, d.webhook_id, d.url, d.secret, 'job.cancelled', spooled_webhook_body(d.id, 'job.cancelled', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'cancelled',
                                    'old_status', u.old_status) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets($2, 'job.cancelled', NULL) t
          OFFSET 0) d
)
SELECT * FROM upd

-- name: set_workflow_cancelled
-- Mark a workflow cancelled (terminal).
UPDATE workflows SET status = 'cancelled', completed_at = now(), updated_at = now()
WHERE id = $1 AND organization_id = $2

-- name: retry_workflow_jobs
-- Workflow retry (transition 14): failed, dead-lettered and cancelled jobs return to pending with a fresh
-- retry budget, their errors, results, leases and timestamps cleared and their DLQ audit rows removed.
-- $1 workflow id, $2 org
WITH old AS (
    SELECT id, status FROM jobs
    WHERE workflow_id = $1 AND organization_id = $2 AND status IN ('failed', 'deadletter', 'cancelled')
    ORDER BY id
    FOR UPDATE
), upd AS (
    UPDATE jobs j
    SET status = 'pending', retry_count = 0, last_error = NULL, result = NULL, scheduled_at = NULL,
        started_at = NULL, completed_at = NULL, lease_id = NULL, lease_expires_at = NULL,
        assigned_worker_id = NULL, progress = NULL, progress_message = NULL, progress_updated_at = NULL,
        updated_at = now()
    FROM old WHERE j.id = old.id
    RETURNING j.id, j.queue_name, old.status AS old_status
), dlq AS (
    DELETE FROM dlq_entries WHERE job_id IN (SELECT id FROM upd)
), hist AS (
    INSERT INTO job_history (organization_id, job_id, event_type, details)
    SELECT $2, id, 'retried', jsonb_build_object('from', old_status, 'to', 'pending', 'workflow', true) FROM upd
), outbox AS (
    INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
    SELECT d.id, $2, d.webhook_id, d.url, d.secret, 'job.retried', spooled_webhook_body(d.id, 'job.retried', d.data)
    FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret,
                 jsonb_build_object('job_id', u.id, 'queue_name', u.queue_name, 'status', 'pending',
                                    'retry_count', 0, 'manual', true) AS data
          FROM upd u CROSS JOIN LATERAL spooled_webhook_targets($2, 'job.retried', NULL) t
          OFFSET 0) d
)
SELECT * FROM upd

-- name: workflow_retry_counts
-- For the active-jobs cap on a workflow retry: the organization's active jobs and the jobs a retry revives.
-- $1 workflow id, $2 org
SELECT (SELECT count(*) FROM jobs WHERE organization_id = $2
          AND status IN ('pending', 'scheduled', 'processing')) AS active,
       (SELECT count(*) FROM jobs WHERE workflow_id = $1 AND organization_id = $2
          AND status IN ('failed', 'deadletter', 'cancelled')) AS to_retry

-- name: regate_workflow_jobs
-- After a workflow retry: recompute every waiting job's gate from its dependencies' current statuses.
-- $1 workflow id, $2 org
UPDATE jobs d
SET dependencies_met = CASE
        WHEN NOT EXISTS (SELECT 1 FROM job_dependencies e WHERE e.job_id = d.id) THEN true
        WHEN d.dependency_mode = 'any' THEN EXISTS (
            SELECT 1 FROM job_dependencies e JOIN jobs p ON p.id = e.depends_on_job_id
            WHERE e.job_id = d.id AND p.status = 'completed')
        ELSE NOT EXISTS (
            SELECT 1 FROM job_dependencies e LEFT JOIN jobs p ON p.id = e.depends_on_job_id
            WHERE e.job_id = d.id AND p.status IS DISTINCT FROM 'completed')
    END,
    updated_at = now()
WHERE d.workflow_id = $1 AND d.organization_id = $2 AND d.status IN ('pending', 'scheduled')
