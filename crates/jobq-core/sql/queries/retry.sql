-- $1: {"id": …}. Puts a finished job (failed, cancelled, aborted or succeeded) back to `todo`, to run now,
-- unless another waiting job holds its queueing lock. Returns {"status": <status before>, "outcome": …},
-- or no row when the job does not exist.
WITH target AS (
    SELECT j.id, j.status, j.queue, j.queueing_lock
    FROM {schema}.jobs j
    WHERE j.id = ((($1::text)::jsonb)->>'id')::bigint
    FOR UPDATE
), blocked AS (
    SELECT 1 FROM target t JOIN {schema}.jobs o
        ON o.queueing_lock = t.queueing_lock AND o.status = 'todo' AND o.id <> t.id
), retried AS (
    UPDATE {schema}.jobs j
    SET status = 'todo', scheduled_at = now(), finished_at = NULL, abort_requested = false, worker_id = NULL
    FROM target t
    WHERE j.id = t.id AND t.status IN ('failed', 'cancelled', 'aborted', 'succeeded')
      AND NOT EXISTS (SELECT 1 FROM blocked)
    RETURNING j.id, j.queue
), notified AS (
    SELECT pg_notify('{channel}', CASE WHEN octet_length(queue) <= 1000 THEN queue ELSE '' END) AS n
    FROM retried
)
SELECT jsonb_build_object(
    'status', t.status,
    'outcome', CASE
        WHEN (SELECT count(*) FROM notified) > 0 THEN 'retried'
        WHEN EXISTS (SELECT 1 FROM blocked) THEN 'conflict'
        ELSE 'unchanged' END,
    'queueing_lock', t.queueing_lock)::text AS jobq
FROM target t
