# jobq's everyday commands. `just` alone lists them.

# List the commands.
default:
    @just --list

# Run every test (starts a throwaway PostgreSQL by itself).
test:
    cargo test --workspace --all-features

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
    cargo run -q -p jobq-cli -- schema sql

# Run the demo: all four drivers and a worker, on a throwaway PostgreSQL.
demo:
    cargo run -p jobq-demo

# The jobq command line, e.g. `just jobq queues`.
jobq *ARGS:
    cargo run -q -p jobq-cli -- {{ARGS}}

# The benchmarks against their targets, e.g. `just bench --quick --json figures.json`.
bench *ARGS:
    cargo run --release -p jobq-bench -- {{ARGS}}

# The quick benchmarks (about four minutes, three of them steady load; 3 min 44 s measured on 2 cores), e.g. `just bench-quick --only fleet`.
bench-quick *ARGS:
    cargo run --release -p jobq-bench -- --quick {{ARGS}}

# The fault tests with a 100,000-job soak.
soak:
    JOBQ_SOAK_JOBS=100000 cargo test -p jobq-tests --release -- --nocapture

# The fault-injection tests (lost answers, a crashed server, silent connections), with 20 rounds of faults.
chaos:
    JOBQ_CHAOS_ROUNDS=20 cargo test -p jobq-tests --release --test chaos -- --nocapture

# The failover tests on a pg_auto_failover cluster (apt-get install postgresql-15-auto-failover), 3 failovers of each kind under 1,500 jobs.
failover:
    JOBQ_FAILOVER_ROUNDS=3 JOBQ_FAILOVER_JOBS=1500 cargo test -p jobq-tests --release --test failover -- --nocapture

# Look for repeated code.
duplicates:
    duplicates --most 40

# The dashboard's screenshots in docs/images (headless Chromium: apt-get install chromium chromium-driver).
screenshots:
    JOBQ_SCREENSHOTS={{justfile_directory()}}/docs/images cargo test -p jobq-web --test browser -- --ignored screenshots
