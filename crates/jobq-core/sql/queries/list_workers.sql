-- No parameter. Registered workers as JSON, with how many jobs each is running.
SELECT (to_jsonb(w) || jsonb_build_object('running',
        (SELECT count(*) FROM {schema}.jobs j WHERE j.worker_id = w.id AND j.status = 'doing')))::text AS jobq
FROM {schema}.workers w ORDER BY w.id
