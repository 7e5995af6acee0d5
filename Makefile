# vmledger: see README.md. `bash .ci/do TARGET` installs missing packages first.
GO      ?= go
BIN     := bin/vmledger
PKGS    := ./...

.PHONY: all build test test-short bench demo vet clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/vmledger

vet:
	$(GO) vet $(PKGS)

# The whole suite, as CI runs it. Real QEMU and real NATS servers are used;
# under CI=true a missing QEMU or nats-server fails the tests.
test: vet
	$(GO) test -count=1 -timeout 14m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Benchmarks beside their references; figures go to docs/performance.md.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./store/ ./bus/ ./hypervisor/...

demo: build
	bash .ci/demo $(BIN)

clean:
	rm -rf bin
