-- name: insert_webhook_event
-- Outbox rows for one event of an organization: one per enabled webhook subscribed to it (events raised
-- from Python code paths; the job statements in jobs.sql carry their own outbox CTE).
-- $1 org, $2 event, $3 data as JSON text
INSERT INTO webhook_deliveries (id, organization_id, webhook_id, url, secret, event, payload)
SELECT d.id, $1, d.webhook_id, d.url, d.secret, $2, spooled_webhook_body(d.id, $2::text, $3::text::jsonb)
FROM (SELECT gen_random_uuid() AS id, t.webhook_id, t.url, t.secret
      FROM spooled_webhook_targets($1, $2::text, NULL) t
      OFFSET 0) d

-- name: list_webhooks
-- The organization's outgoing webhooks, oldest first.
SELECT * FROM outgoing_webhooks WHERE organization_id = $1 ORDER BY created_at, id

-- name: get_webhook
-- One outgoing webhook of the organization.
SELECT * FROM outgoing_webhooks WHERE id = $1 AND organization_id = $2

-- name: lock_webhook
-- One outgoing webhook, locked for an update.
SELECT * FROM outgoing_webhooks WHERE id = $1 AND organization_id = $2 FOR UPDATE

-- name: lock_webhook_quota
-- Serialize the `webhooks` cap check of one organization (semantics.md §12).
SELECT pg_advisory_xact_lock(hashtextextended('spooled:quota:webhooks:' || $1::uuid::text, 0))

-- name: count_enabled_webhooks
-- The `webhooks` quota counts enabled webhooks.
SELECT count(*) FROM outgoing_webhooks WHERE organization_id = $1 AND enabled

-- name: insert_webhook
-- Create an outgoing webhook.
-- $1 id, $2 org, $3 name, $4 url, $5 events, $6 secret, $7 enabled
INSERT INTO outgoing_webhooks (id, organization_id, name, url, events, secret, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING *

-- name: update_webhook
-- Change an outgoing webhook; NULL keeps a field. Re-enabling restarts the auto-disable streak.
-- $1 id, $2 org, $3 name, $4 url, $5 events, $6 replace the secret, $7 secret, $8 enabled
UPDATE outgoing_webhooks
SET name = COALESCE($3, name),
    url = COALESCE($4, url),
    events = COALESCE($5, events),
    secret = CASE WHEN $6 THEN $7 ELSE secret END,
    consecutive_failures = CASE WHEN $8 AND NOT enabled THEN 0 ELSE consecutive_failures END,
    enabled = COALESCE($8, enabled),
    updated_at = clock_timestamp()
WHERE id = $1 AND organization_id = $2
RETURNING *

-- name: drop_pending_deliveries
-- Pending deliveries of a webhook that was disabled are dropped (semantics.md §15).
DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND organization_id = $2 AND status = 'pending'

-- name: delete_webhook
-- Delete an outgoing webhook; its deliveries go with it.
DELETE FROM outgoing_webhooks WHERE id = $1 AND organization_id = $2 RETURNING id

-- name: list_webhook_deliveries
-- Deliveries of one webhook, newest first, optionally of one status.
-- $1 webhook, $2 org, $3 status|null, $4 limit, $5 offset
SELECT id, webhook_id, event, payload, status, status_code, response_body, error, attempts, next_attempt_at,
       created_at, delivered_at
FROM webhook_deliveries
WHERE webhook_id = $1 AND organization_id = $2 AND ($3::text IS NULL OR status = $3)
ORDER BY created_at DESC, id DESC
LIMIT $4 OFFSET $5

-- name: lock_webhook_delivery
-- One delivery of a webhook, locked for a manual retry.
SELECT d.id, d.webhook_id, d.event, d.payload, d.status, d.attempts, d.claimed_until > now() AS claimed,
       w.url, w.secret
FROM webhook_deliveries d JOIN outgoing_webhooks w ON w.id = d.webhook_id
WHERE d.id = $1 AND d.webhook_id = $2 AND d.organization_id = $3
FOR UPDATE OF d

-- name: hold_webhook_delivery
-- Keep the dispatcher away from a delivery for $2 seconds (a manual retry is sending it).
UPDATE webhook_deliveries SET claimed_until = now() + make_interval(secs => $2) WHERE id = $1

-- name: claim_webhook_deliveries
-- Claim up to $1 due deliveries for $2 seconds, skipping rows another dispatcher holds. Rows of a webhook
-- that is disabled are deleted instead. Webhook rows go to the webhook's current url and secret.
WITH due AS (
    SELECT d.id, (w.id IS NOT NULL AND NOT w.enabled) AS orphaned,
           CASE WHEN d.webhook_id IS NULL THEN d.url ELSE w.url END AS target_url,
           CASE WHEN d.webhook_id IS NULL THEN d.secret ELSE w.secret END AS target_secret
    FROM webhook_deliveries d
    LEFT JOIN outgoing_webhooks w ON w.id = d.webhook_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND (d.claimed_until IS NULL OR d.claimed_until <= now())
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
), dropped AS (
    DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM due WHERE orphaned)
)
UPDATE webhook_deliveries d
SET claimed_until = now() + make_interval(secs => $2)
FROM due
WHERE d.id = due.id AND NOT due.orphaned
RETURNING d.id, d.organization_id, d.webhook_id, d.event, d.payload, d.attempts,
          due.target_url AS url, due.target_secret AS secret

-- name: record_webhook_attempt
-- Book one attempt. $3 outcome: success | retry (pending again after $7 s) | failed (finally; counts
-- against the webhook, which is disabled after $8 consecutive failed deliveries) | still_failed (a manual
-- retry of a failed delivery that failed again: no counters move). Fenced by the attempt number.
-- $1 delivery, $2 attempt number, $3 outcome, $4 status code, $5 response body, $6 error, $7 delay secs,
-- $8 auto-disable threshold
WITH d AS (
    UPDATE webhook_deliveries
    SET attempts = $2, status_code = $4, response_body = $5, error = $6, claimed_until = NULL,
        status = CASE $3::text WHEN 'retry' THEN 'pending' WHEN 'still_failed' THEN 'failed' ELSE $3::text END,
        delivered_at = CASE WHEN $3::text = 'success' THEN now() END,
        next_attempt_at = CASE WHEN $3::text = 'retry' THEN now() + make_interval(secs => $7) END
    WHERE id = $1 AND attempts = $2 - 1 AND status <> 'success'
    RETURNING webhook_id
), hook AS (
    UPDATE outgoing_webhooks w
    SET last_triggered_at = now(),
        failure_count = CASE $3::text WHEN 'success' THEN 0
                                      WHEN 'failed' THEN w.failure_count + 1 ELSE w.failure_count END,
        consecutive_failures = CASE $3::text WHEN 'success' THEN 0
                                             WHEN 'failed' THEN w.consecutive_failures + 1
                                             ELSE w.consecutive_failures END,
        last_status = CASE
            WHEN $3::text = 'success' THEN 'success'
            WHEN $3::text = 'failed' AND w.enabled AND w.consecutive_failures + 1 >= $8 THEN 'auto_disabled'
            WHEN $3::text = 'failed' THEN 'failed'
            ELSE w.last_status END,
        enabled = w.enabled AND NOT ($3::text = 'failed' AND w.consecutive_failures + 1 >= $8)
    FROM d
    WHERE w.id = d.webhook_id
    RETURNING w.id, w.enabled
), dropped AS (
    DELETE FROM webhook_deliveries p USING hook
    WHERE NOT hook.enabled AND p.webhook_id = hook.id AND p.status = 'pending' AND p.id <> $1
)
SELECT (SELECT count(*) FROM d) AS recorded, (SELECT bool_and(enabled) FROM hook) AS webhook_enabled

-- name: release_webhook_deliveries
-- Hand claimed deliveries back at shutdown so another dispatcher sends them at once.
UPDATE webhook_deliveries SET claimed_until = NULL WHERE id = ANY($1::uuid[]) AND status = 'pending'

-- name: orgs_with_webhooks
-- Organizations with at least one enabled webhook (whose events wake the dispatcher).
SELECT DISTINCT organization_id FROM outgoing_webhooks WHERE enabled

-- name: delete_old_webhook_rows
-- Retention: finished deliveries and ingest audit rows older than the organization's history retention.
-- $1 tiers[], $2 days[] (the plan table)
WITH plan AS (
    SELECT * FROM unnest($1::text[], $2::int[]) AS p(tier, days)
), d AS (
    DELETE FROM webhook_deliveries x USING organizations o, plan p
    WHERE o.id = x.organization_id AND p.tier = o.plan_tier AND p.days > 0 AND x.status <> 'pending'
      AND x.created_at < now() - make_interval(days => p.days)
    RETURNING 1
), a AS (
    DELETE FROM ingest_audit x USING organizations o, plan p
    WHERE o.id = x.organization_id AND p.tier = o.plan_tier AND p.days > 0
      AND x.created_at < now() - make_interval(days => p.days)
    RETURNING 1
)
SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM a)

-- name: ingest_org
-- The organization an incoming webhook names (cross-organization lookup by id, maintenance role).
SELECT id, plan_tier, custom_limits, settings FROM organizations WHERE id = $1 AND plan_tier <> 'deleted'

-- name: insert_ingest_audit
-- One audit row of an incoming webhook request.
-- $1 org, $2 provider, $3 event_type, $4 matched queue, $5 job id, $6 status, $7 error
INSERT INTO ingest_audit (id, organization_id, provider, event_type, matched_queue, job_id, status, error)
VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7)

-- name: list_ingest_audit
-- Accepted incoming webhook requests of the organization, newest first.
-- $1 org, $2 status|null, $3 since|null, $4 queue|null, $5 limit, $6 offset
SELECT id, provider, event_type, matched_queue, job_id, status, created_at FROM ingest_audit
WHERE organization_id = $1 AND status IN ('created', 'duplicate')
  AND ($2::text IS NULL OR status = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
  AND ($4::text IS NULL OR matched_queue = $4)
ORDER BY created_at DESC, id DESC
LIMIT $5 OFFSET $6
