-- $1: a JSON array of jobs. Returns {"ids": [...]} or {"conflict": "<queueing lock>"}.
SELECT {schema}.defer_jobs(($1::text)::jsonb)::text AS jobq
