-- $1: {"task": …, "tick": time, "job": {…}}. Defers the job of one cron tick unless some worker already did:
-- the tick's row in periodic_ticks is the claim. Returns the defer result, or no row when already deferred.
WITH input AS (
    SELECT p->>'task' AS task, (p->>'tick')::timestamptz AS tick, p->'job' AS job
    FROM (SELECT ($1::text)::jsonb AS p) s
), claimed AS (
    INSERT INTO {schema}.periodic_ticks (task, tick)
    SELECT task, tick FROM input
    ON CONFLICT DO NOTHING
    RETURNING task
)
SELECT {schema}.defer_jobs(jsonb_build_array(i.job))::text AS jobq FROM claimed, input i
