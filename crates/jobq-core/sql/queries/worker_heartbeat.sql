-- $1: {"worker_id": …, "held": [ids]}; see {schema}.heartbeat. Returns its answer, or `null` when the worker
-- was declared dead and removed.
SELECT coalesce({schema}.heartbeat(($1::text)::jsonb), 'null'::jsonb)::text AS jobq
