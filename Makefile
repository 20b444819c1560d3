# facesync: build, lint and test. `make test` fetches what its tests need
# when it is missing (redis-server from Debian's packages; versitygw, MinIO
# and staticcheck with `go install` into .tools/) and starts one
# redis-server on a free loopback port for the whole run. MinIO serves the
# lifecycle tests only: versitygw answers NotImplemented to lifecycle reads.

GO          ?= go
TOOLS       := $(CURDIR)/.tools
VERSITYGW   := $(TOOLS)/versitygw
MINIO       := $(TOOLS)/minio
STATICCHECK := $(TOOLS)/staticcheck
VERSITYGW_VERSION   := v1.8.0
STATICCHECK_VERSION := v0.8.2
# MinIO's repository is no longer maintained and publishes only
# pseudo-versions: this one is pinned.
MINIO_VERSION       := v0.0.0-20260212201848-7aac2a2c5b7c
TEST_TIMEOUT ?= 14m
BENCH_TIME   ?= 1x

export FACESYNC_TEST_VERSITYGW := $(VERSITYGW)
export FACESYNC_TEST_MINIO     := $(MINIO)

.PHONY: all build test lint bench bench-all demo up down tools redis-server clean

all: lint test

build:
	$(GO) build -o bin/facesync ./cmd/facesync

$(VERSITYGW):
	GOBIN=$(TOOLS) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(MINIO):
	GOBIN=$(TOOLS) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

$(STATICCHECK):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "redis-server missing: installing Debian's package"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server could not be installed" >&2; exit 1; }

tools: redis-server $(VERSITYGW) $(MINIO) $(STATICCHECK)

# The fault suite (cmd/facesync/faults) and the benchmark table run the
# binary built here as worker processes.
test: redis-server $(VERSITYGW) $(MINIO) build
	FACESYNC_TEST_BINARY=$(CURDIR)/bin/facesync bash .ci/with-redis $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...
	$(GO) mod tidy -diff

# The table: every row measured against its reference in one run, alone
# on the machine (the rows are throughput on two cores).
bench: redis-server $(VERSITYGW) build
	FACESYNC_TEST_BINARY=$(CURDIR)/bin/facesync bash .ci/with-redis $(GO) test -run '^$$' -bench . -benchtime $(BENCH_TIME) -timeout 15m ./cmd/facesync/perf/

# Every package's micro-benchmarks, one package at a time.
bench-all: redis-server $(VERSITYGW)
	bash .ci/with-redis $(GO) test -p 1 -run '^$$' -bench . -benchmem ./...

demo:
	$(GO) run ./cmd/facesync demo

up:
	docker compose up --build -d

down:
	docker compose down

clean:
	rm -rf bin facesync-demo
