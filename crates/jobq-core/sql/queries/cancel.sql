-- $1: {"id": …, "abort": bool, "delete": bool}. Cancels a waiting job (or deletes it), asks a running one to
-- abort, or deletes a finished one. Returns {"outcome": …}, or no row when the job does not exist. A waiting
-- job's lock goes to unsettled_locks, so that the next fetch gives the lock its next head (migration 7).
WITH input AS (
    SELECT (p->>'id')::bigint AS id,
           coalesce((p->>'abort')::boolean, false) AS abort,
           coalesce((p->>'delete')::boolean, false) AS del
    FROM (SELECT ($1::text)::jsonb AS p) s
), target AS (
    SELECT j.id, j.status, j.lock, i.abort, i.del
    FROM {schema}.jobs j JOIN input i ON j.id = i.id
    FOR UPDATE OF j
), deleted AS (
    DELETE FROM {schema}.jobs j USING target t
    WHERE j.id = t.id AND t.del AND t.status <> 'doing'
    RETURNING j.id
), cancelled AS (
    UPDATE {schema}.jobs j SET status = 'cancelled', finished_at = now()
    FROM target t
    WHERE j.id = t.id AND NOT t.del AND t.status = 'todo'
    RETURNING j.id
), unsettled AS (
    INSERT INTO {schema}.unsettled_locks (lock)
    SELECT t.lock FROM target t WHERE t.status = 'todo' AND t.lock IS NOT NULL
), abort_requested AS (
    UPDATE {schema}.jobs j SET abort_requested = true
    FROM target t
    WHERE j.id = t.id AND t.abort AND t.status = 'doing'
    RETURNING j.id
), notified AS (
    SELECT pg_notify('{channel}_abort', id::text) AS n FROM abort_requested
)
SELECT jsonb_build_object(
    'outcome', CASE
        WHEN EXISTS (SELECT 1 FROM deleted) THEN 'deleted'
        WHEN EXISTS (SELECT 1 FROM cancelled) THEN 'cancelled'
        WHEN (SELECT count(*) FROM notified) > 0 THEN 'abort_requested'
        ELSE 'unchanged' END)::text AS jobq
FROM target t
