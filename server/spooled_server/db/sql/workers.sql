-- name: worker_owner
-- The organization that owns a worker id, across organizations (maintenance role): worker ids are global
-- primary keys, so registering an id another organization holds must fail with 409.
SELECT organization_id FROM workers WHERE id = $1

-- name: lock_worker_quota
-- Serialize worker registrations of one organization while the `workers` cap is checked.
SELECT pg_advisory_xact_lock(hashtextextended('spooled:quota:workers:' || $1::uuid::text, 0))

-- name: worker_quota_usage
-- Whether the id is already this organization's worker (re-registration is not charged) and how many other
-- workers count against the cap (healthy or degraded).
-- $1 org, $2 worker id
SELECT EXISTS (SELECT 1 FROM workers WHERE organization_id = $1 AND id = $2) AS mine,
       (SELECT count(*) FROM workers WHERE organization_id = $1 AND id <> $2
          AND status IN ('healthy', 'degraded')) AS active

-- name: upsert_worker
-- Register a worker, or re-register one of this organization's: status back to healthy, heartbeat now.
-- Returns no row when the id belongs to another organization.
-- $1 id, $2 org, $3 queue, $4 hostname, $5 worker_type, $6 max_concurrency, $7 metadata, $8 version
INSERT INTO workers AS w (id, organization_id, queue_name, queue_names, hostname, worker_type, max_concurrency,
                          current_jobs, status, last_heartbeat, metadata, version, registered_at, updated_at)
VALUES ($1, $2, $3, ARRAY[$3::text], $4, $5, $6, 0, 'healthy', now(), $7, $8, now(), now())
ON CONFLICT (id) DO UPDATE
SET queue_name = EXCLUDED.queue_name, queue_names = EXCLUDED.queue_names, hostname = EXCLUDED.hostname,
    worker_type = EXCLUDED.worker_type, max_concurrency = EXCLUDED.max_concurrency, current_jobs = 0,
    status = 'healthy', last_heartbeat = now(), metadata = EXCLUDED.metadata, version = EXCLUDED.version,
    updated_at = now()
WHERE w.organization_id = EXCLUDED.organization_id
RETURNING w.id

-- name: heartbeat_worker
-- Store a worker heartbeat (an operator-set `draining` is kept) and say whether the worker should drain:
-- it is draining, or its queue is paused or disabled. $6 is the key's scope as regexes, or null.
-- $1 id, $2 org, $3 current_jobs, $4 status, $5 metadata|null (keep), $6 scope regexes|null
UPDATE workers w
SET current_jobs = $3,
    status = CASE WHEN w.status = 'draining' THEN 'draining' ELSE $4 END,
    metadata = COALESCE($5::jsonb, w.metadata),
    last_heartbeat = now(), updated_at = now()
WHERE w.id = $1 AND w.organization_id = $2 AND ($6::text[] IS NULL OR w.queue_name ~ ANY($6::text[]))
RETURNING w.status, w.queue_name,
          EXISTS (SELECT 1 FROM queue_configs c WHERE c.organization_id = $2 AND c.queue_name = w.queue_name
                    AND NOT c.enabled) AS queue_blocked,
          (SELECT j.id FROM jobs j WHERE j.organization_id = $2 AND j.status = 'processing'
             AND j.assigned_worker_id = w.id LIMIT 1) AS current_job_id

-- name: mark_worker_offline
-- Deregister: the worker goes offline (its jobs are released by release_worker_jobs in the same transaction).
-- $1 id, $2 org, $3 scope regexes|null
UPDATE workers w SET status = 'offline', current_jobs = 0, updated_at = now()
WHERE w.id = $1 AND w.organization_id = $2 AND ($3::text[] IS NULL OR w.queue_name ~ ANY($3::text[]))
RETURNING w.queue_name, w.hostname

-- name: drain_worker
-- An operator asks a worker to drain: later heartbeats answer should_drain until it re-registers.
-- $1 id, $2 org, $3 scope regexes|null
UPDATE workers w SET status = 'draining', updated_at = now()
WHERE w.id = $1 AND w.organization_id = $2 AND ($3::text[] IS NULL OR w.queue_name ~ ANY($3::text[]))
RETURNING w.*

-- name: get_worker
-- One worker of the organization, within the key's scope.
-- $1 id, $2 org, $3 scope regexes|null
SELECT * FROM workers w
WHERE w.id = $1 AND w.organization_id = $2 AND ($3::text[] IS NULL OR w.queue_name ~ ANY($3::text[]))

-- name: list_workers
-- The organization's workers within the key's scope, most recent heartbeat first.
-- $1 org, $2 scope regexes|null, $3 limit, $4 offset
SELECT id, queue_name, hostname, status, current_jobs, max_concurrency, last_heartbeat FROM workers w
WHERE w.organization_id = $1 AND ($2::text[] IS NULL OR w.queue_name ~ ANY($2::text[]))
ORDER BY w.last_heartbeat DESC, w.id
LIMIT $3 OFFSET $4
