# Rendezvous: the two commands a fresh machine needs are `make run` and
# `make test`. Everything else is a step of theirs or of CI.
GO      ?= go
BIN     := bin
export GOFLAGS := -mod=mod

.PHONY: all build run test test-unit test-e2e bench vet fmt clean kafka-start kafka-stop

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/rdv dev

test: build vet
	$(GO) test -count=1 -timeout 20m ./...

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./...

kafka-start:
	ops/kafka/kafka.sh start

kafka-stop:
	ops/kafka/kafka.sh stop

clean:
	rm -rf $(BIN) var
