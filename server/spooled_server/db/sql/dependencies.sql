-- name: lock_dependency_edges
-- Serialize edge changes of one organization, so two concurrent additions cannot close a cycle together.
SELECT pg_advisory_xact_lock(hashtextextended('spooled:dependencies:' || $1::uuid::text, 0))

-- name: dependency_target
-- The job that gets new dependencies, locked while its edges and gate change.
-- $1 id, $2 org
SELECT id, queue_name, status FROM jobs WHERE id = $1 AND organization_id = $2 FOR UPDATE

-- name: dependency_candidates
-- Which of the requested dependency ids are jobs of the organization.
-- $1 org, $2 ids[]
SELECT id, queue_name FROM jobs WHERE organization_id = $1 AND id = ANY($2::uuid[])

-- name: add_dependency_edges
-- Add edges "$2 waits for each of $3". Self edges, existing edges and edges that would close a cycle (the
-- candidate already waits, directly or transitively, for $2) are skipped. Returns how many were added.
-- $1 org, $2 job id, $3 dependency ids[]
WITH RECURSIVE waiting_on_target AS (
    SELECT $2::uuid AS id
    UNION
    SELECT e.job_id FROM job_dependencies e JOIN waiting_on_target w ON e.depends_on_job_id = w.id
    WHERE e.organization_id = $1
), ins AS (
    INSERT INTO job_dependencies (organization_id, job_id, depends_on_job_id)
    SELECT $1, $2, c.id FROM unnest($3::uuid[]) AS c(id)
    WHERE c.id NOT IN (SELECT id FROM waiting_on_target)
    ON CONFLICT (job_id, depends_on_job_id) DO NOTHING
    RETURNING depends_on_job_id
)
SELECT count(*) FROM ins

-- name: recompute_dependencies_met
-- Set a job's dependency mode and recompute its gate: no edges → met; `all` → every dependency completed
-- (a dependency row that is gone counts as unfinished); `any` → at least one completed.
-- $1 org, $2 job id, $3 mode
UPDATE jobs j
SET dependency_mode = $3,
    dependencies_met = CASE
        WHEN NOT EXISTS (SELECT 1 FROM job_dependencies e WHERE e.job_id = j.id) THEN true
        WHEN $3 = 'all' THEN NOT EXISTS (
            SELECT 1 FROM job_dependencies e LEFT JOIN jobs p ON p.id = e.depends_on_job_id
            WHERE e.job_id = j.id AND (p.id IS NULL OR p.status <> 'completed'))
        ELSE EXISTS (
            SELECT 1 FROM job_dependencies e JOIN jobs p ON p.id = e.depends_on_job_id
            WHERE e.job_id = j.id AND p.status = 'completed')
    END,
    updated_at = now()
WHERE j.id = $2 AND j.organization_id = $1
RETURNING j.dependencies_met, j.queue_name

-- name: job_dependency_list
-- The jobs a job waits for (edges whose dependency row is gone are left out).
-- $1 job id, $2 org
SELECT p.id AS job_id, p.queue_name, p.status
FROM job_dependencies e JOIN jobs p ON p.id = e.depends_on_job_id
WHERE e.job_id = $1 AND e.organization_id = $2
ORDER BY e.created_at, p.id

-- name: job_dependent_list
-- The jobs that wait for a job.
-- $1 job id, $2 org
SELECT d.id AS job_id, d.queue_name, d.status
FROM job_dependencies e JOIN jobs d ON d.id = e.job_id
WHERE e.depends_on_job_id = $1 AND e.organization_id = $2
ORDER BY e.created_at, d.id
