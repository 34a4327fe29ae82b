-- No parameter. The highest applied migration.
SELECT coalesce(max(version), 0)::text AS jobq FROM {schema}.migrations
