# The README's commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: check-manifests crds bench-replication bench-spread bench-spread-scale bench-traffic test test-local test-kind lint controlplane up down bench-localregions bench demo shellcheck

## test: everything CI checks: format, lints, unit, end-to-end and chaos
## tests on local regions, then the kind walkthrough test (needs root or
## Docker; see docs/kind.md).
test: test-local test-kind

## test-local: everything but kind (no Docker needed).
test-local: lint controlplane check-manifests
	$(CARGO) test --workspace --lib --bins --tests

## check-manifests: the chart and the member RBAC through checkov (an
## outside checker; findings explained in docs/security.md).
check-manifests: controlplane
	bash scripts/check-manifests.sh

## test-kind: the kind walkthrough, asserted (kind-config/walkthrough.sh).
test-kind:
	$(CARGO) test --test kind -- --nocapture

lint: shellcheck
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## crds: regenerate crds/ and the chart's copy from the API types (after
## changing crates/multiregion-core/src/api; tests/crds.rs and tests/chart.rs
## fail until both are current).
crds:
	$(CARGO) run -q -- crd > crds/multiregion.yaml
	cp crds/multiregion.yaml charts/multiregion/files/crds.yaml

## controlplane: build (or find cached) etcd, kube-*, kubectl, kwok, helm.
controlplane:
	bash tests/controlplane/build.sh

## up / down: three local clusters for trying things by hand.
up:
	$(CARGO) run -p localregions -- up hub us-east eu-west

down:
	$(CARGO) run -p localregions -- down

## bench-localregions: build and start-up times and memory, as JSON.
bench-localregions:
	$(CARGO) build --release -p localregions
	bash tests/controlplane/bench.sh

## demo: the first run without Docker (local clusters, Helm, a failover). Ctrl-C stops it.
demo:
	bash scripts/demo.sh

## shellcheck: the shell scripts are clean.
shellcheck:
	shellcheck .ci/run tests/controlplane/*.sh scripts/*.sh kind-config/*.sh

## bench: failover times and scale, on local regions, release build (figures, not tests).
bench: controlplane
	$(CARGO) bench --bench failover

## bench-spread: failover when the leader's region dies, hub spread over three regions (root; figures).
bench-spread: controlplane
	$(CARGO) bench --bench spread

## bench-spread-scale: the spread hub's scale series, three replicas observing (root; figures; BENCH_APPS).
bench-spread-scale: controlplane
	BENCH_TRIALS=0 BENCH_APPS=$${BENCH_APPS:-100,300,1000} $(CARGO) bench --bench spread

## bench-replication: write latency and acknowledged writes lost per PostgreSQL replication mode (figures).
bench-replication: controlplane
	$(CARGO) bench --bench replication

## bench-traffic: client-observed failover through the gateway, DNS and client-side (figures).
bench-traffic: controlplane
	$(CARGO) bench --bench traffic
