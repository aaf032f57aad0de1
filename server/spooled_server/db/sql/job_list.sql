-- name: list_jobs
-- One page of the job list (GET /jobs, GET /jobs/dlq) as JobSummary columns. Every filter is optional
-- (null = no filter). Ordered by $12 (created_at | priority | scheduled_at) in direction $13, ties broken by
-- created_at then id in the same direction; a null scheduled_at sorts last either way.
-- $1 org, $2 queue, $3 statuses[], $4 tag, $5 q (LIKE-escaped), $6 job_type, $7 created_after (inclusive),
-- $8 created_before (exclusive), $9 scope regexes[], $10 limit, $11 offset, $12 order_by, $13 'asc'|'desc'
SELECT id, queue_name, status, priority, retry_count, max_retries, last_error, created_at, scheduled_at,
       started_at, completed_at,
       CASE WHEN jsonb_typeof(payload -> 'job_type') = 'string' THEN payload ->> 'job_type' ELSE '' END
           AS job_type
FROM jobs
WHERE organization_id = $1
  AND ($2::text IS NULL OR queue_name = $2)
  AND ($3::text[] IS NULL OR status = ANY($3::text[]))
  AND ($4::text IS NULL OR tags ? $4::text)
  AND ($5::text IS NULL OR id::text LIKE lower($5) || '%'
       OR queue_name ILIKE '%' || $5 || '%'
       OR (jsonb_typeof(payload -> 'job_type') = 'string' AND payload ->> 'job_type' ILIKE '%' || $5 || '%'))
  AND ($6::text IS NULL OR payload -> 'job_type' = to_jsonb($6::text))
  AND ($7::timestamptz IS NULL OR created_at >= $7)
  AND ($8::timestamptz IS NULL OR created_at < $8)
  AND ($9::text[] IS NULL OR queue_name ~ ANY($9::text[]))
ORDER BY
    CASE WHEN $12 = 'priority' AND $13 = 'asc' THEN priority END ASC,
    CASE WHEN $12 = 'priority' AND $13 = 'desc' THEN priority END DESC,
    CASE WHEN $12 = 'scheduled_at' AND $13 = 'asc' THEN scheduled_at END ASC NULLS LAST,
    CASE WHEN $12 = 'scheduled_at' AND $13 = 'desc' THEN scheduled_at END DESC NULLS LAST,
    CASE WHEN $13 = 'asc' THEN created_at END ASC,
    CASE WHEN $13 = 'desc' THEN created_at END DESC,
    CASE WHEN $13 = 'asc' THEN id END ASC,
    CASE WHEN $13 = 'desc' THEN id END DESC
LIMIT $10 OFFSET $11

-- name: count_jobs
-- How many jobs match the list filters of list_jobs (X-Total-Count), ignoring limit and offset.
-- $1..$9 as in list_jobs
SELECT count(*) FROM jobs
WHERE organization_id = $1
  AND ($2::text IS NULL OR queue_name = $2)
  AND ($3::text[] IS NULL OR status = ANY($3::text[]))
  AND ($4::text IS NULL OR tags ? $4::text)
  AND ($5::text IS NULL OR id::text LIKE lower($5) || '%'
       OR queue_name ILIKE '%' || $5 || '%'
       OR (jsonb_typeof(payload -> 'job_type') = 'string' AND payload ->> 'job_type' ILIKE '%' || $5 || '%'))
  AND ($6::text IS NULL OR payload -> 'job_type' = to_jsonb($6::text))
  AND ($7::timestamptz IS NULL OR created_at >= $7)
  AND ($8::timestamptz IS NULL OR created_at < $8)
  AND ($9::text[] IS NULL OR queue_name ~ ANY($9::text[]))
