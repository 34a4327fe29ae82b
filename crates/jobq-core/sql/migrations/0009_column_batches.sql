-- jobq schema, version 9: a batch deferral reads its jobs from a text array instead of JSON (issue #16).
--
-- `defer_batch` sent its jobs as one JSON array, cast to jsonb and read by jsonb_to_recordset. For 1,000
-- tiny jobs the jsonb parse of the whole ~49 KB argument, its two JSON-path scans for locks and the JSON
-- answer were about a third of defer_jobs' time on the server outside the INSERT itself (docs/benchmarks.md,
-- "What limits the figures"). json (not jsonb) with json_to_recordset was measured slower still (3.1 ms
-- against 1.5 ms: it builds a hash table per object).
--
-- Now the library sends the batch as a two-dimensional text array literal, one row per field and one
-- column per job, still one text parameter: row 1 the tasks, 2 the arguments (JSON text), then the queues,
-- priorities, schedules, trace contexts, locks and queueing locks, NULL where a job has none. The library
-- leaves out the trailing rows that are NULL for every job (ROWS FROM pads the missing ones with NULLs),
-- so a batch without locks has at most 6 rows, and one of plain jobs 2. array_in reads the whole literal
-- without building anything nested; only each job's arguments are parsed, into the jsonb they are stored
-- as. The answer is the ids as an array literal ({1,2,3}), read without a JSON parser.
--
-- A batch with a lock or a queueing lock (more than 6 rows) goes through defer_jobs unchanged, on the same
-- JSON it was given before (built here from the array), so the blocked settling of migration 7, the
-- queueing-lock conflicts and the caller's transaction (migration 3) keep exactly their behaviour; that
-- rarer path pays the conversion.

-- Defers a batch given as columns (above). Returns the ids in input order as an array literal, or
-- {"conflict": "<queueing lock>"} (JSON, as defer_jobs answers it) when a waiting job holds a queueing lock
-- of the batch, in which case nothing is inserted. One NOTIFY per distinct queue, at the caller's commit.
CREATE FUNCTION {schema}.defer_columns(batch text[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    ids     bigint[];
    queues  text[];
    outcome jsonb;
BEGIN
    IF coalesce(array_length(batch, 1), 0) > 6 THEN
        outcome := {schema}.defer_jobs(coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                       'task', n.task, 'args', n.args::jsonb, 'queue', n.queue,
                       'priority', n.priority::integer, 'scheduled_at', n.scheduled_at,
                       'trace_context', n.trace_context, 'lock', n.lock, 'queueing_lock', n.queueing_lock)
                   ORDER BY n.ord)
            FROM ROWS FROM (unnest(batch[1:1]), unnest(batch[2:2]), unnest(batch[3:3]), unnest(batch[4:4]),
                            unnest(batch[5:5]), unnest(batch[6:6]), unnest(batch[7:7]), unnest(batch[8:8]))
                 WITH ORDINALITY
                 AS n(task, args, queue, priority, scheduled_at, trace_context, lock, queueing_lock, ord)),
            '[]'));
        IF outcome ? 'conflict' THEN
            RETURN outcome::text;
        END IF;
        RETURN ARRAY(SELECT i::bigint FROM jsonb_array_elements_text(outcome->'ids') AS i)::text;
    END IF;

    -- No job has a lock or a queueing lock: defer_jobs' plain path (no ON CONFLICT, no blocked).
    WITH inserted AS (
        INSERT INTO {schema}.jobs (queue, task, args, priority, scheduled_at, trace_context)
        SELECT coalesce(n.queue, 'default'), n.task, coalesce(n.args::jsonb, 'null'),
               coalesce(n.priority::integer, 0), coalesce(n.scheduled_at::timestamptz, now()), n.trace_context
        FROM ROWS FROM (unnest(batch[1:1]), unnest(batch[2:2]), unnest(batch[3:3]), unnest(batch[4:4]),
                        unnest(batch[5:5]), unnest(batch[6:6]))
             WITH ORDINALITY AS n(task, args, queue, priority, scheduled_at, trace_context, ord)
        ORDER BY n.ord
        RETURNING id, queue
    )
    SELECT array_agg(id ORDER BY id), array_agg(DISTINCT queue) INTO ids, queues FROM inserted;
    PERFORM {schema}.notify_queues(queues);
    RETURN coalesce(ids, '{}')::text;
END;
$$;

-- A role granted before this version runs the new function too (as migration 7 did for its functions).
DO $grants$
DECLARE
    grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = '{schema}.jobs'::regclass AND a.privilege_type = 'INSERT' AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION {schema}.defer_columns(text[]) TO %s', grantee);
    END LOOP;
END
$grants$;
