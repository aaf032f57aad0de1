-- The schema that migrations/*.sql produce, as pg_dump --schema-only prints it (normalised).
-- Generated; do not edit. tests/db/test_schema_snapshot.py proves it matches the migrations.
-- Regenerate: cd server && SPOOLED_UPDATE_SCHEMA_SNAPSHOT=1 ../.venv/bin/pytest tests/db/test_schema_snapshot.py (then commit spooled_server/db/schema.sql)

CREATE FUNCTION public.spooled_active_schedule_queues(org uuid) RETURNS TABLE(schedule_queue text, first_at timestamp with time zone)
    LANGUAGE plpgsql STABLE
    AS $_$
BEGIN
    IF to_regclass('schedules') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE
        'SELECT queue_name, min(created_at) FROM schedules'
        ' WHERE organization_id = $1 AND is_active GROUP BY queue_name'
        USING org;
END
$_$;

CREATE FUNCTION public.spooled_current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.current_org_id', true), '')::uuid $$;

CREATE FUNCTION public.spooled_webhook_body(delivery_id uuid, event text, data jsonb) RETURNS jsonb
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT jsonb_build_object(
            'id', delivery_id, 'event', event,
            'created_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'data', data)
    $$;

CREATE FUNCTION public.spooled_webhook_targets(org uuid, event text, callback_job uuid) RETURNS TABLE(webhook_id uuid, url text, secret text)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
        SELECT w.id, w.url, w.secret FROM outgoing_webhooks w
        WHERE w.organization_id = org AND w.enabled AND event = ANY (w.events)
        UNION ALL
        SELECT NULL::uuid, j.completion_webhook, j.completion_webhook_secret FROM jobs j
        WHERE callback_job IS NOT NULL AND j.id = callback_job AND j.completion_webhook IS NOT NULL
    $$;

CREATE TABLE public.api_keys (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    name text NOT NULL,
    key_hash text NOT NULL,
    key_prefix text NOT NULL,
    queues text[] DEFAULT '{}'::text[] NOT NULL,
    rate_limit integer,
    is_active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_used timestamp with time zone,
    expires_at timestamp with time zone
);

ALTER TABLE ONLY public.api_keys FORCE ROW LEVEL SECURITY;

CREATE TABLE public.dlq_entries (
    id bigint NOT NULL,
    organization_id uuid NOT NULL,
    job_id uuid NOT NULL,
    queue_name text NOT NULL,
    reason text NOT NULL,
    original_payload jsonb,
    error_details jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY public.dlq_entries FORCE ROW LEVEL SECURITY;

ALTER TABLE public.dlq_entries ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.dlq_entries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.ingest_audit (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    provider text NOT NULL,
    event_type text DEFAULT ''::text NOT NULL,
    matched_queue text,
    job_id uuid,
    status text NOT NULL,
    error text,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT ingest_audit_status_check CHECK ((status = ANY (ARRAY['created'::text, 'duplicate'::text, 'rejected'::text, 'ignored'::text])))
);

ALTER TABLE ONLY public.ingest_audit FORCE ROW LEVEL SECURITY;

CREATE TABLE public.job_dependencies (
    organization_id uuid NOT NULL,
    job_id uuid NOT NULL,
    depends_on_job_id uuid NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY public.job_dependencies FORCE ROW LEVEL SECURITY;

CREATE TABLE public.job_history (
    id bigint NOT NULL,
    organization_id uuid NOT NULL,
    job_id uuid NOT NULL,
    event_type text NOT NULL,
    worker_id text,
    details jsonb,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL
);

ALTER TABLE ONLY public.job_history FORCE ROW LEVEL SECURITY;

ALTER TABLE public.job_history ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.job_history_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.jobs (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    queue_name text NOT NULL,
    status text NOT NULL,
    payload jsonb,
    result jsonb,
    retry_count integer DEFAULT 0 NOT NULL,
    max_retries integer NOT NULL,
    priority integer DEFAULT 0 NOT NULL,
    timeout_seconds integer NOT NULL,
    last_error text,
    tags jsonb,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    updated_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    scheduled_at timestamp with time zone,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    expires_at timestamp with time zone,
    lease_expires_at timestamp with time zone,
    lease_id uuid,
    assigned_worker_id text,
    parent_job_id uuid,
    completion_webhook text,
    completion_webhook_secret text,
    idempotency_key text,
    workflow_id uuid,
    workflow_key text,
    workflow_step integer,
    dependency_mode text DEFAULT 'all'::text NOT NULL,
    dependencies_met boolean,
    progress double precision,
    progress_message text,
    progress_updated_at timestamp with time zone,
    CONSTRAINT jobs_dependency_mode_check CHECK ((dependency_mode = ANY (ARRAY['all'::text, 'any'::text]))),
    CONSTRAINT jobs_priority_check CHECK (((priority >= '-100'::integer) AND (priority <= 100))),
    CONSTRAINT jobs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'scheduled'::text, 'processing'::text, 'completed'::text, 'failed'::text, 'deadletter'::text, 'cancelled'::text])))
)
WITH (autovacuum_vacuum_scale_factor='0.02', autovacuum_analyze_scale_factor='0.02', fillfactor='80');

ALTER TABLE ONLY public.jobs FORCE ROW LEVEL SECURITY;

CREATE TABLE public.organizations (
    id uuid NOT NULL,
    name text NOT NULL,
    slug text NOT NULL,
    plan_tier text DEFAULT 'unlimited'::text NOT NULL,
    billing_email text,
    settings jsonb DEFAULT '{}'::jsonb NOT NULL,
    custom_limits jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY public.organizations FORCE ROW LEVEL SECURITY;

CREATE TABLE public.outgoing_webhooks (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    name text NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    secret text,
    enabled boolean DEFAULT true NOT NULL,
    failure_count integer DEFAULT 0 NOT NULL,
    consecutive_failures integer DEFAULT 0 NOT NULL,
    last_triggered_at timestamp with time zone,
    last_status text,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    updated_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT outgoing_webhooks_last_status_check CHECK (((last_status IS NULL) OR (last_status = ANY (ARRAY['success'::text, 'failed'::text, 'auto_disabled'::text]))))
);

ALTER TABLE ONLY public.outgoing_webhooks FORCE ROW LEVEL SECURITY;

CREATE TABLE public.queue_configs (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    queue_name text NOT NULL,
    max_retries integer,
    default_timeout integer,
    rate_limit integer,
    enabled boolean DEFAULT true NOT NULL,
    retry_backoff_base_secs integer,
    retry_backoff_max_secs integer,
    settings jsonb DEFAULT '{}'::jsonb NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY public.queue_configs FORCE ROW LEVEL SECURITY;

CREATE TABLE public.revoked_sessions (
    sid uuid NOT NULL,
    organization_id uuid NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY public.revoked_sessions FORCE ROW LEVEL SECURITY;

CREATE TABLE public.schedule_runs (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    schedule_id uuid NOT NULL,
    job_id uuid,
    status text NOT NULL,
    error_message text,
    started_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    completed_at timestamp with time zone,
    CONSTRAINT schedule_runs_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'completed'::text, 'failed'::text])))
);

ALTER TABLE ONLY public.schedule_runs FORCE ROW LEVEL SECURITY;

CREATE TABLE public.schedules (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    name text NOT NULL,
    description text,
    cron_expression text NOT NULL,
    timezone text DEFAULT 'UTC'::text NOT NULL,
    queue_name text NOT NULL,
    payload_template jsonb,
    priority integer DEFAULT 0 NOT NULL,
    max_retries integer,
    timeout_seconds integer,
    is_active boolean DEFAULT true NOT NULL,
    last_run_at timestamp with time zone,
    next_run_at timestamp with time zone,
    run_count bigint DEFAULT 0 NOT NULL,
    tags jsonb,
    metadata jsonb,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    updated_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    CONSTRAINT schedules_priority_check CHECK (((priority >= '-100'::integer) AND (priority <= 100)))
);

ALTER TABLE ONLY public.schedules FORCE ROW LEVEL SECURITY;

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE public.usage_daily (
    organization_id uuid NOT NULL,
    day date NOT NULL,
    jobs_created bigint DEFAULT 0 NOT NULL
);

ALTER TABLE ONLY public.usage_daily FORCE ROW LEVEL SECURITY;

CREATE TABLE public.webhook_deliveries (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    webhook_id uuid,
    url text NOT NULL,
    secret text,
    event text NOT NULL,
    payload jsonb NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    status_code integer,
    response_body text,
    error text,
    attempts integer DEFAULT 0 NOT NULL,
    next_attempt_at timestamp with time zone DEFAULT now(),
    claimed_until timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    delivered_at timestamp with time zone,
    CONSTRAINT webhook_deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'success'::text, 'failed'::text])))
);

ALTER TABLE ONLY public.webhook_deliveries FORCE ROW LEVEL SECURITY;

CREATE TABLE public.workers (
    id text NOT NULL,
    organization_id uuid NOT NULL,
    queue_name text NOT NULL,
    queue_names text[] DEFAULT '{}'::text[] NOT NULL,
    hostname text NOT NULL,
    worker_type text,
    max_concurrency integer DEFAULT 5 NOT NULL,
    current_jobs integer DEFAULT 0 NOT NULL,
    status text DEFAULT 'healthy'::text NOT NULL,
    last_heartbeat timestamp with time zone DEFAULT now() NOT NULL,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    version text,
    registered_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT workers_status_check CHECK ((status = ANY (ARRAY['healthy'::text, 'degraded'::text, 'draining'::text, 'offline'::text])))
);

ALTER TABLE ONLY public.workers FORCE ROW LEVEL SECURITY;

CREATE TABLE public.workflows (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    name text NOT NULL,
    description text,
    status text DEFAULT 'pending'::text NOT NULL,
    total_jobs integer DEFAULT 0 NOT NULL,
    completed_jobs integer DEFAULT 0 NOT NULL,
    failed_jobs integer DEFAULT 0 NOT NULL,
    metadata jsonb,
    created_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    updated_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    CONSTRAINT workflows_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'running'::text, 'completed'::text, 'failed'::text, 'cancelled'::text])))
);

ALTER TABLE ONLY public.workflows FORCE ROW LEVEL SECURITY;

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.dlq_entries
    ADD CONSTRAINT dlq_entries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.ingest_audit
    ADD CONSTRAINT ingest_audit_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.job_dependencies
    ADD CONSTRAINT job_dependencies_pkey PRIMARY KEY (job_id, depends_on_job_id);

ALTER TABLE ONLY public.job_history
    ADD CONSTRAINT job_history_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.jobs
    ADD CONSTRAINT jobs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.organizations
    ADD CONSTRAINT organizations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.outgoing_webhooks
    ADD CONSTRAINT outgoing_webhooks_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.queue_configs
    ADD CONSTRAINT queue_configs_organization_id_queue_name_key UNIQUE (organization_id, queue_name);

ALTER TABLE ONLY public.queue_configs
    ADD CONSTRAINT queue_configs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.revoked_sessions
    ADD CONSTRAINT revoked_sessions_pkey PRIMARY KEY (sid);

ALTER TABLE ONLY public.schedule_runs
    ADD CONSTRAINT schedule_runs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.schedules
    ADD CONSTRAINT schedules_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.usage_daily
    ADD CONSTRAINT usage_daily_pkey PRIMARY KEY (organization_id, day);

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.workers
    ADD CONSTRAINT workers_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.workflows
    ADD CONSTRAINT workflows_pkey PRIMARY KEY (id);

CREATE UNIQUE INDEX api_keys_key_hash_key ON public.api_keys USING btree (key_hash);

CREATE INDEX api_keys_org_idx ON public.api_keys USING btree (organization_id, created_at DESC);

CREATE INDEX dlq_entries_job_idx ON public.dlq_entries USING btree (job_id);

CREATE INDEX ingest_audit_created_idx ON public.ingest_audit USING btree (created_at);

CREATE INDEX ingest_audit_org_created_idx ON public.ingest_audit USING btree (organization_id, created_at DESC, id DESC);

CREATE INDEX job_dependencies_parent_idx ON public.job_dependencies USING btree (depends_on_job_id);

CREATE INDEX job_history_created_idx ON public.job_history USING brin (created_at);

CREATE INDEX job_history_job_idx ON public.job_history USING btree (job_id, id);

CREATE INDEX jobs_claim_idx ON public.jobs USING btree (organization_id, queue_name, priority DESC, created_at, id) WHERE (status = ANY (ARRAY['pending'::text, 'scheduled'::text]));

CREATE INDEX jobs_due_idx ON public.jobs USING btree (scheduled_at) WHERE ((status = ANY (ARRAY['pending'::text, 'scheduled'::text])) AND (scheduled_at IS NOT NULL));

CREATE INDEX jobs_finished_idx ON public.jobs USING btree (completed_at) WHERE (status = ANY (ARRAY['completed'::text, 'cancelled'::text]));

CREATE INDEX jobs_gated_idx ON public.jobs USING btree (organization_id) WHERE ((dependencies_met = false) AND (status = ANY (ARRAY['pending'::text, 'scheduled'::text])));

CREATE UNIQUE INDEX jobs_idempotency_key ON public.jobs USING btree (organization_id, idempotency_key) WHERE (idempotency_key IS NOT NULL);

CREATE INDEX jobs_lease_idx ON public.jobs USING btree (lease_expires_at) WHERE (status = 'processing'::text);

CREATE INDEX jobs_org_created_idx ON public.jobs USING btree (organization_id, created_at DESC, id DESC);

CREATE INDEX jobs_org_status_queue_idx ON public.jobs USING btree (organization_id, status, queue_name);

CREATE INDEX jobs_parent_idx ON public.jobs USING btree (parent_job_id) WHERE (parent_job_id IS NOT NULL);

CREATE INDEX jobs_worker_idx ON public.jobs USING btree (assigned_worker_id) WHERE (status = 'processing'::text);

CREATE INDEX jobs_workflow_idx ON public.jobs USING btree (workflow_id, workflow_step) WHERE (workflow_id IS NOT NULL);

CREATE UNIQUE INDEX jobs_workflow_key_idx ON public.jobs USING btree (workflow_id, workflow_key) WHERE ((workflow_id IS NOT NULL) AND (workflow_key IS NOT NULL));

CREATE UNIQUE INDEX organizations_billing_email_key ON public.organizations USING btree (lower(billing_email)) WHERE ((billing_email IS NOT NULL) AND (plan_tier <> 'deleted'::text));

CREATE UNIQUE INDEX organizations_slug_key ON public.organizations USING btree (slug);

CREATE INDEX outgoing_webhooks_enabled_idx ON public.outgoing_webhooks USING btree (organization_id) WHERE enabled;

CREATE INDEX outgoing_webhooks_org_idx ON public.outgoing_webhooks USING btree (organization_id, created_at);

CREATE INDEX schedule_runs_schedule_idx ON public.schedule_runs USING btree (schedule_id, started_at DESC);

CREATE INDEX schedule_runs_started_idx ON public.schedule_runs USING btree (started_at);

CREATE INDEX schedules_due_idx ON public.schedules USING btree (next_run_at) WHERE is_active;

CREATE INDEX schedules_org_created_idx ON public.schedules USING btree (organization_id, created_at DESC, id DESC);

CREATE INDEX schedules_org_queue_idx ON public.schedules USING btree (organization_id, queue_name, is_active);

CREATE INDEX webhook_deliveries_due_idx ON public.webhook_deliveries USING btree (next_attempt_at) WHERE (status = 'pending'::text);

CREATE INDEX webhook_deliveries_finished_idx ON public.webhook_deliveries USING btree (created_at) WHERE (status <> 'pending'::text);

CREATE INDEX webhook_deliveries_webhook_idx ON public.webhook_deliveries USING btree (webhook_id, created_at DESC, id DESC) WHERE (webhook_id IS NOT NULL);

CREATE INDEX workers_org_heartbeat_idx ON public.workers USING btree (organization_id, last_heartbeat DESC);

CREATE INDEX workflows_open_idx ON public.workflows USING btree (organization_id, status) WHERE (status = ANY (ARRAY['pending'::text, 'running'::text]));

CREATE INDEX workflows_org_created_idx ON public.workflows USING btree (organization_id, created_at DESC, id DESC);

ALTER TABLE ONLY public.api_keys
    ADD CONSTRAINT api_keys_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.dlq_entries
    ADD CONSTRAINT dlq_entries_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.ingest_audit
    ADD CONSTRAINT ingest_audit_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.job_dependencies
    ADD CONSTRAINT job_dependencies_job_id_fkey FOREIGN KEY (job_id) REFERENCES public.jobs(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.job_dependencies
    ADD CONSTRAINT job_dependencies_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.outgoing_webhooks
    ADD CONSTRAINT outgoing_webhooks_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.queue_configs
    ADD CONSTRAINT queue_configs_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.schedule_runs
    ADD CONSTRAINT schedule_runs_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.schedule_runs
    ADD CONSTRAINT schedule_runs_schedule_id_fkey FOREIGN KEY (schedule_id) REFERENCES public.schedules(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.schedules
    ADD CONSTRAINT schedules_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.usage_daily
    ADD CONSTRAINT usage_daily_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.webhook_deliveries
    ADD CONSTRAINT webhook_deliveries_webhook_id_fkey FOREIGN KEY (webhook_id) REFERENCES public.outgoing_webhooks(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.workers
    ADD CONSTRAINT workers_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE ONLY public.workflows
    ADD CONSTRAINT workflows_organization_id_fkey FOREIGN KEY (organization_id) REFERENCES public.organizations(id) ON DELETE CASCADE;

ALTER TABLE public.api_keys ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.dlq_entries ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.ingest_audit ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.job_dependencies ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.job_history ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.jobs ENABLE ROW LEVEL SECURITY;

CREATE POLICY maintenance_all ON public.api_keys TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.dlq_entries TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.ingest_audit TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.job_dependencies TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.job_history TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.jobs TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.organizations TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.outgoing_webhooks TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.queue_configs TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.revoked_sessions TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.schedule_runs TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.schedules TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.usage_daily TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.webhook_deliveries TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.workers TO spooled_maintenance USING (true) WITH CHECK (true);

CREATE POLICY maintenance_all ON public.workflows TO spooled_maintenance USING (true) WITH CHECK (true);

ALTER TABLE public.organizations ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.outgoing_webhooks ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.queue_configs ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.revoked_sessions ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.schedule_runs ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.schedules ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON public.api_keys TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.dlq_entries TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.ingest_audit TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.job_dependencies TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.job_history TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.jobs TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.organizations TO spooled_app USING ((id = public.spooled_current_org())) WITH CHECK ((id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.outgoing_webhooks TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.queue_configs TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.revoked_sessions TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.schedule_runs TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.schedules TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.usage_daily TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.webhook_deliveries TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.workers TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

CREATE POLICY tenant_isolation ON public.workflows TO spooled_app USING ((organization_id = public.spooled_current_org())) WITH CHECK ((organization_id = public.spooled_current_org()));

ALTER TABLE public.usage_daily ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.webhook_deliveries ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.workers ENABLE ROW LEVEL SECURITY;

ALTER TABLE public.workflows ENABLE ROW LEVEL SECURITY;
