-- $1: {"worker_id": …, "queues": [..] or null for all, "tasks": [..] or null for any, "limit": n}; see {schema}.fetch_jobs.
SELECT row_to_json(j)::text AS jobq FROM {schema}.fetch_jobs(($1::text)::jsonb) j
