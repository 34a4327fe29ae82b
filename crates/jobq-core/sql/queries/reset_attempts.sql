-- $1: {"ids": [...]}: the jobs with a queueing lock that retry_matching.sql just put back through retry_job
-- (which keeps the attempt count), when their attempts are to be reset. Only jobs still waiting are reset:
-- one a worker has started since keeps its count. Returns how many were reset.
WITH reset AS (
    UPDATE {schema}.jobs j SET attempts = 0
    WHERE j.id IN (SELECT jsonb_array_elements_text(($1::text)::jsonb -> 'ids')::bigint) AND j.status = 'todo'
    RETURNING 1
)
SELECT count(*)::text AS jobq FROM reset
