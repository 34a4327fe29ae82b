-- $1: {"worker_id": …, "running": [ids]}. Records that the worker is alive and returns the ids of its running
-- jobs whose abort was requested. No row at all means the worker was declared dead and removed.
WITH alive AS (
    UPDATE {schema}.workers SET heartbeat_at = now()
    WHERE id = ((($1::text)::jsonb)->>'worker_id')::bigint
    RETURNING id
)
SELECT coalesce(jsonb_agg(j.id) FILTER (WHERE j.id IS NOT NULL), '[]')::text AS jobq
FROM alive
LEFT JOIN {schema}.jobs j
    ON j.worker_id = alive.id AND j.status = 'doing' AND j.abort_requested
GROUP BY alive.id
