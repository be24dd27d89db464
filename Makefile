# stipend's one entry point. `make` (or `make help`) lists the targets.
#
# The build-<Function> targets are what `sam build` runs for each function in
# template.yaml (Metadata: BuildMethod: makefile); SAM sets ARTIFACTS_DIR.

SHELL := /bin/bash
.DEFAULT_GOAL := help

GO       ?= go
CFN_LINT ?= cfn-lint

# Fuzz targets, as <package>:<target>. `make test` runs each for FUZZTIME_TEST,
# `make fuzz` for FUZZTIME (go test accepts one fuzz target per invocation).
FUZZ_TARGETS = ./shared/proxy:FuzzParseRequest ./shared/sse:FuzzReader ./shared/sse:FuzzData ./shared/dynamo/ddb:FuzzScanItem \
               ./shared/provider:FuzzTopUsage ./shared/provider:FuzzPlainChunk ./shared/jsonscan:FuzzObject ./shared/h1client:FuzzPlainHead ./shared/tokenizer:FuzzPlainChat \
               ./shared/admin/roster:FuzzRosterCSV
FUZZTIME_TEST ?= 5s
FUZZTIME      ?= 2m
# Minimising each new interesting input may take up to 60 s by default, and
# stalls a short run; keep it short. A run that fails with nothing but
# "context deadline exceeded" and writes no failing input is the fuzzing
# engine's own race at -fuzztime's end on a loaded machine (golang/go#75804,
# #51484): it runs once more; any other failure fails.
FUZZ_RUN = for t in $(FUZZ_TARGETS); do \
	  echo "== $${t\#*:} in $${t%%:*} for $(1)"; \
	  for try in 1 2; do \
	    out=$$($(GO) test -run='^$$' -fuzz="^$${t\#*:}$$" -fuzztime=$(1) -fuzzminimizetime=5s "$${t%%:*}" 2>&1); rc=$$?; \
	    echo "$$out"; \
	    [ $$rc -eq 0 ] && break; \
	    if [ $$try -eq 1 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input written'; then \
	      echo "== no failing input: the engine's deadline race (Go issue 75804); once more"; continue; \
	    fi; \
	    exit 1; \
	  done; \
	done

# Lambda binaries: provided.al2023 on arm64, static, no RPC shim.
GO_LAMBDA_BUILD = GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -trimpath -tags lambda.norpc -ldflags='-s -w'

# Go sources for the gofmt check (skips node_modules and build outputs).
GO_FILES = $$(find . \( -name node_modules -o -path ./.git -o -path ./.aws-sam -o -path ./build \) -prune -o -name '*.go' -print)

.PHONY: help build build-ProxyFunction build-AdminFunction build-ResetFunction \
        test fuzz lint fmt dev bench clean

help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build all three Lambda binaries into build/<name>/bootstrap (linux/arm64).
	$(GO_LAMBDA_BUILD) -o build/proxy/bootstrap ./functions/proxy
	$(GO_LAMBDA_BUILD) -o build/admin/bootstrap ./functions/admin
	$(GO_LAMBDA_BUILD) -o build/reset/bootstrap ./functions/reset

build-ProxyFunction: ## (sam build) Build the proxy into $(ARTIFACTS_DIR)/bootstrap.
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set; run `sam build` or `make build`))
	$(GO_LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/proxy

build-AdminFunction: ## (sam build) Build the admin API into $(ARTIFACTS_DIR)/bootstrap.
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set; run `sam build` or `make build`))
	$(GO_LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/admin

build-ResetFunction: ## (sam build) Build the scheduled reset job into $(ARTIFACTS_DIR)/bootstrap.
	$(if $(ARTIFACTS_DIR),,$(error ARTIFACTS_DIR is not set; run `sam build` or `make build`))
	$(GO_LAMBDA_BUILD) -o $(ARTIFACTS_DIR)/bootstrap ./functions/reset

test: ## Run every test: go vet, the Go tests (race detector, DynamoDB Local included), again 400 days ahead, each fuzz target for FUZZTIME_TEST (5s), cfn-lint.
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...
	@echo "== the official OpenAI and Anthropic SDKs through the proxy (build tag sdk keeps them out of the other builds)"
	$(GO) vet -tags sdk ./shared/proxy
	$(GO) test -race -count=1 -timeout 12m -tags sdk -run '^TestIntegrationSDKs$$' ./shared/proxy
	@echo "== the shared packages' tests again, with their clocks 400 days ahead (STIPEND_TEST_NOW, see shared/testclock)"
	STIPEND_TEST_NOW=+400d $(GO) test -race -count=1 -timeout 12m ./shared/...
	@$(call FUZZ_RUN,$(FUZZTIME_TEST))
	$(CFN_LINT) template.yaml

fuzz: ## Run each fuzz target (request parser, SSE reader, roster CSV) for FUZZTIME (default 2m; make fuzz FUZZTIME=10m).
	@$(call FUZZ_RUN,$(FUZZTIME))

lint: ## Check formatting (gofmt), go vet, staticcheck, go.mod tidiness, package rules and the SAM template (cfn-lint).
	@out="$$(gofmt -l $(GO_FILES))"; if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) mod tidy -diff
	$(GO) test -count=1 ./shared/imports/
	$(CFN_LINT) template.yaml

fmt: ## Format the Go sources in place.
	gofmt -w $(GO_FILES)

dev: ## Run the whole stack locally in the foreground (DynamoDB Local, secrets, proxy, admin).
	$(GO) run ./infra/dev $(ARGS)

bench: ## Print figures: cold start vs hello-world, added delay per SSE event, TTFB, reads per event, peak RSS, proxy CPU per request, DynamoDB round trips and capacity per request, added latency of limit checks (extra flags via ARGS="...").
	$(GO) run ./infra/bench $(ARGS)

clean: ## Remove build outputs (build/, .aws-sam/).
	rm -rf build .aws-sam
