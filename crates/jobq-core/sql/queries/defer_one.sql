-- $1: one job object. Returns {"ids": [id]} or {"conflict": "<queueing lock>"}.
SELECT {schema}.defer_job(($1::text)::jsonb)::text AS jobq
