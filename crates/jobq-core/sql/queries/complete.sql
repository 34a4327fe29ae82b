-- $1: {"worker_id": …, "jobs": [...]}; see {schema}.end_jobs. Returns {"busy": [ids not ended yet]}.
SELECT {schema}.complete(($1::text)::jsonb)::text AS jobq
