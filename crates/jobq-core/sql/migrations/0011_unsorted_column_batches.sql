-- jobq schema, version 11: defer_columns (migration 9) without the sorts it did not need (issue #16).
--
-- Migration 9's defer_columns sorted three times per batch: the rows by their ordinal before the INSERT, the
-- RETURNING rows' queues for array_agg(DISTINCT …) (every job's queue name, compared under the database's
-- collation) and the ids. ROWS FROM emits its rows in the arrays' order and the INSERT takes them in that
-- order, drawing each job's id in turn, and RETURNING answers them in the same order: the ids come back in
-- input order without any sort. The queues to notify are read from the batch's queue row itself; a batch
-- without one (the library leaves out trailing rows that are NULL for every job) is all in the default
-- queue. pgbench, batches of 1,000 plain jobs, interleaved rounds (docs/benchmarks.md, "Batch deferral
-- against a hand-written batch, and without its sorts"): the call's server time 7.95 → 6.63 ms in one session and 6.01 → 5.76 in another,
-- against 6.10 and 4.87 for the server's own generated 1,000-row INSERT in the same rounds.
CREATE OR REPLACE FUNCTION {schema}.defer_columns(batch text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    ids    bigint[];
    queues text[];
BEGIN
    IF coalesce(array_length(batch, 1), 0) > 6 THEN
        RAISE EXCEPTION 'jobq: defer_columns takes no locks or queueing locks (% rows); use defer_jobs',
            array_length(batch, 1) USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- No job has a lock or a queueing lock: defer_jobs' plain path (no ON CONFLICT, no blocked).
    WITH inserted AS (
        INSERT INTO {schema}.jobs (queue, task, args, priority, scheduled_at, trace_context)
        SELECT coalesce(n.queue, 'default'), n.task, coalesce(n.args::jsonb, 'null'),
               coalesce(n.priority::integer, 0), coalesce(n.scheduled_at::timestamptz, now()), n.trace_context
        FROM ROWS FROM (unnest(batch[1:1]), unnest(batch[2:2]), unnest(batch[3:3]), unnest(batch[4:4]),
                        unnest(batch[5:5]), unnest(batch[6:6]))
             AS n(task, args, queue, priority, scheduled_at, trace_context)
        RETURNING id
    )
    SELECT array_agg(id) INTO ids FROM inserted;
    IF ids IS NULL THEN
        RETURN '{}';
    END IF;
    IF array_length(batch, 1) < 3 THEN
        queues := '{default}';
    ELSE
        queues := ARRAY(SELECT DISTINCT coalesce(q, 'default') FROM unnest(batch[3:3]) AS q);
    END IF;
    PERFORM {schema}.notify_queues(queues);
    RETURN ids::text;
END;
$$;
