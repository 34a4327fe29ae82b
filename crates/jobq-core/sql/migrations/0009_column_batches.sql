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
-- so a batch of plain jobs is 2 rows and any batch without locks at most 6. array_in reads the whole literal
-- without building anything nested; only each job's arguments are parsed, into the jsonb they are stored
-- as. The answer is the ids as an array literal ({1,2,3}), read without a JSON parser.
--
-- A batch with a lock or a queueing lock still goes to defer_jobs as JSON, unchanged (the library sends it
-- so), with the blocked settling of migration 7, the queueing-lock conflicts and the caller's transaction
-- (migration 3) as they were. Rebuilding that JSON here from the array was measured: 6.4–7.7 ms per 1,000
-- jobs with locks (jsonb_build_object and jsonb_agg), against 1.0–1.7 ms for parsing the JSON the client
-- sends; the client rebuilds it instead (crates/jobq-core/src/batch.rs).

-- Defers a batch without locks given as columns (above). Returns the ids in input order as an array
-- literal. One NOTIFY per distinct queue, at the caller's commit. A lock or queueing-lock row (a 7th or
-- 8th) is refused: such a batch goes through defer_jobs.
CREATE FUNCTION {schema}.defer_columns(batch text[]) RETURNS text
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
