-- No parameter. Whether jobq's migrations table exists in the schema.
SELECT (to_regclass('{schema}.migrations') IS NOT NULL)::text AS jobq
