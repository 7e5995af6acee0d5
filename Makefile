# vmledger: see README.md. `bash .ci/do TARGET` installs missing packages first.
GO      ?= go
BIN     := bin/vmledger
PKGS    := ./...

.PHONY: all build test test-short bench demo vet clean fuzz fuzz-corpus

all: build

build:
	$(GO) build -o $(BIN) ./cmd/vmledger

vet:
	$(GO) vet $(PKGS)
	CGO_ENABLED=0 $(GO) vet $(PKGS) # the build without cgo (pure-Go zstd: internal/zstdenc) must stay whole
	$(GO) mod tidy -diff # go.mod lists direct requirements as direct; fails when tidy would change go.mod/go.sum

# The whole suite, as CI runs it. Real QEMU and real NATS servers are used;
# under CI=true a missing QEMU or nats-server fails the tests. -race: the
# service, relay and QMP client are concurrent code.
#
# coredump's full tests (a 4.5 GiB q35 guest, every format and checker)
# take ~10 min under the race detector on 2 cores and ~1 min without it, so
# that package runs its short tests under -race and its full tests without.
#
# cmd/vmledger (the built binary against real agents and guests, ~11 min
# under -race) is the longest package by far and mostly waits on guests
# and timers, so it runs beside the rest of the suite and the fuzz
# targets rather than before them; its output is printed when it ends.
OTHER_PKGS = $(shell $(GO) list $(PKGS) | grep -v -e '/coredump$$' -e '/cmd/vmledger$$')
test: vet
	@log=$$(mktemp); status=0; \
	$(GO) test -race -count=1 -timeout 30m ./cmd/vmledger >$$log 2>&1 & cmdpid=$$!; \
	$(GO) test -race -count=1 -timeout 30m $(OTHER_PKGS) || status=1; \
	$(GO) test -race -short -count=1 -timeout 30m ./coredump || status=1; \
	$(GO) test -count=1 -timeout 30m ./coredump || status=1; \
	CGO_ENABLED=0 $(GO) test -count=1 ./internal/zstdenc ./migrate || status=1; \
	CGO_ENABLED=0 $(GO) test -count=1 -run 'Zstd' ./coredump || status=1; \
	$(MAKE) --no-print-directory fuzz || status=1; \
	wait $$cmdpid || status=1; \
	echo ">> go test -race ./cmd/vmledger"; cat $$log; rm -f $$log; \
	exit $$status

# Every decoder's fuzz target (docs/fuzzing.md), each for FUZZTIME; `make
# test` runs it. A target is PKG:FuzzName. Longer: make fuzz FUZZTIME=10m
FUZZTIME ?= 5s
FUZZ_TARGETS = ./domains/api:FuzzHandle ./domains/api:FuzzHandlerDefine \
	./domains:FuzzUnmarshalEvent ./domains:FuzzEventJSON ./domains:FuzzDecodeConfig ./domains:FuzzStrictClean \
	./cmd/vmledger/internal/yamlinput:FuzzConfigYAML ./hypervisor/qmp:FuzzDecode \
	./migrate:FuzzReader ./coredump:FuzzELF ./coredump:FuzzKdump ./coredump:FuzzFlattened \
	./store:FuzzImport ./domains/libvirtxml:FuzzConvert
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo ">> fuzz $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%:*}"; \
	done

# Keep the FUZZ_KEEP smallest inputs each fuzzer found interesting (in the
# Go build cache) as its committed corpus, testdata/fuzz/FuzzX.
FUZZ_KEEP ?= 12
fuzz-corpus:
	@cache=$$($(GO) env GOCACHE)/fuzz; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%:*}; name=$${t#*:}; imp=$$($(GO) list $$pkg); \
		dst=$$pkg/testdata/fuzz/$$name; mkdir -p $$dst; \
		ls -S -r $$cache/$$imp/$$name 2>/dev/null | head -n $(FUZZ_KEEP) | \
			while read f; do cp $$cache/$$imp/$$name/$$f $$dst/; done; \
		echo "$$dst: $$(ls $$dst | wc -l) inputs"; \
	done

test-short:
	$(GO) test -short -count=1 $(PKGS)

# Benchmarks beside their references, as docs/performance.md records them.
bench:
	$(GO) test ./store -run '^$$' -bench 'AppendConcurrent64|AppendSingle' -benchtime 2s
	$(GO) test ./store -run '^$$' -bench 'Replay1M|AgentStart' -benchtime 10x
	$(GO) test ./store -run '^$$' -bench OfflineReplay -benchtime 5x
	$(GO) test ./bus -run '^$$' -bench CommitToSubscriber
	$(GO) test ./hypervisor/qemu -run '^$$' -bench FirstSerialLine -benchtime 10x
	$(GO) test ./hypervisor/qemu -run '^$$' -bench Save1GiB -benchtime 1x -timeout 30m
	$(GO) test ./migrate -run '^$$' -bench 'Writer|Reader' -benchtime 3x
	$(GO) test ./coredump -run '^$$' -bench Dump1GiB -benchtime 1x -timeout 30m
	$(GO) test ./coredump -run '^$$' -bench WritePagemix -benchtime 3x
	$(GO) test ./coredump -run '^$$' -bench PageCompressors -benchtime 3x # libzstd beside klauspost, per page
	$(GO) test ./migrate -run '^$$' -bench Codecs -benchtime 2x # libzstd levels beside klauspost, per chunk
	$(GO) test ./cmd/vmledger -run '^$$' -bench RTCEventToSubscriber -benchtime 30x

demo: build
	bash .ci/demo $(BIN)

clean:
	rm -rf bin
