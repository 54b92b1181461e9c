# Tessera: `make run` serves the bundled model, `make test` is what CI runs.
GO      ?= go
BIN     ?= bin/tessera
MODEL   ?= models/docbloom-3m
TEXT    ?= Return the number of
WORKERS ?= 3
LISTEN  ?= 127.0.0.1:8080
# Every fuzz target, as package:Target:executions. make test runs each for
# a count of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report a spurious "context deadline exceeded" at the
# boundary (go.dev/issue/75804, fixed in Go 1.27). FUZZTIME=30s overrides
# every target with a duration, for longer local runs.
FUZZTIME ?=
FUZZ_TARGETS = ./worker/weights:FuzzOpen:20000 ./worker/weights:FuzzIndex:8000 \
	./coordinator/tokenizer:FuzzEncode:2000 ./coordinator/tokenizer:FuzzDecode:10000 \
	./coordinator/tokenizer:FuzzStream:4000 ./coordinator/tokenizer:FuzzFromJSON:500 \
	./shard/transport:FuzzDecodeFrame:4000 ./shard/transport:FuzzMeshStream:10000 ./worker/server:FuzzRunnerStep:5000 \
	./coordinator/api:FuzzCompletionRequest:8000 ./coordinator/api:FuzzHTTPRequest:3000 \
	./coordinator/guide:FuzzSchema:3000 ./coordinator/guide:FuzzRegex:3000

.PHONY: all build run generate test vet fuzz bench bench-cluster bench-peer bench-serving proto clean refs

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tessera

# A local cluster (embedded etcd and NATS, WORKERS workers, one coordinator)
# serving the bundled model (a trained 3.5M-parameter BLOOM) on LISTEN.
run: build
	$(BIN) local --model $(MODEL) --workers $(WORKERS) --listen $(LISTEN)

# One-shot generation from the bundled model, no cluster.
generate: build
	$(BIN) generate --model $(MODEL) --prompt "$(TEXT)" --max-tokens 48

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

# Unit, golden-parity and integration tests, then each fuzz target briefly.
test: vet
	$(GO) test -count=1 ./...
	$(MAKE) fuzz

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; budget=$(if $(FUZZTIME),$(FUZZTIME),$${rest#*:}x); \
	  echo "fuzz $$fn ($$pkg): $$budget"; \
	  $(GO) test -run='^$$' -fuzz="^$$fn\$$" -fuzztime=$$budget $$pkg; \
	done

# Regenerates the committed Hugging Face references of the tokenizer
# pipelines and chat templates (needs Node and the npm registry; by hand,
# not in CI, which only reads the committed outputs).
refs:
	cd coordinator/tokenizer/testdata/ref && npm ci --no-audit --no-fund && node gen.mjs
	cd coordinator/api/testdata/templates/ref && npm ci --no-audit --no-fund && node render.mjs

# Speed figures live here, not in tests; docs/benchmarks.md records them.
# bench-cluster: one model served as 1 worker × 2 threads, tp=2 and pp=2
# over 2 × 1 thread, and 1 worker × 1 thread, on this host (issue 17).
# bin/tessera bench-cluster --delays 0,100us,1ms adds the same setups with
# each worker's links delayed by a relay (what distance between hosts costs).
bench-cluster: build
	$(BIN) bench-cluster

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=30x ./worker/model/llama
	$(GO) test -run='^$$' -bench=. ./kernels/cpu
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && $(GO) build -o $$d/tessera ./cmd/tessera && \
	for dt in f32 bf16; do \
		$$d/tessera bench-model --model $$d/$$dt --random-llama 1024,12,16,4,2816,32000,$$dt --prompt 128 --gen 64 --threads 1 && \
		$$d/tessera bench-model --model $$d/$$dt --prompt 128 --gen 64 --threads 2 --batch 1,8,32 || exit 1; \
	done && \
	for th in 1 2; do \
		$$d/tessera bench-model --model $$d/bf16 --quantize q8 --prompt 128 --gen 64 --threads $$th || exit 1; \
	done

# Side by side with llama.cpp (PEER, see its README): LLAMA_CPP is a folder
# PEER/build.sh made (bin/ and model/), e.g.
#   make bench-peer LLAMA_CPP=/work/llama-peer ROUNDS=3
# paired.py alternates llama-bench and bench-model on the same weights in
# each round and prints the medians of the per-round ratios;
# bench-serving runs serving.sh (tessera local vs llama-server).
PEER      ?= ../shared/peers/llama.cpp
LLAMA_CPP ?=
ROUNDS    ?= 3
bench-peer: build
	@test -x "$(LLAMA_CPP)/bin/llama-bench" || { echo "LLAMA_CPP=$(LLAMA_CPP): no bin/llama-bench; build one with $(PEER)/build.sh SOURCE DIR and pass LLAMA_CPP=DIR"; exit 2; }
	python3 $(PEER)/paired.py "$(LLAMA_CPP)/bin/llama-bench" $(BIN) "$(LLAMA_CPP)/model" $(ROUNDS)

bench-serving: build
	@test -x "$(LLAMA_CPP)/bin/llama-server" || { echo "LLAMA_CPP=$(LLAMA_CPP): no bin/llama-server; see bench-peer"; exit 2; }
	bash $(PEER)/serving.sh $(BIN) "$(LLAMA_CPP)/bin/llama-server" "$(LLAMA_CPP)/model"

# Regenerate proto/tessera/v1 with the pinned plugins (go.mod tool deps:
# protoc-gen-go v1.36.12, protoc-gen-go-grpc v1.6.2) and Debian's protoc,
# installed here when missing.
proto:
	@command -v protoc >/dev/null && test -f /usr/include/google/protobuf/descriptor.proto || \
	  { echo "installing protoc from Debian"; apt-get update -qq && apt-get install -y -qq protobuf-compiler libprotobuf-dev; }
	protoc -I proto -I /usr/include \
	  --plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
	  --plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
	  --go_out=proto --go_opt=paths=source_relative \
	  --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	  proto/tessera/v1/*.proto

clean:
	rm -rf bin

# Container images (need a Docker engine; CI does not build them). The Helm
# chart runs $(IMAGE):<tag> for the coordinator and CPU workers and
# $(IMAGE):<tag>-cuda for GPU workers.
IMAGE     ?= ghcr.io/tessera-llm/tessera
IMAGE_TAG ?= dev

.PHONY: image image-cuda
image:
	docker build -f Dockerfile -t $(IMAGE):$(IMAGE_TAG) .

image-cuda:
	docker build -f Dockerfile.cuda -t $(IMAGE):$(IMAGE_TAG)-cuda .

# CUDA backend (kernels/cuda, -tags cuda, cgo); see docs/cuda.md. Only
# bin/tessera-cuda links gorgonia.org/cu, whose init exits without a
# driver and a device: bin/tessera starts anywhere and hands a
# --device cuda:N command to the companion next to it (worker/devexec).
# The compat header kernels/cuda/include/cuda.h must be first on
# CGO_CFLAGS so that gorgonia.org/cu compiles against CUDA 13; the stubs
# directories let a machine or a devel image without a driver link libcuda.
# CUDA_HOME is the NVIDIA layout when present, else Debian's (/usr).
NVCC        ?= nvcc
PTXAS       ?= ptxas
CUDA_HOME   ?= $(if $(wildcard /usr/local/cuda/include/cuda.h),/usr/local/cuda,/usr)
CUDA_CGO     = CGO_ENABLED=1 \
	CGO_CFLAGS="-I$(CURDIR)/kernels/cuda/include $${CGO_CFLAGS:--g -O2} -I$(CUDA_HOME)/include" \
	CGO_LDFLAGS="$${CGO_LDFLAGS:-} -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib64/stubs -L$(CUDA_HOME)/lib/x86_64-linux-gnu/stubs"
PTX_DIR      = kernels/cuda/ptx
PTX_ARCHS    = sm_90 compute_80
# Packages with cuda-tagged tests: their test binaries link gorgonia.org/cu
# and so only run on a GPU host (kernels/cuda/gpu-check.sh); cuda-check
# compiles them.
CUDA_TEST_PKGS = $(sort $(dir $(shell git grep -l '^//go:build cuda' -- '*_test.go')))

.PHONY: cuda cuda-ptx cuda-check cuda-toolkit
# bin/tessera (no CUDA) and bin/tessera-cuda (the same command, -tags cuda).
cuda: build
	$(CUDA_CGO) $(GO) build -tags cuda -o $(BIN)-cuda ./cmd/tessera

# Regenerates the embedded PTX from kernels/cuda/kernels/*.cu (commit it).
cuda-ptx:
	$(MAKE) --no-print-directory cuda-ptx-into DIR=$(PTX_DIR)

.PHONY: cuda-ptx-into
cuda-ptx-into:
	@for a in $(PTX_ARCHS); do \
	  echo "$(NVCC) -arch=$$a -ptx -o $(DIR)/tessera.$$a.ptx kernels/cuda/kernels/all.cu"; \
	  $(NVCC) -std=c++17 -O3 -arch=$$a -ptx -o $(DIR)/tessera.$$a.ptx kernels/cuda/kernels/all.cu || exit 1; \
	done

# Installs Debian's CUDA toolkit when nvcc is missing (.ci/cuda-toolkit).
cuda-toolkit:
	bash .ci/cuda-toolkit

# What CI checks of the CUDA backend on a machine without a GPU: the
# committed PTX is what nvcc makes of the .cu files and ptxas assembles it
# for sm_80 and sm_90; every package and cuda test binary compiles and
# vets with -tags cuda; the kernels run on the host emulator against their
# C++ references; the cuda build's two binaries start on this GPU-less
# host (worker/devexec's cuda-tagged test).
cuda-check: cuda-toolkit
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  $(MAKE) --no-print-directory cuda-ptx-into DIR=$$d && \
	  for a in $(PTX_ARCHS); do \
	    diff -q $(PTX_DIR)/tessera.$$a.ptx $$d/tessera.$$a.ptx >/dev/null || \
	      { echo "$(PTX_DIR)/tessera.$$a.ptx is stale: run make cuda-ptx and commit it"; \
	        diff -u $(PTX_DIR)/tessera.$$a.ptx $$d/tessera.$$a.ptx | head -40; exit 1; }; \
	  done
	$(PTXAS) -arch=sm_90 -o /dev/null $(PTX_DIR)/tessera.sm_90.ptx
	$(PTXAS) -arch=sm_80 -o /dev/null $(PTX_DIR)/tessera.compute_80.ptx
	$(PTXAS) -arch=sm_90 -o /dev/null $(PTX_DIR)/tessera.compute_80.ptx
	$(CUDA_CGO) $(GO) vet -tags cuda ./...
	$(CUDA_CGO) $(GO) build -tags cuda ./...
	@set -e; for p in $(CUDA_TEST_PKGS); do \
	  echo "$(GO) test -tags cuda -c ./$$p"; \
	  $(CUDA_CGO) $(GO) test -tags cuda -c -o /dev/null ./$$p; \
	done
	g++ -std=c++17 -fsyntax-only -x c++ -include kernels/cuda/kernels/hostcheck.h kernels/cuda/kernels/all.cu
	@d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	  g++ -std=c++20 -O1 -pthread -o $$d/emu_test kernels/cuda/kernels/emu/emu_test.cpp && \
	  { $$d/emu_test > $$d/emu.log || { cat $$d/emu.log; exit 1; }; }; tail -1 $$d/emu.log
	$(CUDA_CGO) $(GO) test -count=1 -tags cuda ./worker/devexec
