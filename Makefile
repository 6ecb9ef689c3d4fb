# iapd — see README.md. CI runs .ci/run.

GO ?= go
BIN ?= bin/iapd
ARGS ?=

.PHONY: build test ci run durability dist dist-check clean

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

# Release artefacts in dist/: static binaries for linux/amd64 and
# linux/arm64 stamped with the git tag or commit, a .deb per architecture
# and SHA256SUMS (packaging/dist.sh). dist-check inspects them as CI does,
# and installs, reinstalls, removes and purges the .deb in a throwaway root.
dist:
	bash packaging/dist.sh

dist-check: dist
	bash .ci/check-dist
	bash .ci/deb-install-test

clean:
	rm -rf bin dist
