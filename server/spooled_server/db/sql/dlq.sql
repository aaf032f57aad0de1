-- name: dlq_pick_ids
-- Dead-lettered jobs among the given ids (optionally of one queue, within the key's scope), oldest first,
-- locked for a retry.
-- $1 org, $2 ids[], $3 queue|null, $4 scope regexes|null, $5 limit
SELECT id FROM jobs
WHERE organization_id = $1 AND id = ANY($2::uuid[]) AND status = 'deadletter'
  AND ($3::text IS NULL OR queue_name = $3)
  AND ($4::text[] IS NULL OR queue_name ~ ANY($4::text[]))
ORDER BY created_at, id
LIMIT $5
FOR UPDATE

-- name: dlq_pick_oldest
-- The oldest dead-lettered jobs of one queue or of every queue in the key's scope, locked for a retry
-- (rows another retry holds are skipped).
-- $1 org, $2 queue|null, $3 scope regexes|null, $4 limit
SELECT id FROM jobs
WHERE organization_id = $1 AND status = 'deadletter'
  AND ($2::text IS NULL OR queue_name = $2)
  AND ($3::text[] IS NULL OR queue_name ~ ANY($3::text[]))
ORDER BY created_at, id
LIMIT $4
FOR UPDATE SKIP LOCKED

-- name: dlq_purge
-- Hard-delete dead-lettered jobs matching the narrowing filters (their DLQ audit rows cascade), oldest first,
-- at most $6 rows. "Older than" compares the time the job was dead-lettered.
-- $1 org, $2 queue|null, $3 ids[]|null, $4 older_than|null, $5 scope regexes|null, $6 limit
WITH doomed AS (
    SELECT id FROM jobs
    WHERE organization_id = $1 AND status = 'deadletter'
      AND ($2::text IS NULL OR queue_name = $2)
      AND ($3::uuid[] IS NULL OR id = ANY($3::uuid[]))
      AND ($4::timestamptz IS NULL OR COALESCE(completed_at, updated_at) < $4)
      AND ($5::text[] IS NULL OR queue_name ~ ANY($5::text[]))
    ORDER BY created_at, id
    LIMIT $6
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM jobs j USING doomed WHERE j.id = doomed.id RETURNING j.id
)
SELECT count(*) FROM gone
