-- $1: {"worker_id": …, "jobs": [...]}; see {schema}.complete_jobs. Returns the number of jobs ended.
SELECT {schema}.complete_jobs(($1::text)::jsonb)::text AS jobq
