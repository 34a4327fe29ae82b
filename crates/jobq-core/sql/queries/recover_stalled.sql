-- $1: {"worker_id": …, "stalled_after_seconds": n}. Removes workers whose last heartbeat is older than the
-- timeout, and hands their running jobs (and running jobs of no worker) to the calling worker, which ends each
-- per its task's retry strategy. Returns those jobs as JSON. (A worker removed by hand counts as dead too.)
WITH p AS (
    SELECT (($1::text)::jsonb) AS p
), dead AS (
    DELETE FROM {schema}.workers w
    WHERE w.heartbeat_at < now() - make_interval(secs => (SELECT (p->>'stalled_after_seconds')::double precision FROM p))
      AND w.id <> (SELECT (p->>'worker_id')::bigint FROM p)
    RETURNING w.id
), orphans AS (
    SELECT j.id FROM {schema}.jobs j
    WHERE j.status = 'doing'
      AND (j.worker_id IN (SELECT id FROM dead)
           OR NOT EXISTS (SELECT 1 FROM {schema}.workers w WHERE w.id = j.worker_id))
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs j SET worker_id = (SELECT (p->>'worker_id')::bigint FROM p)
FROM orphans o
WHERE j.id = o.id
RETURNING to_jsonb(j)::text AS jobq
