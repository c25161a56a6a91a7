# Rendezvous: the two commands a fresh machine needs are `make run` and
# `make test`. Everything else is a step of theirs or of CI.
GO      ?= go
BIN     := bin
export GOFLAGS := -mod=mod

.PHONY: all build build-objectstore run test test-unit test-e2e bench vet fmt clean kafka-start kafka-stop

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The log connector with the object store drivers (S3 and S3-compatible
# stores, through gocloud.dev): a much larger build, so not the default.
build-objectstore: build
	$(GO) build -tags objectstore -o $(BIN)/ ./cmd/log-connector

run: build
	$(BIN)/rdv dev

# TESTFLAGS=-v prints each end-to-end test's counts (CI does).
TESTFLAGS ?=
test: build vet
	$(GO) test $(TESTFLAGS) -count=1 -timeout 30m ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

# Micro-benchmarks of the hot path's pieces, the archive's write path, then
# the end-to-end benchmark: open-loop load on the whole pipeline as `rdv dev`
# runs it, stepped to saturation, and the direct baseline. It writes
# bench/results/latest.json and latest.svg, and the replay throughput
# (bench/results/replay.json); about 7 minutes on 2 cores.
# BENCH_FLAGS passes flags to bench/pipeline (-sustain 10s -step 5s for a
# quick look); RDV_BENCH_BROKERS=host:9092 runs it on real Kafka.
BENCH_PKGS := ./pipeline/serde/ ./frontend/ ./stages/rendezvous/ ./stages/rendezvous/policy/ \
	./stages/model/evaluator/ ./connectors/archive/ ./bench/archive/
BENCH_FLAGS ?=
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 300ms $(BENCH_PKGS)
	$(GO) run ./bench/archive
	$(GO) run ./bench/replay
	$(GO) run ./bench/pipeline -bin $(BIN) $(BENCH_FLAGS)

kafka-start:
	ops/kafka/kafka.sh start

kafka-stop:
	ops/kafka/kafka.sh stop

clean:
	rm -rf $(BIN) var

# Kibana: import the rendezvous data views, visualizations and dashboard
# (ops/kibana/rendezvous.ndjson) into a Kibana 8, replacing earlier copies.
#   make kibana-import KIBANA_URL=http://localhost:5601 [KIBANA_AUTH=user:password] [KIBANA_SPACE=space-id]
.PHONY: kibana-import
KIBANA_NDJSON ?= ops/kibana/rendezvous.ndjson
kibana-import:
	@if [ -z "$(KIBANA_URL)" ]; then \
	  echo "kibana-import: KIBANA_URL is not set; run: make kibana-import KIBANA_URL=http://localhost:5601" >&2; exit 2; fi
	@base="$(KIBANA_URL)"; base="$${base%/}"; \
	if [ -n "$(KIBANA_SPACE)" ]; then base="$$base/s/$(KIBANA_SPACE)"; fi; \
	echo "POST $$base/api/saved_objects/_import?overwrite=true  <- $(KIBANA_NDJSON)"; \
	out=$$(curl -sS --fail-with-body -X POST "$$base/api/saved_objects/_import?overwrite=true" \
	  -H 'kbn-xsrf: true' $(if $(KIBANA_AUTH),-u '$(KIBANA_AUTH)') \
	  --form file=@$(KIBANA_NDJSON)); rc=$$?; \
	echo "$$out"; \
	if [ $$rc -ne 0 ]; then echo "kibana-import: the import request failed (curl exit $$rc)" >&2; exit 1; fi; \
	if printf '%s' "$$out" | grep -Eq '"success" *: *true'; then echo "kibana-import: done"; \
	else echo "kibana-import: Kibana reported errors (see above)" >&2; exit 1; fi

# The one container image of every binary (Dockerfile). Needs a Docker
# engine; says so and fails without one.
#   make image [IMAGE=rendezvous:dev]
.PHONY: image check-ops
IMAGE ?= rendezvous:dev
image:
	@command -v docker >/dev/null 2>&1 || { echo "image: the docker CLI is not installed; install Docker to build the image" >&2; exit 1; }
	@timeout 15 docker info >/dev/null 2>&1 || { echo "image: no Docker engine is reachable (docker info failed); start one, or point DOCKER_HOST at one" >&2; exit 1; }
	docker build -t $(IMAGE) .

# Checks the deployment files (compose, Kubernetes, Prometheus rules,
# Grafana dashboard, exported metrics) without Docker or a cluster.
check-ops:
	ops/check.sh
