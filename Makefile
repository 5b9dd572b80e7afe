# The two commands: `make dev` (the local twin) and `make test` (everything CI runs).
SHELL := /bin/bash
.DEFAULT_GOAL := help
export CARGO_TERM_COLOR ?= never

API_PORT ?= 3000
DYNAMODB_PORT ?= 8000
MOTO_PORT ?= 5000
export API_PORT DYNAMODB_PORT MOTO_PORT

.PHONY: help deps build dev test lint fmt clippy cfn-lint unit integration bench clean check dlq redrive reconcile check-macos

help:
	@echo "make dev    - run the local twin (API on :$(API_PORT)), data kept in .local/data"
	@echo "make test   - fmt, clippy, cfn-lint, unit and integration tests (what CI runs)"
	@echo "make bench  - release build, latency/throughput next to the DynamoDB floor"
	@echo "make clean  - wipe local data and logs"
	@echo "make reconcile FILE=<csv> [ACCOUNT=acct_platform] - upload a settlement file to the running twin's bucket"

deps:
	@scripts/setup.sh

# Every binary the twin runs: the functions' bootstraps, the twin, the sandbox PSP, ops.
BINS = cargo build --workspace --bins --exclude bench

build:
	$(BINS)

dev: deps build
	TWIN_ECHO_LOGS=$${TWIN_ECHO_LOGS:-1} target/debug/twin --template infra/template.yaml \
	  --bin-dir target/debug --data-dir .local/data --log-dir .local/logs

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

cfn-lint: deps
	.local/venv/bin/cfn-lint infra/template.yaml

unit:
	cargo test --workspace --lib --bins

# Each integration test binary starts its own twin from the binaries `build` makes.
integration: deps build
	cargo test -p integration-tests --tests

lint: fmt clippy cfn-lint

test: deps fmt clippy cfn-lint build
	mkdir -p target; set -o pipefail; cargo test --workspace --lib --bins --tests 2>&1 | tee target/test.log
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log

bench: deps
	cargo build --release --workspace --bins
	target/release/bench

# Operator commands against the running `make dev` stack (same ports).
OPS_ENV = AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local \
	AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$(DYNAMODB_PORT) AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$(MOTO_PORT) \
	AWS_ENDPOINT_URL_S3=http://127.0.0.1:$(MOTO_PORT)

check:
	cargo build -p ops -q && $(OPS_ENV) target/debug/ops check

dlq:
	cargo build -p ops -q && $(OPS_ENV) target/debug/ops dlq

redrive:
	cargo build -p ops -q && $(OPS_ENV) target/debug/ops redrive $(QUEUE)

# Uploads FILE to the settlement bucket at psp/<ACCOUNT>/<file name>, which starts a run.
reconcile:
	cargo build -p ops -q && $(OPS_ENV) target/debug/ops reconcile $(FILE) $(ACCOUNT)

# Type-checks the whole workspace for Apple silicon, where many SAM users develop. Only the C in
# ring needs an Apple toolchain, and `cargo check` never links it, so `true` stands in for cc/ar.
check-macos:
	rustup target add aarch64-apple-darwin
	CC_aarch64_apple_darwin=true AR_aarch64_apple_darwin=true \
	  cargo check --workspace --all-targets --target aarch64-apple-darwin

clean:
	rm -rf .local/data .local/logs bench/out
