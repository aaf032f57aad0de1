-- 0004: what the queue routes need to see every queue of an organization.
-- A queue exists when it has a config row, has jobs, or is the target of an active schedule. Schedules come
-- from another migration; this function reads them through dynamic SQL so that it works (returning nothing)
-- whether or not that table exists, and runs with the caller's rights, so row-level security still applies.
CREATE FUNCTION spooled_active_schedule_queues(org uuid)
    RETURNS TABLE (schedule_queue text, first_at timestamptz)
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
    IF to_regclass('schedules') IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE
        'SELECT queue_name, min(created_at) FROM schedules'
        ' WHERE organization_id = $1 AND is_active GROUP BY queue_name'
        USING org;
END
$$;
GRANT EXECUTE ON FUNCTION spooled_active_schedule_queues(uuid) TO spooled_app, spooled_maintenance;
