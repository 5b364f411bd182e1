# moescope — convenience front end over CMake. `make demo` and `make test` are the
# README's two commands; both install missing apt dependencies first.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE_FLAGS ?=

.PHONY: all deps build demo test test-fast test-asan bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	bash scripts/demo.sh $(BUILD)/moescope

# The whole suite (gpu tests skip without a device), then the sanitizer pass (ASan + UBSan)
# over the unit and bad-input tests and the end-to-end tests that exercise the engine,
# loaders and exporters once each (the long CLI loops run in the normal pass only).
ASAN_E2E ?= '^e2e\.test_(fidelity_hf|fidelity_trained|fidelity_qwen2moe|cli_logits|hf_families|convert_gguf|gguf_families|gguf_tokenizer|gguf_vocab|kquant_model|export|nvtx|report|timeline)$$'
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) test-asan

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -LE 'gpu|slow'

test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DMOESCOPE_SANITIZE=ON -DMOESCOPE_CUDA=OFF >/dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L 'unit|badinput'
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -R $(ASAN_E2E)

bench: build
	$(BUILD)/moescope bench --model models/tiny-mixtral

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
