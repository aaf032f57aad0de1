-- 0001: organizations, API keys, jobs and everything the job lifecycle needs.
-- Tenant tables carry organization_id and a forced row-level-security policy. The application runs as
-- spooled_app (sees only the organization named by app.current_org_id); background loops and cross-org
-- lookups run as spooled_maintenance (a policy that sees every row). Neither role owns the tables.

DO $$
BEGIN
    -- Roles are cluster-wide: another database's migration may create them at the same moment.
    BEGIN
        CREATE ROLE spooled_app NOLOGIN NOBYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE spooled_maintenance NOLOGIN NOBYPASSRLS;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT spooled_app TO %I', current_user);
    EXECUTE format('GRANT spooled_maintenance TO %I', current_user);
EXCEPTION WHEN others THEN
    -- Already a member (or a superuser, for whom SET ROLE needs no grant).
    NULL;
END
$$;

-- The tenant id of the current transaction, or NULL (which matches no row: fail closed).
CREATE FUNCTION spooled_current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.current_org_id', true), '')::uuid $$;

CREATE TABLE organizations (
    id              uuid PRIMARY KEY,
    name            text NOT NULL,
    slug            text NOT NULL,
    plan_tier       text NOT NULL DEFAULT 'unlimited',
    billing_email   text,
    settings        jsonb NOT NULL DEFAULT '{}'::jsonb,
    custom_limits   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX organizations_slug_key ON organizations (slug);
CREATE UNIQUE INDEX organizations_billing_email_key ON organizations (lower(billing_email))
    WHERE billing_email IS NOT NULL AND plan_tier <> 'deleted';

CREATE TABLE api_keys (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    key_hash        text NOT NULL,
    key_prefix      text NOT NULL,
    queues          text[] NOT NULL DEFAULT '{}',
    rate_limit      integer,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used       timestamptz,
    expires_at      timestamptz
);
CREATE UNIQUE INDEX api_keys_key_hash_key ON api_keys (key_hash);
CREATE INDEX api_keys_org_idx ON api_keys (organization_id, created_at DESC);

-- Logins (JWT `sid`) that were logged out; checked on every JWT request.
CREATE TABLE revoked_sessions (
    sid             uuid PRIMARY KEY,
    organization_id uuid NOT NULL,
    expires_at      timestamptz NOT NULL
);

-- Jobs created per organization per UTC day (the jobs_per_day quota and usage reports).
CREATE TABLE usage_daily (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    day             date NOT NULL,
    jobs_created    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, day)
);

CREATE TABLE queue_configs (
    id                      uuid PRIMARY KEY,
    organization_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    queue_name              text NOT NULL,
    max_retries             integer,
    default_timeout         integer,
    rate_limit              integer,
    enabled                 boolean NOT NULL DEFAULT true,
    retry_backoff_base_secs integer,
    retry_backoff_max_secs  integer,
    settings                jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, queue_name)
);

-- No foreign key to organizations: its check would lock the organization row (FOR KEY SHARE) in every
-- enqueue, and concurrent enqueues of one organization would queue on that lock. Organization deletion
-- removes jobs explicitly.
CREATE TABLE jobs (
    id                        uuid PRIMARY KEY,
    organization_id           uuid NOT NULL,
    queue_name                text NOT NULL,
    status                    text NOT NULL,
    payload                   jsonb,
    result                    jsonb,
    retry_count               integer NOT NULL DEFAULT 0,
    max_retries               integer NOT NULL,
    priority                  integer NOT NULL DEFAULT 0,
    timeout_seconds           integer NOT NULL,
    last_error                text,
    tags                      jsonb,
    created_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    scheduled_at              timestamptz,
    started_at                timestamptz,
    completed_at              timestamptz,
    expires_at                timestamptz,
    lease_expires_at          timestamptz,
    lease_id                  uuid,
    assigned_worker_id        text,
    parent_job_id             uuid,
    completion_webhook        text,
    completion_webhook_secret text,
    idempotency_key           text,
    workflow_id               uuid,
    workflow_key              text,
    workflow_step             integer,
    dependency_mode           text NOT NULL DEFAULT 'all',
    dependencies_met          boolean,
    progress                  double precision,
    progress_message          text,
    progress_updated_at       timestamptz,
    CONSTRAINT jobs_status_check CHECK (status IN
        ('pending', 'scheduled', 'processing', 'completed', 'failed', 'deadletter', 'cancelled')),
    CONSTRAINT jobs_priority_check CHECK (priority BETWEEN -100 AND 100),
    CONSTRAINT jobs_dependency_mode_check CHECK (dependency_mode IN ('all', 'any'))
);
-- One job per (organization, idempotency key); replays find it through this index.
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (organization_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- The claim index: eligible rows of one queue in claim order.
CREATE INDEX jobs_claim_idx ON jobs (organization_id, queue_name, priority DESC, created_at, id)
    WHERE status IN ('pending', 'scheduled');
CREATE INDEX jobs_org_created_idx ON jobs (organization_id, created_at DESC, id DESC);
CREATE INDEX jobs_org_status_queue_idx ON jobs (organization_id, status, queue_name);
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX jobs_due_idx ON jobs (scheduled_at) WHERE status IN ('pending', 'scheduled') AND scheduled_at IS NOT NULL;
CREATE INDEX jobs_worker_idx ON jobs (assigned_worker_id) WHERE status = 'processing';
CREATE INDEX jobs_finished_idx ON jobs (completed_at) WHERE status IN ('completed', 'cancelled');
CREATE INDEX jobs_parent_idx ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
CREATE INDEX jobs_workflow_idx ON jobs (workflow_id, workflow_step) WHERE workflow_id IS NOT NULL;
-- The hot table churns: keep its statistics and dead tuples under control.
ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
                      fillfactor = 80);

-- Dependency edges: job_id waits for depends_on_job_id.
CREATE TABLE job_dependencies (
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    job_id            uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    depends_on_job_id uuid NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, depends_on_job_id)
);
CREATE INDEX job_dependencies_parent_idx ON job_dependencies (depends_on_job_id);

-- One row per state transition (GET /jobs/{id}/history).
CREATE TABLE job_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id uuid NOT NULL,
    job_id          uuid NOT NULL,
    event_type      text NOT NULL,
    worker_id       text,
    details         jsonb,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX job_history_job_idx ON job_history (job_id, id);
-- Retention scans by age; BRIN stays tiny and cheap to maintain on an append-only table.
CREATE INDEX job_history_created_idx ON job_history USING brin (created_at);

-- Audit row for every transition into deadletter.
CREATE TABLE dlq_entries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  uuid NOT NULL,
    job_id           uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    queue_name       text NOT NULL,
    reason           text NOT NULL,
    original_payload jsonb,
    error_details    jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dlq_entries_job_idx ON dlq_entries (job_id);

CREATE TABLE workers (
    id              text PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    queue_name      text NOT NULL,
    queue_names     text[] NOT NULL DEFAULT '{}',
    hostname        text NOT NULL,
    worker_type     text,
    max_concurrency integer NOT NULL DEFAULT 5,
    current_jobs    integer NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'healthy',
    last_heartbeat  timestamptz NOT NULL DEFAULT now(),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    version         text,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workers_status_check CHECK (status IN ('healthy', 'degraded', 'draining', 'offline'))
);
CREATE INDEX workers_org_heartbeat_idx ON workers (organization_id, last_heartbeat DESC);

-- Row-level security: forced, one policy per role.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'usage_daily', 'queue_configs', 'jobs', 'job_dependencies',
                             'job_history', 'dlq_entries', 'workers', 'revoked_sessions']
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

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations TO spooled_app
    USING (id = spooled_current_org()) WITH CHECK (id = spooled_current_org());
CREATE POLICY maintenance_all ON organizations TO spooled_maintenance USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON organizations TO spooled_app, spooled_maintenance;
GRANT EXECUTE ON FUNCTION spooled_current_org() TO spooled_app, spooled_maintenance;
