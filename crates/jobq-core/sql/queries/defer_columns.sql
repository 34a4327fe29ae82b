-- $1: a batch without locks as a two-dimensional text array literal, one row per field (migration 9).
-- Returns the ids as an array literal ({1,2,3}).
SELECT {schema}.defer_columns(($1::text)::text[]) AS jobq
