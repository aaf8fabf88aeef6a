# visionstack — the two commands a newcomer needs are `make demo` and `make test`.
GO        ?= go
BIN       := bin/visionstack
OUT       ?= out/demo
# A count of executions, not a duration: go1.26's fuzz coordinator can fail a target
# with "context deadline exceeded" when a duration runs out (golang/go#75804, fixed in
# go1.27); a count has no deadline to race. 100000x is 5-10 s a target here.
FUZZTIME  ?= 100000x
PKGS      := ./...

.PHONY: install docs example all deps deps-runtime build demo test test-short race fuzz bench chaos e2e-gcp schema vet clean image screenshot
IMAGE     ?= visionstack:dev

all: build

deps: ## install missing system packages for building and testing (libvips, OpenCV judge, emulators, Chromium)
	@scripts/install-deps.sh

deps-runtime: ## install missing system packages for building and running (libvips)
	@scripts/install-deps.sh runtime

build: deps-runtime ## build the CLI into bin/ (with its commit: visionstack version)
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/visionstack

PREFIX ?= /usr/local
install: build ## install the CLI as $(PREFIX)/bin/visionstack (PREFIX=~/.local for no root)
	install -d $(PREFIX)/bin
	install -m 0755 $(BIN) $(PREFIX)/bin/visionstack
	@command -v visionstack >/dev/null || echo "$(PREFIX)/bin is not on your PATH: add it, e.g. export PATH=$(PREFIX)/bin:\$$PATH"

demo: build ## run the demo project on the sample photos, locally, no cloud
	$(BIN) validate demo
	$(BIN) run --project demo --out $(OUT) testdata/photos
	@echo
	@echo "Processed images: $(OUT)/processed/   quarantine: $(OUT)/quarantine/   records: $(OUT)/visionstack.db"
	@echo "Run it again: it skips what is done."

example: build ## your own model: train the defects example with PyTorch, export it to ONNX, run it on fresh images, score it
	@scripts/install-deps.sh example
	/usr/bin/python3 projects/defects/train.py
	rm -rf out/defects
	$(BIN) validate defects
	$(BIN) run --project defects --out out/defects --no-progress projects/defects/eval
	/usr/bin/python3 projects/defects/evaluate.py out/defects/visionstack.db

test: deps ## the whole suite: vet, unit + integration tests, brief fuzzing
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(MAKE) --no-print-directory race
	$(MAKE) --no-print-directory fuzz

race: ## the packages that drive libvips from many goroutines, under the race detector (~5 min)
	$(GO) test -race -count=1 -timeout 20m ./runtime/imaging ./runtime/transform ./runtime/pipeline

fuzz: ## run each fuzz target briefly
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./runtime/config
	$(GO) test -run '^$$' -fuzz '^FuzzHeaderCheck$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./runtime/prepare
	$(GO) test -run '^$$' -fuzz '^FuzzValidateName$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./runtime/blob/local
	$(GO) test -run '^$$' -fuzz '^FuzzPushEnvelope$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./runtime/server
	$(GO) test -run '^$$' -fuzz '^FuzzJPEGComplete$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s ./runtime/imaging

bench: deps ## step benchmarks on a 12 MP JPEG → bench/RESULTS.md
	$(GO) run ./bench/cmd/benchreport -out bench/RESULTS.md

chaos: deps ## serve on the emulators, 320 images, a model failing 1 in 5, 4 kill -9 → bench/CHAOS.md (~10 min)
	VISIONSTACK_CHAOS_IMAGES=320 VISIONSTACK_CHAOS_KILLS=4 VISIONSTACK_CHAOS_REPORT=$(CURDIR)/bench/CHAOS.md \
		$(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./cmd/visionstack

e2e-gcp: ## a first deploy on a real GCP project: VISIONSTACK_E2E_GCP_PROJECT=P make e2e-gcp (docs/deploy.md)
	@test -n "$$VISIONSTACK_E2E_GCP_PROJECT" || { echo "set VISIONSTACK_E2E_GCP_PROJECT to a GCP project where you hold the deployer's roles"; exit 1; }
	$(GO) test -count=1 -timeout 60m -run '^TestFirstDeployOnARealProject$$' -v ./cmd/visionstack

schema: ## regenerate runtime/config/project.schema.json from the Go types
	$(GO) test ./runtime/config -run TestSchemaUpToDate -update

docs: schema ## regenerate the reference pages: docs/cli/ from the command tree, docs/config-reference.md from the config types
	$(GO) test -count=1 ./runtime/config -run 'TestSchemaUpToDate|TestReferenceUpToDate' -update
	$(GO) test -count=1 ./cmd/visionstack -run TestCLIDocsUpToDate -update-docs

screenshot: ## retake docs/review.png with the review page's browser test (needs chromium)
	rm -rf out/screenshot && mkdir -p out/screenshot
	VISIONSTACK_REQUIRE_BROWSER=1 $(GO) test -count=1 -run '^TestReviewPageInBrowser$$' -artifacts -outputdir $(CURDIR)/out/screenshot ./runtime/review
	cp "$$(find out/screenshot -name review-faces.png | head -1)" docs/review.png

image: ## build the container image (needs a Docker engine or another builder)
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make image needs a running Docker engine (or build the Dockerfile with Cloud Build / kaniko)"; exit 1; }
	docker build -t $(IMAGE) .

clean:
	rm -rf bin out
