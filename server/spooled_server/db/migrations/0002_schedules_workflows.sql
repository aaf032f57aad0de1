-- 0002: cron schedules with their run history, and workflows (DAGs of jobs).
-- Workflow jobs live in `jobs` (workflow_id, workflow_key, workflow_step) and their edges in
-- `job_dependencies`; this migration adds only the workflow header row.

CREATE TABLE schedules (
    id               uuid PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             text NOT NULL,
    description      text,
    cron_expression  text NOT NULL,
    timezone         text NOT NULL DEFAULT 'UTC',
    queue_name       text NOT NULL,
    payload_template jsonb,
    priority         integer NOT NULL DEFAULT 0,
    -- NULL means "whatever the queue's config says at fire time" (then 3 / 300).
    max_retries      integer,
    timeout_seconds  integer,
    is_active        boolean NOT NULL DEFAULT true,
    last_run_at      timestamptz,
    next_run_at      timestamptz,
    run_count        bigint NOT NULL DEFAULT 0,
    tags             jsonb,
    metadata         jsonb,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT schedules_priority_check CHECK (priority BETWEEN -100 AND 100)
);
CREATE INDEX schedules_org_created_idx ON schedules (organization_id, created_at DESC, id DESC);
-- Queue listings count active schedules' queues as existing queues.
CREATE INDEX schedules_org_queue_idx ON schedules (organization_id, queue_name, is_active);
-- The cron loop: the earliest due active schedule, across organizations.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE is_active;

CREATE TABLE schedule_runs (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    schedule_id     uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    job_id          uuid,
    status          text NOT NULL,
    error_message   text,
    -- The fire time the run stands for (the cron slot, or the trigger time).
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at    timestamptz,
    CONSTRAINT schedule_runs_status_check CHECK (status IN ('pending', 'running', 'completed', 'failed'))
);
CREATE INDEX schedule_runs_schedule_idx ON schedule_runs (schedule_id, started_at DESC);
CREATE INDEX schedule_runs_started_idx ON schedule_runs (started_at);

CREATE TABLE workflows (
    id              uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text,
    status          text NOT NULL DEFAULT 'pending',
    total_jobs      integer NOT NULL DEFAULT 0,
    completed_jobs  integer NOT NULL DEFAULT 0,
    failed_jobs     integer NOT NULL DEFAULT 0,
    metadata        jsonb,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at      timestamptz,
    completed_at    timestamptz,
    CONSTRAINT workflows_status_check CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled'))
);
CREATE INDEX workflows_org_created_idx ON workflows (organization_id, created_at DESC, id DESC);
-- The finalization sweep and the `workflows` quota look only at unfinished workflows.
CREATE INDEX workflows_open_idx ON workflows (organization_id, status) WHERE status IN ('pending', 'running');
-- Jobs held back by their dependencies: the sweep's release and cascade scan only these.
CREATE INDEX jobs_gated_idx ON jobs (organization_id)
    WHERE dependencies_met = false AND status IN ('pending', 'scheduled');
-- A workflow's jobs by key (definition lookups, retry, cascade).
CREATE UNIQUE INDEX jobs_workflow_key_idx ON jobs (workflow_id, workflow_key)
    WHERE workflow_id IS NOT NULL AND workflow_key IS NOT NULL;

-- Row-level security: forced, one policy per role (as in 0001).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['schedules', 'schedule_runs', 'workflows']
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
