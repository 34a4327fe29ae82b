-- $1: {"id": …}; see {schema}.retry_job. Returns {"outcome": …} (with "queueing_lock" on a conflict), or no
-- row when the job does not exist.
SELECT r::text AS jobq FROM {schema}.retry_job(($1::text)::jsonb) r WHERE r IS NOT NULL
