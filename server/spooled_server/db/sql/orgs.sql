-- Organizations, API keys, usage reports, the admin surface and the dashboard (rest.md §2-§4, §16, §17).
-- Tenant statements carry explicit organization_id predicates on top of row-level security.

-- name: insert_organization
-- Create an organization. $1 id, $2 name, $3 slug, $4 plan tier, $5 billing email, $6 settings, $7 custom limits
INSERT INTO organizations (id, name, slug, plan_tier, billing_email, settings, custom_limits)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *

-- name: insert_api_key
-- Store a new key (only its hash and display prefix). $1 id, $2 org, $3 name, $4 hash, $5 prefix, $6 queues,
-- $7 rate limit per minute, $8 expiry
INSERT INTO api_keys (id, organization_id, name, key_hash, key_prefix, queues, rate_limit, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING created_at

-- name: get_organization
-- One organization by id.
SELECT * FROM organizations WHERE id = $1

-- name: lock_organization
-- One organization by id, locked for an update or delete in this transaction.
SELECT * FROM organizations WHERE id = $1 FOR UPDATE

-- name: slug_taken
-- Whether any organization (live or soft-deleted) uses this slug.
SELECT EXISTS (SELECT 1 FROM organizations WHERE slug = $1)

-- name: update_organization
-- Change the given fields of an organization; a null argument keeps the stored value, except billing email
-- and custom limits, which are written (null included) when their flag is true.
-- $1 id, $2 name, $3 settings, $4 set billing email?, $5 billing email, $6 plan tier, $7 set custom limits?,
-- $8 custom limits
UPDATE organizations SET
    name = COALESCE($2::text, name),
    settings = COALESCE($3::jsonb, settings),
    billing_email = CASE WHEN $4::bool THEN $5::text ELSE billing_email END,
    plan_tier = COALESCE($6::text, plan_tier),
    custom_limits = CASE WHEN $7::bool THEN $8::jsonb ELSE custom_limits END,
    updated_at = now()
WHERE id = $1
RETURNING *

-- name: set_webhook_token
-- Replace (or, with null, clear) the organization's incoming-webhook token.
UPDATE organizations
SET settings = settings || jsonb_build_object('webhook_token', $2::text), updated_at = now()
WHERE id = $1
RETURNING settings->>'webhook_token' AS webhook_token

-- name: webhook_token
-- The organization's incoming-webhook token, or null.
SELECT settings->>'webhook_token' AS webhook_token FROM organizations WHERE id = $1

-- name: delete_blockers
-- What keeps an organization from being deleted: unfinished jobs and live workers.
SELECT
    (SELECT count(*) FROM jobs
     WHERE organization_id = $1 AND status IN ('pending', 'scheduled', 'processing')) AS active_jobs,
    (SELECT count(*) FROM workers
     WHERE organization_id = $1 AND status IN ('healthy', 'degraded', 'draining')) AS live_workers

-- name: active_schedule_count
-- Active cron schedules of an organization (only run when the schedules table exists).
SELECT count(*) FROM schedules WHERE organization_id = $1 AND is_active

-- name: tenant_tables
-- Every table of the schema that holds per-organization rows (hard delete sweeps them all).
SELECT c.relname AS table_name
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.attname = 'organization_id' AND NOT a.attisdropped AND a.attnum > 0
  AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname = current_schema()
  AND c.relname <> 'organizations'
ORDER BY c.relname

-- name: delete_organization
-- Remove the organization row (tables with a foreign key to it cascade).
DELETE FROM organizations WHERE id = $1 RETURNING id

-- name: soft_delete_organization
-- Soft delete: the tier becomes `deleted` (every key of it is then rejected).
UPDATE organizations SET plan_tier = 'deleted', updated_at = now() WHERE id = $1 RETURNING id

-- name: revoke_all_api_keys
-- Deactivate every key of an organization.
UPDATE api_keys SET is_active = false WHERE organization_id = $1 AND is_active

-- name: list_members
-- Active keys of an organization, oldest first (the "members" view).
SELECT id, name, queues, created_at FROM api_keys
WHERE organization_id = $1 AND is_active
ORDER BY created_at, id

-- name: quota_lock
-- Serialize cap checks of one (organization, resource) pair until the transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended($1::text, 0))

-- name: list_api_keys
-- The newest 100 keys of an organization, revoked ones included.
SELECT id, name, key_prefix, queues, rate_limit, is_active, created_at, last_used, expires_at FROM api_keys
WHERE organization_id = $1
ORDER BY created_at DESC, id DESC
LIMIT 100

-- name: get_api_key
-- One key of an organization.
SELECT id, name, key_prefix, queues, rate_limit, is_active, created_at, last_used, expires_at FROM api_keys
WHERE id = $1 AND organization_id = $2

-- name: count_active_api_keys
-- Keys that still authenticate (active and not expired): the api_keys quota.
SELECT count(*) FROM api_keys
WHERE organization_id = $1 AND is_active AND (expires_at IS NULL OR expires_at > now())

-- name: update_api_key
-- Change the given fields of a key; null keeps a value, except $6 (rate limit), applied when $5 is true.
-- $1 id, $2 org, $3 name, $4 queues, $5 set rate limit?, $6 rate limit, $7 is_active
UPDATE api_keys SET
    name = COALESCE($3::text, name),
    queues = COALESCE($4::text[], queues),
    rate_limit = CASE WHEN $5::bool THEN $6::int ELSE rate_limit END,
    is_active = COALESCE($7::bool, is_active)
WHERE id = $1 AND organization_id = $2
RETURNING id, name, key_prefix, queues, rate_limit, is_active, created_at, last_used, expires_at

-- name: revoke_api_key
-- Soft revoke one key.
UPDATE api_keys SET is_active = false WHERE id = $1 AND organization_id = $2 RETURNING id

-- name: optional_tables
-- Which tables of later features exist yet (with the column each count needs).
SELECT
    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('schedules') AND attname = 'is_active'
            AND NOT attisdropped) AS schedules,
    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('workflows') AND attname = 'status'
            AND NOT attisdropped) AS workflows,
    EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('outgoing_webhooks') AND attname = 'enabled'
            AND NOT attisdropped) AS webhooks

-- name: usage_counts
-- The counters of UsageInfo that always exist. $1 org, $2 today (UTC date), $3 queues of active schedules
SELECT
    COALESCE((SELECT jobs_created FROM usage_daily WHERE organization_id = $1 AND day = $2), 0) AS jobs_today,
    (SELECT count(*) FROM jobs
     WHERE organization_id = $1 AND status IN ('pending', 'scheduled', 'processing')) AS active_jobs,
    (SELECT count(*) FROM (
        SELECT queue_name FROM queue_configs WHERE organization_id = $1
        UNION SELECT DISTINCT queue_name FROM jobs WHERE organization_id = $1
        UNION SELECT unnest($3::text[])
     ) q) AS queues,
    (SELECT count(*) FROM workers WHERE organization_id = $1 AND status IN ('healthy', 'degraded')) AS workers,
    (SELECT count(*) FROM api_keys
     WHERE organization_id = $1 AND is_active AND (expires_at IS NULL OR expires_at > now())) AS api_keys

-- name: usage_schedules
-- Active schedules of an organization and the queues they target.
SELECT count(*) AS n, COALESCE(array_agg(DISTINCT queue_name), '{}') AS queues
FROM schedules WHERE organization_id = $1 AND is_active

-- name: usage_workflows
-- Workflows still running (pending or running).
SELECT count(*) FROM workflows WHERE organization_id = $1 AND status IN ('pending', 'running')

-- name: usage_webhooks
-- Enabled outgoing webhooks.
SELECT count(*) FROM outgoing_webhooks WHERE organization_id = $1 AND enabled

-- name: reset_daily_usage
-- Set an organization's job counter of one day to 0.
UPDATE usage_daily SET jobs_created = 0 WHERE organization_id = $1 AND day = $2

-- name: admin_count_organizations
-- How many organizations match the admin list filters. $1 tier or null, $2 ILIKE pattern or null
SELECT count(*) FROM organizations
WHERE ($1::text IS NULL OR plan_tier = $1)
  AND ($2::text IS NULL OR name ILIKE $2 OR slug ILIKE $2 OR billing_email ILIKE $2)

-- name: admin_list_organizations
-- One page of organizations. $1 tier, $2 pattern, $3 limit, $4 offset, $5 sort column, $6 ascending
SELECT id, name, slug, plan_tier, billing_email, created_at, updated_at FROM organizations
WHERE ($1::text IS NULL OR plan_tier = $1)
  AND ($2::text IS NULL OR name ILIKE $2 OR slug ILIKE $2 OR billing_email ILIKE $2)
ORDER BY
    CASE WHEN $6::bool THEN (CASE $5::text WHEN 'name' THEN name WHEN 'slug' THEN slug
                                           WHEN 'plan_tier' THEN plan_tier END) END ASC,
    CASE WHEN NOT $6::bool THEN (CASE $5::text WHEN 'name' THEN name WHEN 'slug' THEN slug
                                               WHEN 'plan_tier' THEN plan_tier END) END DESC,
    CASE WHEN $6::bool THEN (CASE $5::text WHEN 'created_at' THEN created_at
                                           WHEN 'updated_at' THEN updated_at END) END ASC,
    CASE WHEN NOT $6::bool THEN (CASE $5::text WHEN 'created_at' THEN created_at
                                               WHEN 'updated_at' THEN updated_at END) END DESC,
    id
LIMIT $3 OFFSET $4

-- name: admin_usage_many
-- The admin list's usage numbers for several organizations at once.
-- $1 org ids, $2 today, $3/$4 (org, queue) pairs of active schedules
SELECT o.id,
    COALESCE((SELECT jobs_created FROM usage_daily u WHERE u.organization_id = o.id AND u.day = $2), 0)
        AS jobs_today,
    (SELECT count(*) FROM jobs j
     WHERE j.organization_id = o.id AND j.status IN ('pending', 'scheduled', 'processing')) AS active_jobs,
    (SELECT count(*) FROM (
        SELECT queue_name FROM queue_configs c WHERE c.organization_id = o.id
        UNION SELECT DISTINCT queue_name FROM jobs j WHERE j.organization_id = o.id
        UNION SELECT s.queue_name FROM unnest($3::uuid[], $4::text[]) AS s(org, queue_name) WHERE s.org = o.id
     ) q) AS queues,
    (SELECT count(*) FROM workers w WHERE w.organization_id = o.id AND w.status IN ('healthy', 'degraded'))
        AS workers,
    (SELECT count(*) FROM api_keys k
     WHERE k.organization_id = o.id AND k.is_active AND (k.expires_at IS NULL OR k.expires_at > now())) AS api_keys
FROM unnest($1::uuid[]) AS o(id)

-- name: admin_schedule_queues
-- (org, queue) pairs of active schedules of several organizations.
SELECT DISTINCT organization_id, queue_name FROM schedules WHERE organization_id = ANY($1::uuid[]) AND is_active

-- name: admin_org_totals
-- Total jobs and active keys of one organization (admin detail).
SELECT
    (SELECT count(*) FROM jobs WHERE organization_id = $1) AS total_jobs,
    (SELECT count(*) FROM api_keys WHERE organization_id = $1 AND is_active) AS api_keys_count

-- name: admin_stats
-- Server-wide numbers for GET /admin/stats. $1 today (UTC date)
SELECT
    (SELECT count(*) FROM organizations) AS organizations,
    (SELECT count(*) FROM organizations WHERE plan_tier <> 'deleted') AS active_organizations,
    (SELECT count(*) FROM organizations WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC')
        AS created_today,
    (SELECT count(*) FROM organizations WHERE created_at >= now() - interval '7 days') AS created_this_week,
    (SELECT COALESCE(sum(jobs_created), 0) FROM usage_daily WHERE day = $1) AS jobs_today,
    (SELECT count(*) FROM jobs WHERE status = 'completed' AND completed_at > now() - interval '24 hours')
        AS completed_24h,
    (SELECT count(*) FROM jobs WHERE status IN ('failed', 'deadletter')
        AND COALESCE(completed_at, updated_at) > now() - interval '24 hours') AS failed_24h,
    (SELECT count(*) FROM (SELECT organization_id, queue_name FROM queue_configs
                           UNION SELECT DISTINCT organization_id, queue_name FROM jobs) q) AS total_queues,
    (SELECT count(*) FROM workers WHERE status <> 'offline') AS workers,
    (SELECT count(*) FROM workers WHERE status = 'healthy') AS healthy_workers,
    (SELECT count(*) FROM workers WHERE status = 'degraded') AS degraded_workers

-- name: admin_jobs_by_status
-- Jobs per status across every organization.
SELECT status, count(*) AS n FROM jobs GROUP BY status

-- name: admin_orgs_by_plan
-- Organizations per stored tier.
SELECT plan_tier, count(*) AS n FROM organizations GROUP BY plan_tier ORDER BY plan_tier

-- name: dashboard_jobs
-- Job numbers of the dashboard; $2 = LIKE patterns of a scoped key's queues, or null.
SELECT
    count(*) AS total,
    count(*) FILTER (WHERE status = 'pending') AS pending,
    count(*) FILTER (WHERE status = 'processing') AS processing,
    count(*) FILTER (WHERE status = 'completed' AND completed_at > now() - interval '24 hours') AS completed_24h,
    count(*) FILTER (WHERE status IN ('failed', 'deadletter')
                     AND COALESCE(completed_at, updated_at) > now() - interval '24 hours') AS failed_24h,
    count(*) FILTER (WHERE status = 'deadletter') AS deadletter,
    avg(EXTRACT(EPOCH FROM (started_at - created_at)) * 1000)
        FILTER (WHERE started_at IS NOT NULL AND started_at > now() - interval '24 hours') AS avg_wait_ms,
    avg(EXTRACT(EPOCH FROM (completed_at - started_at)) * 1000)
        FILTER (WHERE status = 'completed' AND started_at IS NOT NULL
                AND completed_at > now() - interval '24 hours') AS avg_processing_ms,
    count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS created_1h,
    count(*) FILTER (WHERE status = 'completed' AND completed_at > now() - interval '1 hour') AS completed_1h,
    count(*) FILTER (WHERE status IN ('failed', 'deadletter')
                     AND COALESCE(completed_at, updated_at) > now() - interval '1 hour') AS failed_1h
FROM jobs
WHERE organization_id = $1 AND ($2::text[] IS NULL OR queue_name LIKE ANY($2))

-- name: dashboard_queues
-- Up to 20 queues, most pending first: configured queues and queues with jobs.
WITH names AS (
    SELECT queue_name FROM queue_configs WHERE organization_id = $1
    UNION SELECT DISTINCT queue_name FROM jobs WHERE organization_id = $1
), counts AS (
    SELECT queue_name,
           count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) FILTER (WHERE status = 'processing') AS processing
    FROM jobs
    WHERE organization_id = $1 AND status IN ('pending', 'processing')
    GROUP BY queue_name
)
SELECT n.queue_name AS name,
       COALESCE(c.pending, 0) AS pending,
       COALESCE(c.processing, 0) AS processing,
       COALESCE(NOT qc.enabled OR qc.settings->'paused' = 'true'::jsonb, false) AS paused
FROM names n
LEFT JOIN counts c ON c.queue_name = n.queue_name
LEFT JOIN queue_configs qc ON qc.organization_id = $1 AND qc.queue_name = n.queue_name
WHERE $2::text[] IS NULL OR n.queue_name LIKE ANY($2)
ORDER BY pending DESC, n.queue_name
LIMIT 20

-- name: dashboard_workers
-- Registered (not offline) workers and how many sent a heartbeat within the last minute.
SELECT count(*) AS total,
       count(*) FILTER (WHERE last_heartbeat > now() - interval '1 minute') AS healthy
FROM workers
WHERE organization_id = $1 AND status <> 'offline'
  AND ($2::text[] IS NULL OR queue_name LIKE ANY($2))
