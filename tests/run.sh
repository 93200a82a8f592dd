#!/usr/bin/env bash
# The project's single test command:
#
#   tests/run.sh [cargo test args] [-- test binary args]
#
# Builds the tests, starts the services they need (a real Kafka broker, see
# tests/kafka/broker.sh), runs
#   cargo test --workspace --locked [cargo test args] -- --test-threads=$TEST_THREADS [test binary args]
# with KAFKA_BOOTSTRAP exported, stops the services on exit (also on failure or Ctrl-C)
# and exits with the tests' status.
#
# Environment (all optional):
#   KAFKA_BOOTSTRAP  use this broker (host:port) instead of starting one
#   BROKER_DIR       state dir of the broker started here (default: a fresh mktemp dir,
#                    removed when the tests pass, kept with its broker.log when they fail)
#   S3_ENDPOINT      use this S3-compatible endpoint (with S3_REQUEST_LOG, the counting
#                    proxy's log) instead of starting moto behind tests/s3/proxy.py
#   TEST_THREADS     libtest --test-threads (default 2)
#   TEST_CMD         run this shell command instead of cargo test (services still started;
#                    handy for a single test binary, a debugger or checking this script)
#   SCHEMATHESIS     the schemathesis executable for tests/openapi.rs (default: installed
#                    from PyPI into a cached venv by tests/schemathesis.sh; the test then
#                    must run it: POLARIS_BRIDGE_REQUIRE_SCHEMATHESIS=1)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "run.sh: $*" >&2; }

# --- arguments: before `--` for cargo test, after it for the test binaries ------
cargo_args=()
harness_args=()
after_dd=0
for arg in "$@"; do
	if ((after_dd)); then
		harness_args+=("$arg")
	elif [[ "$arg" == "--" ]]; then
		after_dd=1
	else
		cargo_args+=("$arg")
	fi
done
if [[ " ${harness_args[*]} " != *" --test-threads"* ]]; then
	harness_args=("--test-threads=${TEST_THREADS:-2}" "${harness_args[@]}")
fi

# --- services: each start_X pushes its stop_X; stopped in reverse order on exit ---
STOPS=()
RUN_RC=0

on_exit() {
	RUN_RC=$?
	trap - EXIT INT TERM
	local i
	for ((i = ${#STOPS[@]} - 1; i >= 0; i--)); do
		"${STOPS[i]}" || log "warning: ${STOPS[i]} failed"
	done
	exit "$RUN_RC"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

KAFKA_OWN_DIR=0
start_kafka() {
	if [[ -n "${KAFKA_BOOTSTRAP:-}" ]]; then
		log "using the Kafka broker at $KAFKA_BOOTSTRAP"
		export KAFKA_BOOTSTRAP
		return 0
	fi
	if [[ -z "${BROKER_DIR:-}" ]]; then
		BROKER_DIR="$(mktemp -d "${TMPDIR:-/tmp}/polaris-bridge-kafka.XXXXXX")"
		KAFKA_OWN_DIR=1
	fi
	export BROKER_DIR
	STOPS+=(stop_kafka)
	log "starting a Kafka broker in $BROKER_DIR"
	local out
	out="$(tests/kafka/broker.sh start)"
	KAFKA_BOOTSTRAP="${out##*KAFKA_BOOTSTRAP=}"
	export KAFKA_BOOTSTRAP
	log "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
}
stop_kafka() {
	tests/kafka/broker.sh stop
	if ((RUN_RC == 0 && KAFKA_OWN_DIR)); then
		rm -rf "$BROKER_DIR"
	else
		log "broker log: $BROKER_DIR/broker.log"
	fi
}

# --- schemathesis (tests/openapi.rs checks the OpenAPI document against the server) ---
if [[ -z "${SCHEMATHESIS:-}" ]]; then
	SCHEMATHESIS="$(tests/schemathesis.sh)"
fi
export SCHEMATHESIS
export POLARIS_BRIDGE_REQUIRE_SCHEMATHESIS=1

# The purge tests' S3-compatible server (moto behind a counting proxy, tests/s3/s3.sh) and
# their Python venv (pyiceberg; tests/python/setup.sh, cached).
start_s3() {
	if [[ -n "${S3_ENDPOINT:-}" ]]; then
		log "using the S3 endpoint $S3_ENDPOINT"
		export S3_ENDPOINT S3_REQUEST_LOG
		return 0
	fi
	export S3_DIR="${S3_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/polaris-bridge-s3.XXXXXX")}"
	STOPS+=(stop_s3)
	local out
	out="$(tests/s3/s3.sh start)"
	S3_ENDPOINT="$(sed -n 's/^S3_ENDPOINT=//p' <<<"$out")"
	S3_REQUEST_LOG="$(sed -n 's/^S3_REQUEST_LOG=//p' <<<"$out")"
	export S3_ENDPOINT S3_REQUEST_LOG
	log "S3_ENDPOINT=$S3_ENDPOINT"
}
stop_s3() {
	tests/s3/s3.sh stop
}

# --- run ----------------------------------------------------------------------
if [[ -n "${TEST_CMD:-}" ]]; then
	start_kafka
	start_s3
	log "running TEST_CMD: $TEST_CMD"
	rc=0
	bash -c "$TEST_CMD" || rc=$?
else
	# Build first, so compile errors show without a broker and the broker doesn't
	# compete with the compiler for the CPU.
	log "building the tests"
	cargo test --workspace --locked "${cargo_args[@]}" --no-run
	start_kafka
	start_s3
	log "cargo test --workspace --locked ${cargo_args[*]} -- ${harness_args[*]}"
	rc=0
	cargo test --workspace --locked "${cargo_args[@]}" -- "${harness_args[@]}" || rc=$?
fi
exit "$rc"
