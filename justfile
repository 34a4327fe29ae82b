# jobq's everyday commands. `just` alone lists them.

# List the commands.
default:
    @just --list

# Run every test (starts a throwaway PostgreSQL by itself).
test:
    cargo test --workspace

# Format, lint and test, as CI does.
ci:
    bash .ci/run

# Format the code.
fmt:
    cargo fmt --all

# Lint with clippy, warnings as errors.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Print the schema SQL that `migrate` applies.
schema-sql:
    cargo run -q -p jobq-core --example schema_sql

# Run the example: defer and read back a job on a throwaway PostgreSQL.
demo:
    cargo run -p jobq-tokio-postgres --example quickstart

# Look for repeated code.
duplicates:
    duplicates --most 40
