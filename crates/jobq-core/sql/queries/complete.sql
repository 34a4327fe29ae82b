-- $1: {"worker_id": …, "jobs": [{"id", "status", "error", "scheduled_at", "queue", "priority", "lock",
-- "delete"}, …]}. Ends the
-- worker's running jobs in one statement: `succeeded`, `failed`, `aborted`, or back to `todo` for a retry at
-- `scheduled_at`. Only jobs still `doing` on this worker change (a job recovered from a stalled worker is not
-- touched by it). A retry whose queueing lock another waiting job holds fails instead. Returns the number of
-- jobs ended.
WITH p AS (
    SELECT (($1::text)::jsonb) AS p
), r AS (
    SELECT r.*
    FROM p, jsonb_to_recordset(p->'jobs')
        AS r(id bigint, status text, error text, scheduled_at timestamptz, queue text, priority integer,
             lock text, delete boolean)
), mine AS (
    SELECT j.id, j.queueing_lock, j.attempts, r.status, r.error, r.scheduled_at, r.queue, r.priority, r.lock,
           coalesce(r.delete, false) AS del,
           (r.status = 'todo' AND j.queueing_lock IS NOT NULL AND EXISTS (
               SELECT 1 FROM {schema}.jobs o WHERE o.queueing_lock = j.queueing_lock AND o.status = 'todo'
           )) AS blocked
    FROM {schema}.jobs j JOIN r ON j.id = r.id
    WHERE j.status = 'doing' AND j.worker_id = (SELECT (p->>'worker_id')::bigint FROM p)
    FOR UPDATE OF j
), deleted AS (
    DELETE FROM {schema}.jobs j USING mine m WHERE j.id = m.id AND m.del AND m.status = 'succeeded'
    RETURNING j.id
), updated AS (
    UPDATE {schema}.jobs j
    SET status = CASE WHEN m.blocked THEN 'failed' ELSE m.status END,
        scheduled_at = CASE WHEN m.status = 'todo' AND NOT m.blocked THEN coalesce(m.scheduled_at, now())
                            ELSE j.scheduled_at END,
        finished_at = CASE WHEN m.status = 'todo' AND NOT m.blocked THEN NULL ELSE now() END,
        queue = coalesce(m.queue, j.queue),
        priority = coalesce(m.priority, j.priority),
        lock = coalesce(m.lock, j.lock),
        worker_id = NULL,
        abort_requested = false,
        last_error = CASE WHEN m.error IS NULL THEN j.last_error ELSE m.error END,
        errors = CASE WHEN m.error IS NULL THEN j.errors
                      ELSE j.errors || jsonb_build_array(jsonb_build_object(
                          'attempt', m.attempts, 'at', now(),
                          'error', CASE WHEN m.blocked
                                        THEN m.error || ' (not retried: its queueing lock is taken)'
                                        ELSE m.error END)) END
    FROM mine m
    WHERE j.id = m.id AND NOT (m.del AND m.status = 'succeeded')
    RETURNING j.id, j.status, j.queue
), notified AS (
    SELECT pg_notify('{channel}', CASE WHEN octet_length(queue) <= 1000 THEN queue ELSE '' END) AS n
    FROM (SELECT DISTINCT queue FROM updated WHERE status = 'todo') q
)
SELECT ((SELECT count(*) FROM updated) + (SELECT count(*) FROM deleted)
        + 0 * (SELECT count(*) FROM notified))::text AS jobq
