-- $1: {"older_than_seconds": n}. Deletes finished jobs (succeeded, failed, cancelled, aborted) that finished
-- longer ago than that, and cron claims older than a day. Returns how many jobs were deleted.
WITH p AS (
    SELECT (($1::text)::jsonb) AS p
), pruned AS (
    DELETE FROM {schema}.jobs j
    WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
      AND j.finished_at < now() - make_interval(secs => (SELECT (p->>'older_than_seconds')::double precision FROM p))
    RETURNING 1
), ticks AS (
    DELETE FROM {schema}.periodic_ticks WHERE tick < now() - interval '1 day' RETURNING 1
)
SELECT ((SELECT count(*) FROM pruned) + 0 * (SELECT count(*) FROM ticks))::text AS jobq
