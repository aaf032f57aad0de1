-- 0003: outgoing webhooks with their durable delivery outbox, and the audit log of incoming webhooks.
--
-- A state change and its delivery rows commit in one transaction (semantics.md §15 "Durability"): the job
-- statements in sql/jobs.sql insert into webhook_deliveries through spooled_webhook_targets() and
-- spooled_webhook_body(), and every replica's dispatcher sends the due rows.

CREATE TABLE outgoing_webhooks (
    id                   uuid PRIMARY KEY,
    organization_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                 text NOT NULL,
    url                  text NOT NULL,
    events               text[] NOT NULL,
    secret               text,
    enabled              boolean NOT NULL DEFAULT true,
    -- Deliveries that finally failed since the last success (on the wire).
    failure_count        integer NOT NULL DEFAULT 0,
    -- The same streak, but restarted when the webhook is re-enabled: 20 of them disable it again.
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_triggered_at    timestamptz,
    last_status          text,
    created_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT outgoing_webhooks_last_status_check
        CHECK (last_status IS NULL OR last_status IN ('success', 'failed', 'auto_disabled'))
);
CREATE INDEX outgoing_webhooks_org_idx ON outgoing_webhooks (organization_id, created_at);
-- Every job transition probes this: tiny, and empty for organizations without webhooks.
CREATE INDEX outgoing_webhooks_enabled_idx ON outgoing_webhooks (organization_id) WHERE enabled;

-- The outbox. webhook_id is NULL for completion callbacks (a job's completion_webhook), which keep their own
-- url and secret; rows of a webhook use the webhook's current url and secret when sent.
CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    webhook_id      uuid REFERENCES outgoing_webhooks (id) ON DELETE CASCADE,
    url             text NOT NULL,
    secret          text,
    event           text NOT NULL,
    -- The exact body sent on every attempt: {id, event, created_at, data}.
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    status_code     integer,
    response_body   text,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT now(),
    -- A dispatcher holds the row until then; a crashed holder's rows come due again afterwards.
    claimed_until   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('pending', 'success', 'failed'))
);
-- The dispatcher: due pending rows in time order.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, created_at DESC, id DESC)
    WHERE webhook_id IS NOT NULL;
-- Retention of finished rows.
CREATE INDEX webhook_deliveries_finished_idx ON webhook_deliveries (created_at) WHERE status <> 'pending';

-- One row per incoming-webhook request that reached a known organization. No payloads, no signatures.
CREATE TABLE ingest_audit (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    provider        text NOT NULL,
    event_type      text NOT NULL DEFAULT '',
    matched_queue   text,
    job_id          uuid,
    -- created | duplicate are accepted requests (listed); rejected and ignored (GitHub ping) are not.
    status          text NOT NULL,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT ingest_audit_status_check CHECK (status IN ('created', 'duplicate', 'rejected', 'ignored'))
);
CREATE INDEX ingest_audit_org_created_idx ON ingest_audit (organization_id, created_at DESC, id DESC);
CREATE INDEX ingest_audit_created_idx ON ingest_audit (created_at);

-- Where an event of an organization goes: every enabled webhook subscribed to it, plus the completion
-- callback of `callback_job` when one is given and the job has one. Inlined into the calling statement.
CREATE FUNCTION spooled_webhook_targets(org uuid, event text, callback_job uuid)
    RETURNS TABLE (webhook_id uuid, url text, secret text)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT w.id, w.url, w.secret FROM outgoing_webhooks w
        WHERE w.organization_id = org AND w.enabled AND event = ANY (w.events)
        UNION ALL
        SELECT NULL::uuid, j.completion_webhook, j.completion_webhook_secret FROM jobs j
        WHERE callback_job IS NOT NULL AND j.id = callback_job AND j.completion_webhook IS NOT NULL
    $$;

-- The request body of a delivery (semantics.md §15), fixed when the row is written.
CREATE FUNCTION spooled_webhook_body(delivery_id uuid, event text, data jsonb) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT jsonb_build_object(
            'id', delivery_id, 'event', event,
            'created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'data', data)
    $$;

GRANT EXECUTE ON FUNCTION spooled_webhook_targets(uuid, text, uuid) TO spooled_app, spooled_maintenance;
GRANT EXECUTE ON FUNCTION spooled_webhook_body(uuid, text, jsonb) TO spooled_app, spooled_maintenance;

-- Row-level security: forced, one policy per role (as in 0001).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['outgoing_webhooks', 'webhook_deliveries', 'ingest_audit']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I TO spooled_app '
                       'USING (organization_id = spooled_current_org()) '
                       'WITH CHECK (organization_id = spooled_current_org())', t);
        EXECUTE format('CREATE POLICY maintenance_all ON %I TO spooled_maintenance USING (true) WITH CHECK (true)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO spooled_app, spooled_maintenance', t);
    END LOOP;
END
$$;
