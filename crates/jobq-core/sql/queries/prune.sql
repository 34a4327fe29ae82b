-- $1: {"older_than_seconds": n, "before": time or absent, "limit": batch}. One bounded batch of pruning:
-- deletes up to `limit` finished jobs (succeeded, failed, cancelled, aborted) that finished before `before`
-- (now minus older_than_seconds when absent: the first batch; later ones pass the first one's, so a prune
-- ends however fast jobs finish), oldest first through the finished-time index, skipping rows another
-- transaction holds; and cron claims older than a day.
-- Returns {"deleted": n, "examined": n, "before": time}: fewer examined than `limit` means none is left.
WITH p AS NOT MATERIALIZED (
    SELECT (($1::text)::jsonb) AS p
), cutoff AS (
    SELECT coalesce((p->>'before')::timestamptz,
                    now() - make_interval(secs => (p->>'older_than_seconds')::double precision)) AS before
    FROM p
), target AS MATERIALIZED (
    SELECT j.id
    FROM {schema}.jobs j
    WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
      AND j.finished_at < (SELECT before FROM cutoff)
    ORDER BY j.finished_at
    LIMIT (SELECT (p->>'limit')::bigint FROM p)
    FOR UPDATE OF j SKIP LOCKED
), pruned AS (
    -- By id through the primary key: as a join, a generic plan (LIMIT unknown, estimated at 5 % of the
    -- table) hashed the whole jobs table for each batch of 1,000 (1.1 s on 3,000,000 rows).
    DELETE FROM {schema}.jobs j WHERE j.id = ANY (ARRAY(SELECT t.id FROM target t))
    RETURNING 1
), ticks AS (
    DELETE FROM {schema}.periodic_ticks WHERE tick < now() - interval '1 day' RETURNING 1
)
SELECT jsonb_build_object(
    'deleted', (SELECT count(*) FROM pruned) + 0 * (SELECT count(*) FROM ticks),
    'examined', (SELECT count(*) FROM target),
    'before', (SELECT before FROM cutoff)
)::text AS jobq
