-- $1: {"task": …, "tick": time, "job": {…}}. Defers the job of one cron tick unless some worker already did:
-- the tick's row in periodic_ticks is the claim. Returns the defer result, or no row when already deferred.
WITH p AS (
    SELECT (($1::text)::jsonb) AS p
), claimed AS (
    INSERT INTO {schema}.periodic_ticks (task, tick)
    SELECT p->>'task', (p->>'tick')::timestamptz FROM p
    ON CONFLICT DO NOTHING
    RETURNING task
)
SELECT {schema}.defer_jobs(jsonb_build_array(p->'job'))::text AS jobq FROM claimed, p
