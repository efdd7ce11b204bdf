# subinterp build, test and benchmark targets. `make help` lists them.
GO       ?= go
PKGS     := ./...
BENCHPKG := ./integration/
BENCHTIME ?= 2s
BENCHCOUNT ?= 5
SOAK     ?= 5m
SOAKTIMEOUT ?= 6h
STRESS   ?= 5

.PHONY: help build test stress lint vet fmt-check fuzz bench soak load pipeline thousand tenthousand clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## build the subinterp binary into bin/
	$(GO) build -o bin/subinterp ./cmd/subinterp

test: lint ## vet, format check, and every test (integration included) under the race detector; worker and integration again without gopher-lua internals
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(GO) test -race -count=1 -timeout 15m -tags subinterp_nointernals ./worker/ ./integration/

stress: ## the whole suite under the race detector STRESS times (default 5) with every core kept busy; lists each failing test and how often
	$(GO) run ./internal/stress -n $(STRESS) $(PKGS)

lint: fmt-check vet ## gofmt and go vet

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@for t in $$($(GO) test -list '^Fuzz' ./protocol/ | grep ^Fuzz); do \
		$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} ./protocol/ || exit 1; \
	done

bench: ## the report table (subinterp beside its baselines, one run) and its plots in docs/bench, the remote report (Dial beside local), then the go test benchmarks
	SUBINTERP_BENCH_PLOTS=$(CURDIR)/docs/bench $(GO) test -run '^$$' -bench '^BenchmarkReport$$' -benchtime 1x -timeout 30m $(BENCHPKG) 2>/dev/null
	$(GO) test -run '^$$' -bench '^BenchmarkRemoteReport$$' -benchtime 1x -timeout 30m $(BENCHPKG) 2>/dev/null
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout 60m ./worker/
	$(GO) test -run '^$$' -bench '^Benchmark(RoundTrip|Busy8|Launch|CrashReport|Queue|Cluster|RemoteCall)' -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout 60m $(BENCHPKG) 2>/dev/null
	$(GO) test -run '^$$' -bench '^BenchmarkQueueHandOff$$' -benchtime 1000x -timeout 30m ./cluster/

load: ## the daemon under full load: 200 interpreters, 8 clients, 30 s, then shutdown mid-load
	SUBINTERP_LOAD=1 $(GO) test -count=1 -run '^TestDaemonLoad$$' -v -timeout 10m ./integration/

pipeline: ## 100,000 items through cluster-wide queues and stages on three nodes, one SIGKILLed midway with its NATS server: every item arrives
	SUBINTERP_PIPELINE=1 $(GO) test -count=1 -run '^TestClusterQueuePipeline$$' -v -timeout 60m ./integration/

thousand: ## 1,000 live interpreters at once: every one called and listed, idle cost per interpreter measured against its goals, nothing left after
	SUBINTERP_THOUSAND=1 $(GO) test -count=1 -run '^TestThousandInterpreters$$' -v -timeout 10m ./integration/density/

tenthousand: ## 10,000 live interpreters at once, as thousand (needs kernel.pid_max of 64,096 or more; raises RLIMIT_NOFILE as far as it may)
	SUBINTERP_TENTHOUSAND=1 $(GO) test -count=1 -run '^TestTenThousandInterpreters$$' -v -timeout 60m ./integration/density/

soak: ## chaos soak: 32 interpreters under random faults and kills for SOAK (default 5m)
	SUBINTERP_SOAK=$(SOAK) $(GO) test -race -count=1 -timeout $(SOAKTIMEOUT) -run '^TestChaos$$' -v ./integration/

clean:
	rm -rf bin
