-- The privileges an application role needs to use jobq after the schema is applied: no DDL, no superuser.
-- `{role}` is replaced by the role's name (a checked identifier).
--
-- The role reads and writes jobs, workers, cron claims and queue pauses (`queues`, version 5: it may pause
-- and resume a queue), and only reads the migrations table: it checks the schema version but cannot change
-- it (only the schema's owner migrates). Run again on a database granted before schema version 3 (which gave
-- every table), the REVOKE takes the excess back; run again after a migration that adds a table (version 5
-- adds `queues`), the new table is granted too.
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {schema}.migrations FROM {role};
GRANT SELECT ON {schema}.migrations TO {role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {role};
