-- No parameter. The highest applied migration.
SELECT coalesce(max(version), 0)::text FROM {schema}.migrations
