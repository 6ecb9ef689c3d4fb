# iapd — see README.md. CI runs .ci/run.

GO ?= go
BIN ?= bin/iapd
ARGS ?=

.PHONY: build test ci run durability clean

build:
	$(GO) build -o $(BIN) ./cmd/iapd

test:
	$(GO) test -race -count=1 ./...

ci:
	bash .ci/run

run:
	$(GO) run ./cmd/iapd $(ARGS)

# The crash drill alone, verbose, with more cycles: make durability CYCLES=20
CYCLES ?= 10
durability:
	IAPD_DURABILITY_CYCLES=$(CYCLES) $(GO) test -race -count=1 -run TestDurabilityKill9 -v ./cmd/iapd

clean:
	rm -rf bin
