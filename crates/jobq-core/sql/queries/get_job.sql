-- $1: a job id. Returns the job row as JSON, or no row.
SELECT to_jsonb(j)::text AS jobq FROM {schema}.jobs j WHERE j.id = ($1::text)::bigint
